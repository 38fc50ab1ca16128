#include "procs.h"

#include <stdlib.h>
#include <string.h>

#include <libgimp/gimpui.h>

#include "engine.h"
#include "pixels.h"

#define PLUG_IN_BINARY "loupe-gimp"
#define IMAGE_TYPES "RGB*, GRAY*, INDEXED*"

/* ------------------------------------------------------------------------------------ helpers */

static GimpRunMode run_mode(const GimpParam *param) { return (GimpRunMode)param[0].data.d_int32; }

/* Only layers: a channel or a layer mask has no colours to look at, and results go next to a layer. */
static GimpPDBStatusType check_layer(gint32 image, gint32 drawable, gchar **error) {
  if (!gimp_image_is_valid(image)) {
    *error = g_strdup("Loupe needs an open image.");
    return GIMP_PDB_CALLING_ERROR;
  }
  if (!gimp_item_is_valid(drawable) || !gimp_item_is_layer(drawable) || gimp_item_get_image(drawable) != image) {
    *error = g_strdup("Loupe works on a layer: pick a layer (not a channel or a layer mask) in the Layers dialog.");
    return GIMP_PDB_CALLING_ERROR;
  }
  return GIMP_PDB_SUCCESS;
}

/* The person may close the image or delete the layer while a long job runs. */
static gboolean still_there(gint32 image, gint32 drawable, gchar **error) {
  if (gimp_image_is_valid(image) && (drawable < 0 || gimp_item_is_valid(drawable))) return TRUE;
  *error = g_strdup("The image or the layer went away while Loupe was working; nothing was changed.");
  return FALSE;
}

static void copy_string(gchar *dst, gsize size, const gchar *src) { g_strlcpy(dst, src ? src : "", size); }

/* The last values of a procedure, if they were stored by this version (same size). */
static void get_last_values(const gchar *proc, gpointer values, gsize size) {
  if (gimp_get_data_size(proc) == (gint)size) gimp_get_data(proc, values);
}

/* "Loupe <what>: <the first 40 characters of the prompt>" */
static gchar *layer_name(const gchar *what, const gchar *prompt) {
  gchar *p = g_strstrip(g_strdup(prompt ? prompt : ""));
  gchar *name;
  if (g_utf8_strlen(p, -1) > 40) {
    gchar *cut = g_utf8_offset_to_pointer(p, 40);
    *cut = '\0';
    name = g_strdup_printf("Loupe %s: %s…", what, p);
  } else {
    name = *p ? g_strdup_printf("Loupe %s: %s", what, p) : g_strdup_printf("Loupe %s", what);
  }
  g_free(p);
  return name;
}

/* Inserts a new layer just above `above` (or at the top when above < 0). */
static void insert_above(gint32 image, gint32 layer, gint32 above) {
  if (above >= 0 && gimp_item_is_valid(above)) {
    gimp_image_insert_layer(image, layer, gimp_item_get_parent(above), gimp_image_get_item_position(image, above));
  } else {
    gimp_image_insert_layer(image, layer, 0, 0);
  }
}

/* ------------------------------------------------------------------------------------ dialogs */

typedef struct Dialog {
  GtkWidget *dialog;
  GtkWidget *table;
  gint rows;
  LoupeGimpUi ui;
} Dialog;

static void ensure_ui(void) {
  static gboolean done;
  if (!done) gimp_ui_init(PLUG_IN_BINARY, FALSE);
  done = TRUE;
}

static void dialog_pump(void) {
  while (gtk_events_pending()) gtk_main_iteration();
}

/* A dialog with an explanation, a table for parameters and a progress bar. with_ok = FALSE gives
 * a progress-only dialog (repeat with last values). */
static void dialog_new(Dialog *d, const gchar *title, const gchar *help_id, const gchar *text, gboolean with_ok) {
  GtkWidget *vbox, *label;
  ensure_ui();
  memset(d, 0, sizeof *d);
  if (with_ok) {
    d->dialog = gimp_dialog_new(title, PLUG_IN_BINARY, NULL, 0, NULL, help_id, "_Cancel",
                                GTK_RESPONSE_CANCEL, "_OK", GTK_RESPONSE_OK, NULL);
    gtk_dialog_set_alternative_button_order(GTK_DIALOG(d->dialog), GTK_RESPONSE_OK, GTK_RESPONSE_CANCEL, -1);
    gtk_dialog_set_default_response(GTK_DIALOG(d->dialog), GTK_RESPONSE_OK); /* Enter in an entry = OK */
  } else {
    d->dialog = gimp_dialog_new(title, PLUG_IN_BINARY, NULL, 0, NULL, help_id, "_Cancel",
                                GTK_RESPONSE_CANCEL, NULL);
  }
  gimp_window_set_transient(GTK_WINDOW(d->dialog));
  vbox = gtk_vbox_new(FALSE, 12);
  gtk_container_set_border_width(GTK_CONTAINER(vbox), 12);
  gtk_box_pack_start(GTK_BOX(gtk_dialog_get_content_area(GTK_DIALOG(d->dialog))), vbox, TRUE, TRUE, 0);
  label = gtk_label_new(text);
  gtk_label_set_line_wrap(GTK_LABEL(label), TRUE);
  gtk_misc_set_alignment(GTK_MISC(label), 0.0, 0.5);
  gtk_box_pack_start(GTK_BOX(vbox), label, FALSE, FALSE, 0);
  d->table = gtk_table_new(1, 2, FALSE);
  gtk_table_set_col_spacings(GTK_TABLE(d->table), 6);
  gtk_table_set_row_spacings(GTK_TABLE(d->table), 6);
  gtk_box_pack_start(GTK_BOX(vbox), d->table, FALSE, FALSE, 0);
  d->ui.dialog = d->dialog;
  d->ui.progress = gtk_progress_bar_new();
  gtk_box_pack_end(GTK_BOX(vbox), d->ui.progress, FALSE, FALSE, 0);
}

static GtkWidget *add_row(Dialog *d, const gchar *label, GtkWidget *widget) {
  gimp_table_attach_aligned(GTK_TABLE(d->table), 0, d->rows++, label, 0.0, 0.5, widget, 1, FALSE);
  return widget;
}

static GtkWidget *add_entry(Dialog *d, const gchar *label, const gchar *value) {
  GtkWidget *e = gtk_entry_new();
  gtk_entry_set_text(GTK_ENTRY(e), value);
  gtk_entry_set_width_chars(GTK_ENTRY(e), 40);
  gtk_entry_set_activates_default(GTK_ENTRY(e), TRUE);
  return add_row(d, label, e);
}

static GtkWidget *add_spin(Dialog *d, const gchar *label, gdouble value, gdouble lo, gdouble hi, gdouble step,
                           guint digits) {
  GtkObject *adj = gtk_adjustment_new(value, lo, hi, step, step * 10, 0);
  GtkWidget *s = gtk_spin_button_new(GTK_ADJUSTMENT(adj), step, digits);
  gtk_spin_button_set_numeric(GTK_SPIN_BUTTON(s), TRUE);
  return add_row(d, label, s);
}

static GtkWidget *add_check(Dialog *d, const gchar *label, gboolean value) {
  GtkWidget *c = gtk_check_button_new_with_mnemonic(label);
  gtk_toggle_button_set_active(GTK_TOGGLE_BUTTON(c), value);
  gtk_table_attach(GTK_TABLE(d->table), c, 1, 2, d->rows, d->rows + 1, GTK_FILL, GTK_FILL, 0, 0);
  d->rows++;
  return c;
}

static gint spin_int(GtkWidget *s) { return gtk_spin_button_get_value_as_int(GTK_SPIN_BUTTON(s)); }
static gdouble spin_value(GtkWidget *s) { return gtk_spin_button_get_value(GTK_SPIN_BUTTON(s)); }
static gboolean checked(GtkWidget *c) { return gtk_toggle_button_get_active(GTK_TOGGLE_BUTTON(c)); }

/* OK only while the entry has text. */
static void require_text(GtkEditable *entry, gpointer dialog) {
  gtk_dialog_set_response_sensitive(GTK_DIALOG(dialog), GTK_RESPONSE_OK,
                                    *gtk_entry_get_text(GTK_ENTRY(entry)) != '\0');
}
static void require_entry(Dialog *d, GtkWidget *entry) {
  g_signal_connect(entry, "changed", G_CALLBACK(require_text), d->dialog);
  require_text(GTK_EDITABLE(entry), d->dialog);
}

static void on_job_response(GtkDialog *dialog, gint response, gpointer data) {
  LoupeGimpUi *ui = data;
  (void)dialog;
  if (response != GTK_RESPONSE_OK) g_atomic_int_set(&ui->cancelled, 1);
}

static gboolean auto_ok(gpointer dialog) {
  gtk_dialog_response(GTK_DIALOG(dialog), GTK_RESPONSE_OK);
  return FALSE;
}

/* Shows the dialog and waits for OK (TRUE) or Cancel (FALSE). LOUPE_GIMP_AUTO_OK=<ms> presses OK
 * after that time: the interactive path in automated tests (tests/gimp). */
static gboolean dialog_ask(Dialog *d) {
  const gchar *auto_ms = g_getenv("LOUPE_GIMP_AUTO_OK");
  gtk_widget_show_all(d->dialog);
  if (auto_ms && *auto_ms) g_timeout_add((guint)MAX(0, atoi(auto_ms)), auto_ok, d->dialog);
  return gimp_dialog_run(GIMP_DIALOG(d->dialog)) == GTK_RESPONSE_OK;
}

/* From here on the dialog shows the job: parameters greyed out, Cancel stops the job. */
static void dialog_start_job(Dialog *d) {
  gtk_widget_show_all(d->dialog);
  gtk_widget_set_sensitive(d->table, FALSE);
  gtk_dialog_set_response_sensitive(GTK_DIALOG(d->dialog), GTK_RESPONSE_OK, FALSE);
  g_signal_connect(d->dialog, "response", G_CALLBACK(on_job_response), &d->ui);
  dialog_pump();
}

static void dialog_destroy(Dialog *d) {
  if (d->dialog) {
    gtk_widget_destroy(d->dialog);
    dialog_pump();
  }
  memset(d, 0, sizeof *d);
}

/* Opens the model (first call only) and runs the request; NULL with *error set, or NULL with
 * *error NULL when cancelled. */
static loupe_result *run_task(LoupeGimpModelKind kind, loupe_request *request, Dialog *d, gchar **error) {
  LoupeGimpUi *ui = d && d->dialog ? &d->ui : NULL;
  loupe_session *session = loupe_gimp_engine_session(kind, ui, error);
  if (!session) return NULL;
  if (ui && g_atomic_int_get(&ui->cancelled)) return NULL;
  return loupe_gimp_engine_run(session, request, ui, error);
}

/* Cancelled (no error) vs failed. */
static GimpPDBStatusType failed(gchar **error) { return *error ? GIMP_PDB_EXECUTION_ERROR : GIMP_PDB_CANCEL; }

/* ------------------------------------------------------------------------------------ caption */

#define CAPTION_PROC "plug-in-loupe-caption"

typedef struct CaptionValues {
  gint detail;     /* 0 short, 1 detailed, 2 more detailed */
  gint text_layer; /* also add a text layer */
} CaptionValues;

static const GimpParamDef caption_params[] = {
    {GIMP_PDB_INT32, "run-mode", "The run mode { RUN-INTERACTIVE (0), RUN-NONINTERACTIVE (1) }"},
    {GIMP_PDB_IMAGE, "image", "Input image"},
    {GIMP_PDB_DRAWABLE, "drawable", "The layer to describe"},
    {GIMP_PDB_INT32, "detail", "0 = short caption, 1 = detailed, 2 = more detailed"},
    {GIMP_PDB_INT32, "text-layer", "1 = also add the caption as a text layer"},
};
static const GimpParamDef caption_returns[] = {{GIMP_PDB_STRING, "caption", "The caption (also the image's comment)"}};

static gint32 add_text_layer(gint32 image, gint32 drawable, const gchar *text) {
  const gint w = gimp_drawable_width(drawable), h = gimp_drawable_height(drawable);
  const gdouble size = MAX(12.0, h / 24.0);
  const glong chars = g_utf8_strlen(text, -1);
  const gint lines = (gint)(chars * size * 0.55 / MAX(1, w - 2 * (gint)size)) + 1;
  gint ox = 0, oy = 0;
  gint32 layer = gimp_text_layer_new(image, *text ? text : " ", "Sans-serif", size, GIMP_UNIT_PIXEL);
  if (layer < 0) return -1;
  insert_above(image, layer, drawable);
  gimp_text_layer_resize(layer, MAX(1, w - 2 * (gint)size), (lines + 1) * size * 1.4);
  gimp_drawable_offsets(drawable, &ox, &oy);
  gimp_layer_set_offsets(layer, ox + (gint)size, oy + (gint)size);
  return layer;
}

static GimpPDBStatusType caption_run(gint nparams, const GimpParam *param, GimpParam *out, gint *n_out,
                                     gchar **error) {
  static gchar *returned;
  const gint32 image = param[1].data.d_image, drawable = param[2].data.d_drawable;
  CaptionValues v = {0, 0};
  Dialog d;
  LoupeGimpPixels px;
  loupe_request *rq = NULL;
  loupe_result *res;
  loupe_image im;
  GimpParasite *parasite;
  gchar *caption;
  GimpPDBStatusType st = check_layer(image, drawable, error);
  static const gchar *const tasks[] = {"caption", "detailed_caption", "more_detailed_caption"};
  (void)nparams;
  memset(&d, 0, sizeof d);
  if (st != GIMP_PDB_SUCCESS) return st;
  get_last_values(CAPTION_PROC, &v, sizeof v);
  if (run_mode(param) == GIMP_RUN_NONINTERACTIVE) {
    v.detail = param[3].data.d_int32;
    v.text_layer = param[4].data.d_int32 != 0;
  } else if (run_mode(param) == GIMP_RUN_INTERACTIVE) {
    GtkWidget *combo, *check;
    dialog_new(&d, "Loupe: Caption", CAPTION_PROC,
               "Describe the layer in words. The caption becomes the image's comment (Image > Properties).", TRUE);
    combo = gtk_combo_box_text_new();
    gtk_combo_box_text_append_text(GTK_COMBO_BOX_TEXT(combo), "Short");
    gtk_combo_box_text_append_text(GTK_COMBO_BOX_TEXT(combo), "Detailed");
    gtk_combo_box_text_append_text(GTK_COMBO_BOX_TEXT(combo), "More detailed");
    gtk_combo_box_set_active(GTK_COMBO_BOX(combo), CLAMP(v.detail, 0, 2));
    add_row(&d, "_Detail:", combo);
    check = add_check(&d, "Also add a _text layer", v.text_layer);
    if (!dialog_ask(&d)) {
      dialog_destroy(&d);
      return GIMP_PDB_CANCEL;
    }
    v.detail = gtk_combo_box_get_active(GTK_COMBO_BOX(combo));
    v.text_layer = checked(check);
    dialog_start_job(&d);
  } else {
    dialog_new(&d, "Loupe: Caption", CAPTION_PROC, "Describing the layer…", FALSE);
    dialog_start_job(&d);
  }
  if (v.detail < 0 || v.detail > 2) {
    dialog_destroy(&d);
    *error = g_strdup_printf("detail must be 0, 1 or 2 (got %d)", v.detail);
    return GIMP_PDB_CALLING_ERROR;
  }
  gimp_set_data(CAPTION_PROC, &v, sizeof v);
  if (!loupe_gimp_read_drawable(drawable, &px, error)) {
    dialog_destroy(&d);
    return GIMP_PDB_EXECUTION_ERROR;
  }
  im = loupe_gimp_pixels_image(&px);
  loupe_request_create(&rq, tasks[v.detail]);
  loupe_request_set_image(rq, &im);
  res = run_task(LOUPE_GIMP_MODEL_FLORENCE, rq, &d, error);
  loupe_request_free(rq);
  loupe_gimp_pixels_clear(&px);
  dialog_destroy(&d);
  if (!res) return failed(error);
  caption = loupe_gimp_clean_text(loupe_result_text(res));
  loupe_result_free(res);
  if (!still_there(image, drawable, error)) {
    g_free(caption);
    return GIMP_PDB_EXECUTION_ERROR;
  }
  gimp_image_undo_group_start(image);
  parasite = gimp_parasite_new("gimp-comment", GIMP_PARASITE_PERSISTENT, (guint32)strlen(caption) + 1, caption);
  gimp_image_attach_parasite(image, parasite);
  gimp_parasite_free(parasite);
  if (v.text_layer && add_text_layer(image, drawable, caption) < 0)
    g_message("Loupe: GIMP could not make a text layer (no fonts?); the caption is in the image's comment.");
  gimp_image_undo_group_end(image);
  if (run_mode(param) != GIMP_RUN_NONINTERACTIVE) gimp_displays_flush();
  g_free(returned);
  returned = caption;
  out[0].type = GIMP_PDB_STRING;
  out[0].data.d_string = returned;
  *n_out = 1;
  return GIMP_PDB_SUCCESS;
}

/* ------------------------------------------------------------------------------------ detect */

#define DETECT_PROC "plug-in-loupe-detect"

static const GimpParamDef detect_params[] = {
    {GIMP_PDB_INT32, "run-mode", "The run mode { RUN-INTERACTIVE (0), RUN-NONINTERACTIVE (1) }"},
    {GIMP_PDB_IMAGE, "image", "Input image"},
    {GIMP_PDB_DRAWABLE, "drawable", "The layer to look at"},
};
static const GimpParamDef detect_returns[] = {
    {GIMP_PDB_INT32, "num-paths", "The number of paths added (one per object)"},
    {GIMP_PDB_INT32ARRAY, "paths", "The paths, in the order the model gave the objects"},
};

/* A closed rectangular path of a box given in layer pixels. */
static gint32 box_path(gint32 image, const gchar *name, gdouble x0, gdouble y0, gdouble x1, gdouble y1) {
  const gdouble corners[4][2] = {{x0, y0}, {x1, y0}, {x1, y1}, {x0, y1}};
  gdouble points[24];
  gint32 vectors = gimp_vectors_new(image, name);
  int i, k;
  for (i = 0; i < 4; ++i)
    for (k = 0; k < 3; ++k) { /* in-handle, anchor, out-handle: all on the corner */
      points[6 * i + 2 * k] = corners[i][0];
      points[6 * i + 2 * k + 1] = corners[i][1];
    }
  gimp_vectors_stroke_new_from_points(vectors, GIMP_VECTORS_STROKE_TYPE_BEZIER, 24, points, TRUE);
  return vectors;
}

static GimpPDBStatusType detect_run(gint nparams, const GimpParam *param, GimpParam *out, gint *n_out,
                                    gchar **error) {
  static gint32 *ids;
  const gint32 image = param[1].data.d_image, drawable = param[2].data.d_drawable;
  Dialog d;
  LoupeGimpPixels px;
  loupe_request *rq = NULL;
  loupe_result *res;
  loupe_image im;
  size_t i, n;
  gint ox = 0, oy = 0;
  GimpPDBStatusType st = check_layer(image, drawable, error);
  (void)nparams;
  memset(&d, 0, sizeof d);
  if (st != GIMP_PDB_SUCCESS) return st;
  if (run_mode(param) == GIMP_RUN_INTERACTIVE) {
    dialog_new(&d, "Loupe: Detect Objects", DETECT_PROC,
               "Find the objects in the layer. Each one becomes a path named after it (Paths dialog).", TRUE);
    if (!dialog_ask(&d)) {
      dialog_destroy(&d);
      return GIMP_PDB_CANCEL;
    }
    dialog_start_job(&d);
  } else if (run_mode(param) == GIMP_RUN_WITH_LAST_VALS) {
    dialog_new(&d, "Loupe: Detect Objects", DETECT_PROC, "Finding objects…", FALSE);
    dialog_start_job(&d);
  }
  if (!loupe_gimp_read_drawable(drawable, &px, error)) {
    dialog_destroy(&d);
    return GIMP_PDB_EXECUTION_ERROR;
  }
  im = loupe_gimp_pixels_image(&px);
  loupe_request_create(&rq, "detect");
  loupe_request_set_image(rq, &im);
  res = run_task(LOUPE_GIMP_MODEL_FLORENCE, rq, &d, error);
  loupe_request_free(rq);
  loupe_gimp_pixels_clear(&px);
  dialog_destroy(&d);
  if (!res) return failed(error);
  if (!still_there(image, drawable, error)) {
    loupe_result_free(res);
    return GIMP_PDB_EXECUTION_ERROR;
  }
  n = loupe_result_box_count(res);
  g_free(ids);
  ids = g_new0(gint32, MAX(n, 1));
  gimp_drawable_offsets(drawable, &ox, &oy);
  gimp_image_undo_group_start(image);
  /* Inserted bottom-up at the top of the list, so the Paths dialog lists them in the model's order. */
  for (i = n; i-- > 0;) {
    loupe_box b;
    gchar *label;
    if (loupe_result_box(res, i, &b) != LOUPE_OK) continue;
    label = loupe_gimp_clean_text(b.label);
    ids[i] = box_path(image, *label ? label : "object", ox + MIN(b.x0, b.x1), oy + MIN(b.y0, b.y1),
                      ox + MAX(b.x0, b.x1), oy + MAX(b.y0, b.y1));
    gimp_image_insert_vectors(image, ids[i], 0, 0);
    gimp_item_set_visible(ids[i], TRUE);
    g_free(label);
  }
  gimp_image_undo_group_end(image);
  loupe_result_free(res);
  if (run_mode(param) != GIMP_RUN_NONINTERACTIVE) {
    if (n == 0) g_message("Loupe found no objects in this layer.");
    gimp_displays_flush();
  }
  out[0].type = GIMP_PDB_INT32;
  out[0].data.d_int32 = (gint32)n;
  out[1].type = GIMP_PDB_INT32ARRAY;
  out[1].data.d_int32array = ids;
  *n_out = 2;
  return GIMP_PDB_SUCCESS;
}

/* ------------------------------------------------------------------------------------ select */

#define SELECT_PROC "plug-in-loupe-select"

typedef struct SelectValues {
  gchar text[512];
  gint outline; /* 1 = segmentation polygons ("segment"), 0 = boxes ("ground") */
} SelectValues;

static const GimpParamDef select_params[] = {
    {GIMP_PDB_INT32, "run-mode", "The run mode { RUN-INTERACTIVE (0), RUN-NONINTERACTIVE (1) }"},
    {GIMP_PDB_IMAGE, "image", "Input image"},
    {GIMP_PDB_DRAWABLE, "drawable", "The layer to look at"},
    {GIMP_PDB_STRING, "text", "What to select, in words (e.g. \"the red car\")"},
    {GIMP_PDB_INT32, "outline", "1 = follow the outline (segmentation), 0 = boxes"},
};
static const GimpParamDef select_returns[] = {
    {GIMP_PDB_INT32, "num-regions", "How many regions make the new selection (0 = nothing found, selection unchanged)"}};

static GimpPDBStatusType select_run(gint nparams, const GimpParam *param, GimpParam *out, gint *n_out,
                                    gchar **error) {
  const gint32 image = param[1].data.d_image, drawable = param[2].data.d_drawable;
  SelectValues v;
  Dialog d;
  LoupeGimpPixels px;
  loupe_request *rq = NULL;
  loupe_result *res;
  loupe_image im;
  size_t i;
  gint ox = 0, oy = 0, regions = 0;
  GimpPDBStatusType st = check_layer(image, drawable, error);
  (void)nparams;
  memset(&d, 0, sizeof d);
  memset(&v, 0, sizeof v);
  if (st != GIMP_PDB_SUCCESS) return st;
  get_last_values(SELECT_PROC, &v, sizeof v);
  v.text[sizeof v.text - 1] = '\0';
  if (run_mode(param) == GIMP_RUN_NONINTERACTIVE) {
    copy_string(v.text, sizeof v.text, param[3].data.d_string);
    v.outline = param[4].data.d_int32 != 0;
  } else if (run_mode(param) == GIMP_RUN_INTERACTIVE) {
    GtkWidget *entry, *check;
    dialog_new(&d, "Loupe: Select by Description", SELECT_PROC,
               "Describe what to select. What the model finds replaces the selection.", TRUE);
    entry = add_entry(&d, "_Select:", v.text);
    check = add_check(&d, "Follow the _outline (slower than boxes)", v.outline);
    require_entry(&d, entry);
    if (!dialog_ask(&d)) {
      dialog_destroy(&d);
      return GIMP_PDB_CANCEL;
    }
    copy_string(v.text, sizeof v.text, gtk_entry_get_text(GTK_ENTRY(entry)));
    v.outline = checked(check);
    dialog_start_job(&d);
  } else {
    dialog_new(&d, "Loupe: Select by Description", SELECT_PROC, "Looking for it…", FALSE);
    dialog_start_job(&d);
  }
  g_strstrip(v.text);
  if (!*v.text) {
    dialog_destroy(&d);
    *error = g_strdup("Select by Description needs a description of what to select.");
    return GIMP_PDB_CALLING_ERROR;
  }
  gimp_set_data(SELECT_PROC, &v, sizeof v);
  if (!loupe_gimp_read_drawable(drawable, &px, error)) {
    dialog_destroy(&d);
    return GIMP_PDB_EXECUTION_ERROR;
  }
  im = loupe_gimp_pixels_image(&px);
  loupe_request_create(&rq, v.outline ? "segment" : "ground");
  loupe_request_set_image(rq, &im);
  loupe_request_set_string(rq, "text", v.text);
  res = run_task(LOUPE_GIMP_MODEL_FLORENCE, rq, &d, error);
  loupe_request_free(rq);
  loupe_gimp_pixels_clear(&px);
  dialog_destroy(&d);
  if (!res) return failed(error);
  if (!still_there(image, drawable, error)) {
    loupe_result_free(res);
    return GIMP_PDB_EXECUTION_ERROR;
  }
  gimp_drawable_offsets(drawable, &ox, &oy);
  gimp_image_undo_group_start(image);
  gimp_context_push(); /* the person's tool options stay as they are */
  gimp_context_set_feather(FALSE);
  gimp_context_set_antialias(TRUE);
  for (i = 0; i < loupe_result_box_count(res); ++i) {
    loupe_box b;
    gdouble x0, y0, x1, y1;
    if (loupe_result_box(res, i, &b) != LOUPE_OK) continue;
    x0 = MIN(b.x0, b.x1), x1 = MAX(b.x0, b.x1), y0 = MIN(b.y0, b.y1), y1 = MAX(b.y0, b.y1);
    if (x1 - x0 < 1.0 || y1 - y0 < 1.0) continue; /* a line or a point selects nothing */
    gimp_image_select_rectangle(image, regions++ ? GIMP_CHANNEL_OP_ADD : GIMP_CHANNEL_OP_REPLACE, ox + x0, oy + y0,
                                x1 - x0, y1 - y0);
  }
  for (i = 0; i < loupe_result_polygon_count(res); ++i) {
    loupe_polygon p;
    gdouble *segs;
    size_t k;
    if (loupe_result_polygon(res, i, &p) != LOUPE_OK || p.point_count < 3) continue;
    segs = g_new(gdouble, 2 * p.point_count);
    for (k = 0; k < p.point_count; ++k) {
      segs[2 * k] = ox + p.points[2 * k];
      segs[2 * k + 1] = oy + p.points[2 * k + 1];
    }
    gimp_image_select_polygon(image, regions++ ? GIMP_CHANNEL_OP_ADD : GIMP_CHANNEL_OP_REPLACE,
                              (gint)(2 * p.point_count), segs);
    g_free(segs);
  }
  gimp_context_pop();
  gimp_image_undo_group_end(image);
  loupe_result_free(res);
  if (run_mode(param) != GIMP_RUN_NONINTERACTIVE) {
    if (regions == 0) g_message("Loupe found nothing matching \"%s\"; the selection is unchanged.", v.text);
    gimp_displays_flush();
  }
  out[0].type = GIMP_PDB_INT32;
  out[0].data.d_int32 = regions;
  *n_out = 1;
  return GIMP_PDB_SUCCESS;
}

/* ------------------------------------------------------------------------------------ Stable Diffusion */

typedef struct SdValues {
  gchar prompt[1024];
  gchar negative[1024];
  gint steps;
  gdouble guidance;
  gdouble strength; /* inpaint */
  gint seed;        /* -1 = a new random seed each time */
  gint only_masked; /* inpaint: work on the masked area only (at full resolution) */
  gdouble mask_blur;
  gdouble feather;
  gint width, height; /* generate; 0 = the image's size */
} SdValues;

static void sd_defaults(SdValues *v) {
  memset(v, 0, sizeof *v);
  v->steps = 25;
  v->guidance = 7.5;
  v->strength = 1.0;
  v->seed = -1;
  v->only_masked = 1;
  v->mask_blur = 4.0;
  v->feather = 8.0;
}

/* Sizes are multiples of 8 (the latent grid). */
static gint round8(gint v) { return CLAMP((v + 4) / 8 * 8, 8, 4096); }

static void sd_common_request(loupe_request *rq, const SdValues *v, gint seed) {
  loupe_request_set_string(rq, "prompt", v->prompt);
  if (*v->negative) loupe_request_set_string(rq, "negative_prompt", v->negative);
  loupe_request_set_int(rq, "steps", v->steps);
  loupe_request_set_int(rq, "seed", seed);
  loupe_request_set_float(rq, "guidance_scale", v->guidance);
}

typedef struct SdWidgets {
  GtkWidget *prompt, *negative, *steps, *guidance, *strength, *seed, *only_masked, *mask_blur, *feather, *width, *height;
} SdWidgets;

static void sd_dialog_rows(Dialog *d, SdWidgets *w, const SdValues *v, gboolean inpaint, gint image_w, gint image_h) {
  memset(w, 0, sizeof *w);
  w->prompt = add_entry(d, "_Prompt:", v->prompt);
  w->negative = add_entry(d, "_Negative prompt:", v->negative);
  if (!inpaint) {
    w->width = add_spin(d, "_Width:", v->width > 0 ? v->width : round8(image_w), 64, 4096, 8, 0);
    w->height = add_spin(d, "_Height:", v->height > 0 ? v->height : round8(image_h), 64, 4096, 8, 0);
  }
  w->steps = add_spin(d, "S_teps:", v->steps, 1, 150, 1, 0);
  w->guidance = add_spin(d, "_Guidance:", v->guidance, 0, 30, 0.5, 1);
  if (inpaint) {
    w->strength = add_spin(d, "St_rength:", v->strength, 0, 1, 0.05, 2);
    w->mask_blur = add_spin(d, "Mask _blur:", v->mask_blur, 0, 64, 1, 0);
    w->feather = add_spin(d, "_Feather:", v->feather, 0, 128, 1, 0);
  }
  w->seed = add_spin(d, "S_eed (-1 = random):", v->seed, -1, G_MAXINT, 1, 0);
  if (inpaint) w->only_masked = add_check(d, "Work on the selected area _only (full resolution)", v->only_masked);
}

static void sd_dialog_read(const SdWidgets *w, SdValues *v) {
  copy_string(v->prompt, sizeof v->prompt, gtk_entry_get_text(GTK_ENTRY(w->prompt)));
  copy_string(v->negative, sizeof v->negative, gtk_entry_get_text(GTK_ENTRY(w->negative)));
  v->steps = spin_int(w->steps);
  v->guidance = spin_value(w->guidance);
  v->seed = spin_int(w->seed);
  if (w->strength) v->strength = spin_value(w->strength);
  if (w->mask_blur) v->mask_blur = spin_value(w->mask_blur);
  if (w->feather) v->feather = spin_value(w->feather);
  if (w->only_masked) v->only_masked = checked(w->only_masked);
  if (w->width) v->width = spin_int(w->width);
  if (w->height) v->height = spin_int(w->height);
}

static void sd_check(const SdValues *v, gchar **error) {
  if (v->steps < 1 || v->steps > 1000) *error = g_strdup_printf("steps must be 1..1000 (got %d)", v->steps);
  else if (v->guidance < 0) *error = g_strdup_printf("guidance-scale must be >= 0 (got %g)", v->guidance);
  else if (v->strength < 0 || v->strength > 1) *error = g_strdup_printf("strength must be 0..1 (got %g)", v->strength);
}

/* A diffusion result lands: the new layer above `drawable` at (x, y), in one undo step; the
 * procedure returns the layer and the seed used. */
static GimpPDBStatusType add_result_layer(gint32 image, gint32 layer, gint32 drawable, gint x, gint y, gint seed,
                                          const GimpParam *param, GimpParam *out, gint *n_out) {
  gimp_image_undo_group_start(image);
  insert_above(image, layer, drawable);
  gimp_layer_set_offsets(layer, x, y);
  gimp_image_undo_group_end(image);
  if (run_mode(param) != GIMP_RUN_NONINTERACTIVE) gimp_displays_flush();
  out[0].type = GIMP_PDB_LAYER;
  out[0].data.d_layer = layer;
  out[1].type = GIMP_PDB_INT32;
  out[1].data.d_int32 = seed;
  *n_out = 2;
  return GIMP_PDB_SUCCESS;
}

/* The part both diffusion procedures share once non-interactive parameters are read: the dialog
 * (interactive) or a progress window (with last values; none in batch mode), the prompt and range
 * checks, and remembering the values for next time. */
static GimpPDBStatusType sd_ask(Dialog *d, SdValues *v, const GimpParam *param, gboolean inpaint, gint width,
                                gint height, const char *title, const char *proc, const char *blurb, const char *busy,
                                const char *need_prompt, gchar **error) {
  if (run_mode(param) == GIMP_RUN_INTERACTIVE) {
    SdWidgets sw;
    dialog_new(d, title, proc, blurb, TRUE);
    sd_dialog_rows(d, &sw, v, inpaint, width, height);
    require_entry(d, sw.prompt);
    if (!dialog_ask(d)) {
      dialog_destroy(d);
      return GIMP_PDB_CANCEL;
    }
    sd_dialog_read(&sw, v);
    dialog_start_job(d);
  } else if (run_mode(param) != GIMP_RUN_NONINTERACTIVE) {  /* last values: a progress window */
    dialog_new(d, title, proc, busy, FALSE);
    dialog_start_job(d);
  }
  if (!*g_strstrip(v->prompt)) *error = g_strdup(need_prompt);
  else sd_check(v, error);
  if (*error) {
    dialog_destroy(d);
    return GIMP_PDB_CALLING_ERROR;
  }
  gimp_set_data(proc, v, sizeof *v);
  return GIMP_PDB_SUCCESS;
}

static gint resolve_seed(gint seed) { return seed >= 0 ? seed : g_random_int_range(0, G_MAXINT); }

/* ------------------------------------------------------------------------------------ inpaint */

#define INPAINT_PROC "plug-in-loupe-inpaint"

static const GimpParamDef inpaint_params[] = {
    {GIMP_PDB_INT32, "run-mode", "The run mode { RUN-INTERACTIVE (0), RUN-NONINTERACTIVE (1) }"},
    {GIMP_PDB_IMAGE, "image", "Input image"},
    {GIMP_PDB_DRAWABLE, "drawable", "The layer to repaint (the selection is the mask)"},
    {GIMP_PDB_STRING, "prompt", "What to paint into the selection"},
    {GIMP_PDB_STRING, "negative-prompt", "What to avoid (may be empty)"},
    {GIMP_PDB_INT32, "steps", "Denoising steps"},
    {GIMP_PDB_FLOAT, "guidance-scale", "Classifier-free guidance scale"},
    {GIMP_PDB_FLOAT, "strength", "0..1: how much of the selected area is repainted"},
    {GIMP_PDB_INT32, "seed", "Random seed (-1 = random)"},
    {GIMP_PDB_INT32, "only-masked", "1 = work on the selected area only, at full resolution"},
    {GIMP_PDB_FLOAT, "mask-blur", "Blur of the mask, in pixels"},
    {GIMP_PDB_FLOAT, "feather", "Feather of the pasted result, in pixels"},
};
static const GimpParamDef sd_returns[] = {
    {GIMP_PDB_LAYER, "layer", "The new layer with the result"},
    {GIMP_PDB_INT32, "seed", "The seed used"},
};

static GimpPDBStatusType inpaint_run(gint nparams, const GimpParam *param, GimpParam *out, gint *n_out,
                                     gchar **error) {
  const gint32 image = param[1].data.d_image, drawable = param[2].data.d_drawable;
  SdValues v;
  Dialog d;
  LoupeGimpPixels px;
  loupe_request *rq = NULL;
  loupe_result *res;
  loupe_image im, mask_im, result;
  guchar *mask = NULL, *padded = NULL, *padded_mask = NULL, *alpha = NULL;
  gboolean any = FALSE, selected = FALSE;
  gint x1, y1, x2, y2, w, h, pw, ph, x, y, seed, ox = 0, oy = 0;
  gint32 layer;
  gchar *name;
  GimpPDBStatusType st = check_layer(image, drawable, error);
  (void)nparams;
  memset(&d, 0, sizeof d);
  if (st != GIMP_PDB_SUCCESS) return st;
  /* The selection is the mask: without one there is nothing to repaint. */
  gimp_selection_bounds(image, &selected, &x1, &y1, &x2, &y2);
  if (!selected) {
    *error = g_strdup("Inpaint Selection needs a selection: select the area to repaint first (white = repaint).");
    return GIMP_PDB_EXECUTION_ERROR;
  }
  mask = loupe_gimp_read_selection_mask(image, drawable, &any);
  g_free(mask);
  if (!any) {
    *error = g_strdup("The selection does not cover any part of this layer: select inside the layer to repaint.");
    return GIMP_PDB_EXECUTION_ERROR;
  }
  sd_defaults(&v);
  get_last_values(INPAINT_PROC, &v, sizeof v);
  v.prompt[sizeof v.prompt - 1] = v.negative[sizeof v.negative - 1] = '\0';
  if (run_mode(param) == GIMP_RUN_NONINTERACTIVE) {
    copy_string(v.prompt, sizeof v.prompt, param[3].data.d_string);
    copy_string(v.negative, sizeof v.negative, param[4].data.d_string);
    v.steps = param[5].data.d_int32;
    v.guidance = param[6].data.d_float;
    v.strength = param[7].data.d_float;
    v.seed = param[8].data.d_int32;
    v.only_masked = param[9].data.d_int32 != 0;
    v.mask_blur = param[10].data.d_float;
    v.feather = param[11].data.d_float;
  }
  st = sd_ask(&d, &v, param, TRUE, 0, 0, "Loupe: Inpaint Selection", INPAINT_PROC,
              "Repaint the selected area from a prompt. The result comes back as a new layer.",
              "Repainting the selection…", "Inpaint Selection needs a prompt: say what to paint into the selection.", error);
  if (st != GIMP_PDB_SUCCESS) return st;
  seed = resolve_seed(v.seed);
  if (!loupe_gimp_read_drawable(drawable, &px, error)) {
    dialog_destroy(&d);
    return GIMP_PDB_EXECUTION_ERROR;
  }
  mask = loupe_gimp_read_selection_mask(image, drawable, &any);
  /* The model works on a grid of 8 pixels: pad right and bottom (edge pixels, mask 0), crop after. */
  w = px.width, h = px.height, pw = (w + 7) / 8 * 8, ph = (h + 7) / 8 * 8;
  padded = g_malloc((gsize)pw * ph * 3);
  padded_mask = g_malloc0((gsize)pw * ph);
  for (y = 0; y < ph; ++y)
    for (x = 0; x < pw; ++x) {
      const gsize src = (gsize)MIN(y, h - 1) * w + MIN(x, w - 1), dst = (gsize)y * pw + x;
      memcpy(padded + 3 * dst, px.rgb + 3 * src, 3);
      if (x < w && y < h) padded_mask[dst] = mask[src];
    }
  im.width = pw, im.height = ph, im.stride = pw * 3, im.format = LOUPE_RGB8, im.data = padded;
  mask_im.width = pw, mask_im.height = ph, mask_im.stride = pw, mask_im.format = LOUPE_GRAY8, mask_im.data = padded_mask;
  loupe_request_create(&rq, "inpaint");
  loupe_request_set_image(rq, &im);
  loupe_request_set_mask(rq, &mask_im);
  sd_common_request(rq, &v, seed);
  loupe_request_set_float(rq, "strength", v.strength);
  loupe_request_set_int(rq, "only_masked", v.only_masked);
  loupe_request_set_float(rq, "mask_blur", v.mask_blur);
  loupe_request_set_float(rq, "feather", v.feather);
  res = run_task(LOUPE_GIMP_MODEL_SD_INPAINT, rq, &d, error);
  loupe_request_free(rq);
  g_free(padded);
  g_free(padded_mask);
  dialog_destroy(&d);
  if (res && (loupe_result_image_count(res) < 1 || loupe_result_image(res, 0, &result) != LOUPE_OK ||
              result.width < w || result.height < h || result.format == LOUPE_GRAY8)) {
    *error = g_strdup("Loupe: the inpainting result has no image of the layer's size.");
    loupe_result_free(res);
    res = NULL;
  }
  if (!res) {
    g_free(mask);
    loupe_gimp_pixels_clear(&px);
    return failed(error);
  }
  /* The new layer keeps the layer's transparency outside the selection. */
  alpha = g_malloc((gsize)w * h);
  for (y = 0; y < h; ++y)
    for (x = 0; x < w; ++x) {
      const gsize i = (gsize)y * w + x;
      alpha[i] = MAX(px.rgba[4 * i + 3], mask[i]);
    }
  result.width = w, result.height = h; /* the padding goes */
  name = layer_name("inpaint", v.prompt);
  layer = still_there(image, drawable, error) ? loupe_gimp_new_layer(image, name, &result, alpha, error) : -1;
  g_free(name);
  g_free(alpha);
  g_free(mask);
  loupe_gimp_pixels_clear(&px);
  loupe_result_free(res);
  if (layer < 0) return GIMP_PDB_EXECUTION_ERROR;
  gimp_drawable_offsets(drawable, &ox, &oy);
  return add_result_layer(image, layer, drawable, ox, oy, seed, param, out, n_out);
}

/* ------------------------------------------------------------------------------------ generate */

#define GENERATE_PROC "plug-in-loupe-generate"

static const GimpParamDef generate_params[] = {
    {GIMP_PDB_INT32, "run-mode", "The run mode { RUN-INTERACTIVE (0), RUN-NONINTERACTIVE (1) }"},
    {GIMP_PDB_IMAGE, "image", "The image that gets the new layer"},
    {GIMP_PDB_DRAWABLE, "drawable", "The new layer goes above this one (-1 = at the top)"},
    {GIMP_PDB_STRING, "prompt", "What to paint"},
    {GIMP_PDB_STRING, "negative-prompt", "What to avoid (may be empty)"},
    {GIMP_PDB_INT32, "width", "Width in pixels, rounded to a multiple of 8 (0 = the image's width)"},
    {GIMP_PDB_INT32, "height", "Height in pixels, rounded to a multiple of 8 (0 = the image's height)"},
    {GIMP_PDB_INT32, "steps", "Denoising steps"},
    {GIMP_PDB_FLOAT, "guidance-scale", "Classifier-free guidance scale"},
    {GIMP_PDB_INT32, "seed", "Random seed (-1 = random)"},
};

static GimpPDBStatusType generate_run(gint nparams, const GimpParam *param, GimpParam *out, gint *n_out,
                                      gchar **error) {
  const gint32 image = param[1].data.d_image;
  const gint32 drawable = gimp_item_is_valid(param[2].data.d_drawable) ? param[2].data.d_drawable : -1;
  SdValues v;
  Dialog d;
  loupe_request *rq = NULL;
  loupe_result *res;
  loupe_image result;
  gint seed, width, height;
  gint32 layer;
  gchar *name;
  (void)nparams;
  memset(&d, 0, sizeof d);
  if (!gimp_image_is_valid(image)) {
    *error = g_strdup("Loupe needs an open image.");
    return GIMP_PDB_CALLING_ERROR;
  }
  sd_defaults(&v);
  get_last_values(GENERATE_PROC, &v, sizeof v);
  v.prompt[sizeof v.prompt - 1] = v.negative[sizeof v.negative - 1] = '\0';
  if (run_mode(param) == GIMP_RUN_NONINTERACTIVE) {
    copy_string(v.prompt, sizeof v.prompt, param[3].data.d_string);
    copy_string(v.negative, sizeof v.negative, param[4].data.d_string);
    v.width = param[5].data.d_int32;
    v.height = param[6].data.d_int32;
    v.steps = param[7].data.d_int32;
    v.guidance = param[8].data.d_float;
    v.seed = param[9].data.d_int32;
  }
  {
    const GimpPDBStatusType ask =
        sd_ask(&d, &v, param, FALSE, gimp_image_width(image), gimp_image_height(image), "Loupe: Generate", GENERATE_PROC,
               "Paint a new layer from a prompt.", "Generating…", "Generate needs a prompt: say what to paint.", error);
    if (ask != GIMP_PDB_SUCCESS) return ask;
  }
  seed = resolve_seed(v.seed);
  width = round8(v.width > 0 ? v.width : gimp_image_width(image));
  height = round8(v.height > 0 ? v.height : gimp_image_height(image));
  loupe_request_create(&rq, "txt2img");
  sd_common_request(rq, &v, seed);
  loupe_request_set_int(rq, "width", width);
  loupe_request_set_int(rq, "height", height);
  res = run_task(LOUPE_GIMP_MODEL_SD, rq, &d, error);
  loupe_request_free(rq);
  dialog_destroy(&d);
  if (res && (loupe_result_image_count(res) < 1 || loupe_result_image(res, 0, &result) != LOUPE_OK)) {
    *error = g_strdup("Loupe: the result has no image.");
    loupe_result_free(res);
    res = NULL;
  }
  if (!res) return failed(error);
  name = layer_name("generate", v.prompt);
  layer = still_there(image, drawable, error) ? loupe_gimp_new_layer(image, name, &result, NULL, error) : -1;
  g_free(name);
  loupe_result_free(res);
  if (layer < 0) return GIMP_PDB_EXECUTION_ERROR;
  return add_result_layer(image, layer, drawable, 0, 0, seed, param, out, n_out);
}

/* ------------------------------------------------------------------------------------ info */

#define INFO_PROC "plug-in-loupe-info"

static const GimpParamDef info_params[] = {
    {GIMP_PDB_INT32, "run-mode", "The run mode { RUN-INTERACTIVE (0), RUN-NONINTERACTIVE (1) }"}};
static const GimpParamDef info_returns[] = {
    {GIMP_PDB_INT32, "loads", "How many models were loaded since GIMP started (a second call does not load again)"},
    {GIMP_PDB_STRING, "info", "JSON: loads, open sessions, the runtime's diagnostics"},
};

static GimpPDBStatusType info_run(gint nparams, const GimpParam *param, GimpParam *out, gint *n_out, gchar **error) {
  static gchar *json;
  (void)nparams;
  (void)param;
  (void)error;
  g_free(json);
  json = loupe_gimp_engine_info();
  out[0].type = GIMP_PDB_INT32;
  out[0].data.d_int32 = loupe_gimp_engine_loads();
  out[1].type = GIMP_PDB_STRING;
  out[1].data.d_string = json;
  *n_out = 2;
  return GIMP_PDB_SUCCESS;
}

/* ------------------------------------------------------------------------------------ table */

#define N(a) ((gint)G_N_ELEMENTS(a))

const LoupeGimpProc loupe_gimp_procs[] = {
    {CAPTION_PROC, "_Caption...", "Describe the layer; the caption becomes the image's comment",
     "Runs a Florence-2 caption task on the layer and writes the caption into the image's comment "
     "(gimp-comment parasite), optionally also as a text layer.",
     IMAGE_TYPES, N(caption_params), caption_params, N(caption_returns), caption_returns, caption_run},
    {DETECT_PROC, "_Detect Objects...", "Find objects; one path per object, named by its label",
     "Runs a Florence-2 object detection on the layer and adds one rectangular path per object, named by its "
     "label, in the model's order.",
     IMAGE_TYPES, N(detect_params), detect_params, N(detect_returns), detect_returns, detect_run},
    {SELECT_PROC, "_Select by Description...", "Select what a description names",
     "Runs Florence-2 phrase grounding (boxes) or referring segmentation (outlines) for the text; the regions "
     "found replace the selection. Nothing found: the selection is left as it is and 0 is returned.",
     IMAGE_TYPES, N(select_params), select_params, N(select_returns), select_returns, select_run},
    {INPAINT_PROC, "_Inpaint Selection...", "Repaint the selection from a prompt, as a new layer",
     "Runs Stable Diffusion inpainting with the selection as the mask (white = repaint) and adds the result as "
     "a new layer above the layer. Needs a selection.",
     IMAGE_TYPES, N(inpaint_params), inpaint_params, N(sd_returns), sd_returns, inpaint_run},
    {GENERATE_PROC, "_Generate...", "Paint a new layer from a prompt",
     "Runs Stable Diffusion text-to-image and adds the picture as a new layer.", "*", N(generate_params),
     generate_params, N(sd_returns), sd_returns, generate_run},
    {INFO_PROC, NULL, "Loupe's state: models loaded, sessions, diagnostics",
     "For scripts and bug reports: how many models were loaded since GIMP started, which are open, and the "
     "runtime's diagnostics JSON.",
     "", N(info_params), info_params, N(info_returns), info_returns, info_run},
    {NULL, NULL, NULL, NULL, NULL, 0, NULL, 0, NULL, NULL},
};
