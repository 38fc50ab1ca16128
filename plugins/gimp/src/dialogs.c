#include "dialogs.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libgimp/gimp.h>
#include <libgimp/gimpui.h>

#include "models.h"

#define PLUG_IN_BINARY "loupe-gimp"
#define RESPONSE_REBUILD 1
/* Spin buttons hold doubles: integer ranges are shown within what a double holds exactly. */
#define EXACT_INT 9007199254740992.0 /* 2^53 */

typedef struct Row {             /* one parameter of the task */
  const loupe_param_info *param; /* the session's description (lives as long as the session) */
  GtkWidget *widget, *label, *unit;
  gboolean advanced, changed;
} Row;

typedef struct FieldRow { /* one field of the procedure */
  const LoupeGimpField *field;
  GtkWidget *widget;
  const gchar *const *tasks;
} FieldRow;

struct LoupeGimpDialog {
  gchar *proc;
  GtkWidget *dialog;
  gboolean with_ok;
  LoupeGimpUi ui;
  /* the model choice */
  GtkWidget *model_combo, *model_note;
  GPtrArray *models; /* LoupeGimpModel */
  /* the form */
  GtkWidget *error_label;
  GtkWidget *form; /* a vbox rebuilt for each task */
  GtkWidget *text; /* the text input, or NULL */
  GtkWidget *text_label;
  gchar *text_key;
  gboolean text_required;
  FieldRow *fields;
  gint n_fields;
  Row *rows;
  gint n_rows;
  gchar *task; /* the task the form was built for */
  gboolean loading, built;
  gboolean rebuilding; /* signals from widgets being filled in are not the person's changes */
};

static void ensure_ui(void) {
  static gboolean done;
  if (!done) gimp_ui_init(PLUG_IN_BINARY, FALSE);
  done = TRUE;
}

static void pump(void) {
  while (gtk_events_pending()) gtk_main_iteration();
}

static void on_response(GtkDialog *dialog, gint response, gpointer data) {
  LoupeGimpDialog *d = data;
  (void)dialog;
  if (response == GTK_RESPONSE_CANCEL || response == GTK_RESPONSE_DELETE_EVENT) g_atomic_int_set(&d->ui.cancelled, 1);
}

LoupeGimpDialog *loupe_gimp_dialog_new(const gchar *proc, const gchar *title, const gchar *text, gboolean with_ok) {
  LoupeGimpDialog *d = g_new0(LoupeGimpDialog, 1);
  GtkWidget *vbox, *label;
  ensure_ui();
  d->proc = g_strdup(proc);
  d->with_ok = with_ok;
  if (with_ok) {
    d->dialog = gimp_dialog_new(title, PLUG_IN_BINARY, NULL, 0, NULL, proc, "_Cancel", GTK_RESPONSE_CANCEL, "_OK",
                                GTK_RESPONSE_OK, NULL);
    gtk_dialog_set_alternative_button_order(GTK_DIALOG(d->dialog), GTK_RESPONSE_OK, GTK_RESPONSE_CANCEL, -1);
    gtk_dialog_set_default_response(GTK_DIALOG(d->dialog), GTK_RESPONSE_OK); /* Enter in an entry = OK */
  } else {
    d->dialog = gimp_dialog_new(title, PLUG_IN_BINARY, NULL, 0, NULL, proc, "_Cancel", GTK_RESPONSE_CANCEL, NULL);
  }
  gimp_window_set_transient(GTK_WINDOW(d->dialog));
  g_signal_connect(d->dialog, "response", G_CALLBACK(on_response), d);
  vbox = gtk_vbox_new(FALSE, 12);
  gtk_container_set_border_width(GTK_CONTAINER(vbox), 12);
  gtk_box_pack_start(GTK_BOX(gtk_dialog_get_content_area(GTK_DIALOG(d->dialog))), vbox, TRUE, TRUE, 0);
  label = gtk_label_new(text);
  gtk_label_set_line_wrap(GTK_LABEL(label), TRUE);
  gtk_misc_set_alignment(GTK_MISC(label), 0.0, 0.5);
  gtk_box_pack_start(GTK_BOX(vbox), label, FALSE, FALSE, 0);
  if (with_ok) {
    GtkWidget *table = gtk_table_new(2, 2, FALSE);
    gtk_table_set_col_spacings(GTK_TABLE(table), 6);
    gtk_table_set_row_spacings(GTK_TABLE(table), 2);
    d->model_combo = gtk_combo_box_text_new();
    gimp_table_attach_aligned(GTK_TABLE(table), 0, 0, "_Model:", 0.0, 0.5, d->model_combo, 1, FALSE);
    d->model_note = gtk_label_new(NULL);
    gtk_misc_set_alignment(GTK_MISC(d->model_note), 0.0, 0.5);
    gtk_label_set_line_wrap(GTK_LABEL(d->model_note), TRUE);
    gtk_table_attach(GTK_TABLE(table), d->model_note, 1, 2, 1, 2, GTK_FILL, GTK_FILL, 0, 0);
    gtk_box_pack_start(GTK_BOX(vbox), table, FALSE, FALSE, 0);
    d->error_label = gtk_label_new(NULL);
    gtk_label_set_line_wrap(GTK_LABEL(d->error_label), TRUE);
    gtk_misc_set_alignment(GTK_MISC(d->error_label), 0.0, 0.5);
    gtk_box_pack_start(GTK_BOX(vbox), d->error_label, FALSE, FALSE, 0);
    d->form = gtk_vbox_new(FALSE, 6);
    gtk_box_pack_start(GTK_BOX(vbox), d->form, FALSE, FALSE, 0);
  }
  d->ui.dialog = d->dialog;
  d->ui.progress = gtk_progress_bar_new();
  gtk_box_pack_end(GTK_BOX(vbox), d->ui.progress, FALSE, FALSE, 0);
  gtk_widget_show_all(d->dialog);
  if (d->model_note) gtk_widget_hide(d->model_note);
  if (d->error_label) gtk_widget_hide(d->error_label);
  if (with_ok) gtk_dialog_set_response_sensitive(GTK_DIALOG(d->dialog), GTK_RESPONSE_OK, FALSE);
  pump();
  return d;
}

static void destroy_child(GtkWidget *w, gpointer data) {
  (void)data;
  gtk_widget_destroy(w);
}

static void clear_form(LoupeGimpDialog *d) {
  if (d->form) gtk_container_foreach(GTK_CONTAINER(d->form), destroy_child, NULL);
  g_free(d->rows);
  g_free(d->fields);
  g_free(d->text_key);
  g_free(d->task);
  d->rows = NULL;
  d->fields = NULL;
  d->text_key = NULL;
  d->task = NULL;
  d->n_rows = d->n_fields = 0;
  d->text = d->text_label = NULL;
  d->built = FALSE;
}

void loupe_gimp_dialog_free(LoupeGimpDialog *d) {
  if (!d) return;
  clear_form(d);
  if (d->dialog) {
    gtk_widget_destroy(d->dialog);
    pump();
  }
  if (d->models) g_ptr_array_free(d->models, TRUE);
  g_free(d->proc);
  g_free(d);
}

LoupeGimpUi *loupe_gimp_dialog_ui(LoupeGimpDialog *d) { return &d->ui; }

gboolean loupe_gimp_dialog_cancelled(LoupeGimpDialog *d) { return g_atomic_int_get(&d->ui.cancelled) != 0; }

/* OK only with a form, not while loading, and with the text a task cannot run without. */
static void update_ok(LoupeGimpDialog *d) {
  gboolean ok = d->with_ok && d->built && !d->loading;
  if (ok && d->text && d->text_required) {
    gchar *text = g_strstrip(g_strdup(gtk_entry_get_text(GTK_ENTRY(d->text))));
    ok = *text != '\0';
    g_free(text);
  }
  if (d->with_ok) gtk_dialog_set_response_sensitive(GTK_DIALOG(d->dialog), GTK_RESPONSE_OK, ok);
}

static void on_model_changed(GtkComboBox *combo, gpointer data) {
  LoupeGimpDialog *d = data;
  (void)combo;
  if (!d->rebuilding) gtk_dialog_response(GTK_DIALOG(d->dialog), RESPONSE_REBUILD);
}

void loupe_gimp_dialog_set_models(LoupeGimpDialog *d, GPtrArray *models, const gchar *active, const gchar *note) {
  guint i;
  gint index = -1;
  if (!d->model_combo) {
    g_ptr_array_free(models, TRUE);
    return;
  }
  d->rebuilding = TRUE;
  if (d->models) g_ptr_array_free(d->models, TRUE);
  d->models = models;
  for (i = 0; i < models->len; ++i) {
    const LoupeGimpModel *m = g_ptr_array_index(models, i);
    gtk_combo_box_text_append_text(GTK_COMBO_BOX_TEXT(d->model_combo), m->label);
    if (active && strcmp(m->path, active) == 0) index = (gint)i;
  }
  gtk_combo_box_set_active(GTK_COMBO_BOX(d->model_combo), index >= 0 ? index : 0);
  g_signal_connect(d->model_combo, "changed", G_CALLBACK(on_model_changed), d);
  d->rebuilding = FALSE;
  if (note && *note) {
    gtk_label_set_text(GTK_LABEL(d->model_note), note);
    gtk_widget_show(d->model_note);
  }
  pump();
}

const gchar *loupe_gimp_dialog_model(LoupeGimpDialog *d) {
  const gint i = d->model_combo ? gtk_combo_box_get_active(GTK_COMBO_BOX(d->model_combo)) : -1;
  if (!d->models || i < 0 || (guint)i >= d->models->len) return NULL;
  return ((const LoupeGimpModel *)g_ptr_array_index(d->models, (guint)i))->path;
}

void loupe_gimp_dialog_set_loading(LoupeGimpDialog *d, gboolean loading) {
  d->loading = loading;
  if (d->model_combo) gtk_widget_set_sensitive(d->model_combo, !loading);
  if (d->form) gtk_widget_set_sensitive(d->form, !loading);
  if (!loading) {
    gtk_progress_bar_set_text(GTK_PROGRESS_BAR(d->ui.progress), "");
    gtk_progress_bar_set_fraction(GTK_PROGRESS_BAR(d->ui.progress), 0.0);
  }
  update_ok(d);
  pump();
}

void loupe_gimp_dialog_show_error(LoupeGimpDialog *d, const gchar *message) {
  clear_form(d);
  if (d->error_label) {
    gtk_label_set_text(GTK_LABEL(d->error_label), message);
    gtk_widget_show(d->error_label);
  }
  update_ok(d);
}

/* ------------------------------------------------------------------ the form */

static void on_text_changed(GtkEditable *entry, gpointer data) {
  (void)entry;
  update_ok(data);
}

static void on_row_changed(GtkWidget *widget, gpointer data) {
  Row *row = data;
  (void)widget;
  row->changed = TRUE;
}

static void on_field_changed(GtkWidget *widget, gpointer data) {
  LoupeGimpDialog *d = g_object_get_data(G_OBJECT(widget), "loupe-dialog");
  const FieldRow *f = data;
  if (!d->rebuilding && f->field->changes_task) gtk_dialog_response(GTK_DIALOG(d->dialog), RESPONSE_REBUILD);
}

static GtkWidget *new_table(void) {
  GtkWidget *t = gtk_table_new(1, 3, FALSE);
  gtk_table_set_col_spacings(GTK_TABLE(t), 6);
  gtk_table_set_row_spacings(GTK_TABLE(t), 6);
  return t;
}

/* A label "Text:" with the text's first letter in capitals. */
static gchar *form_label(const gchar *text) {
  gchar *s = g_strdup(text && *text ? text : "?");
  gchar *label;
  gunichar first = g_utf8_get_char(s);
  gchar up[8] = {0};
  g_unichar_to_utf8(g_unichar_toupper(first), up);
  label = g_strdup_printf("%s%s:", up, g_utf8_next_char(s));
  g_free(s);
  return label;
}

/* Decimals a spin button needs to show steps of `step` (0.05 -> 2). */
static guint digits_for(double step) {
  guint d = 0;
  double scaled = step;
  while (d < 6 && fabs(scaled - round(scaled)) > 1e-9 * MAX(1.0, fabs(scaled))) {
    scaled *= 10;
    ++d;
  }
  return d;
}

static void attach(GtkWidget *table, gint *row, GtkWidget *label, GtkWidget *widget, GtkWidget *unit) {
  if (label) {
    gtk_misc_set_alignment(GTK_MISC(label), 0.0, 0.5);
    gtk_table_attach(GTK_TABLE(table), label, 0, 1, *row, *row + 1, GTK_FILL, GTK_FILL, 0, 0);
    gtk_label_set_mnemonic_widget(GTK_LABEL(label), widget);
  }
  gtk_table_attach(GTK_TABLE(table), widget, 1, 2, *row, *row + 1, GTK_EXPAND | GTK_FILL, GTK_FILL, 0, 0);
  if (unit) {
    gtk_misc_set_alignment(GTK_MISC(unit), 0.0, 0.5);
    gtk_table_attach(GTK_TABLE(table), unit, 2, 3, *row, *row + 1, GTK_FILL, GTK_FILL, 0, 0);
  }
  ++*row;
}

/* One widget for one parameter, showing `value` (NULL: the description's default). */
static void build_row(Row *row, const loupe_param_info *p, const gchar *value) {
  gchar *def = loupe_gimp_param_default(p);
  const gchar *v = value && loupe_gimp_value_fits(p, value) ? value : def;
  gint64 n = 0;
  gdouble x = 0;
  row->param = p;
  row->advanced = p->advanced != 0;
  loupe_gimp_value_parse(p, v, &n, &x);
  switch (p->type) {
    case LOUPE_PARAM_INT:
    case LOUPE_PARAM_FLOAT: {
      const gboolean is_int = p->type == LOUPE_PARAM_INT;
      const double step = p->step > 0 ? p->step : is_int ? 1 : 0.01;
      const double lo = is_int ? MAX(p->min, -EXACT_INT) : p->min, hi = is_int ? MIN(p->max, EXACT_INT) : p->max;
      GtkObject *adj = gtk_adjustment_new(CLAMP(x, lo, hi), lo, hi, step, step * 10, 0);
      row->widget = gtk_spin_button_new(GTK_ADJUSTMENT(adj), step, is_int ? 0 : digits_for(step));
      gtk_spin_button_set_numeric(GTK_SPIN_BUTTON(row->widget), TRUE);
      if (is_int && step > 1) gtk_spin_button_set_snap_to_ticks(GTK_SPIN_BUTTON(row->widget), TRUE);
      gtk_entry_set_activates_default(GTK_ENTRY(row->widget), TRUE);
      g_signal_connect(row->widget, "value-changed", G_CALLBACK(on_row_changed), row);
      break;
    }
    case LOUPE_PARAM_BOOL:
      row->widget = gtk_check_button_new_with_label(p->label);
      gtk_toggle_button_set_active(GTK_TOGGLE_BUTTON(row->widget), n != 0);
      g_signal_connect(row->widget, "toggled", G_CALLBACK(on_row_changed), row);
      break;
    case LOUPE_PARAM_CHOICE: {
      size_t i;
      gint active = 0;
      row->widget = gtk_combo_box_text_new();
      for (i = 0; i < p->choice_count; ++i) {
        gtk_combo_box_text_append_text(GTK_COMBO_BOX_TEXT(row->widget), p->choices[i]);
        if (strcmp(p->choices[i], v) == 0) active = (gint)i;
      }
      gtk_combo_box_set_active(GTK_COMBO_BOX(row->widget), active);
      g_signal_connect(row->widget, "changed", G_CALLBACK(on_row_changed), row);
      break;
    }
    case LOUPE_PARAM_STRING:
    default:
      row->widget = gtk_entry_new();
      gtk_entry_set_text(GTK_ENTRY(row->widget), v);
      gtk_entry_set_width_chars(GTK_ENTRY(row->widget), 40);
      gtk_entry_set_activates_default(GTK_ENTRY(row->widget), TRUE);
      g_signal_connect(row->widget, "changed", G_CALLBACK(on_row_changed), row);
      break;
  }
  if (p->type != LOUPE_PARAM_BOOL) {
    gchar *text = form_label(p->label);
    row->label = gtk_label_new(text);
    g_free(text);
  }
  if (p->unit && *p->unit && (p->type == LOUPE_PARAM_INT || p->type == LOUPE_PARAM_FLOAT))
    row->unit = gtk_label_new(p->unit);
  if (p->help && *p->help) gtk_widget_set_tooltip_text(row->widget, p->help);
  g_free(def);
}

void loupe_gimp_dialog_build(LoupeGimpDialog *d, loupe_session *session, const LoupeGimpField *fields, gint n_fields,
                             const LoupeGimpTask *task, const LoupeGimpValues *values, const gchar *text_label,
                             const gchar *text_help) {
  GtkWidget *table, *advanced = NULL;
  gint r = 0, ra = 0, i;
  if (!d->form) return;
  clear_form(d);
  d->rebuilding = TRUE;
  gtk_widget_hide(d->error_label);
  d->task = g_strdup(task->info.name);
  table = new_table();
  gtk_box_pack_start(GTK_BOX(d->form), table, FALSE, FALSE, 0);
  /* The procedure's own fields. */
  d->fields = g_new0(FieldRow, MAX(n_fields, 1));
  d->n_fields = n_fields;
  for (i = 0; i < n_fields; ++i) {
    FieldRow *f = &d->fields[i];
    const LoupeGimpField *def = &fields[i];
    const gint64 value = loupe_gimp_values_int(values, LOUPE_GIMP_PLUGIN, def->key, def->def);
    f->field = def;
    if (def->kind == LOUPE_GIMP_FIELD_TASK) {
      gint k;
      f->widget = gtk_combo_box_text_new();
      for (k = 0; def->tasks[k]; ++k) {
        /* Labelled as the session describes its tasks. */
        loupe_task_info info = LOUPE_TASK_INFO_INIT;
        size_t index = 0;
        const gchar *label = def->tasks[k];
        if (loupe_task_find(session, def->tasks[k], &index) == LOUPE_OK &&
            loupe_task_describe(session, index, &info) == LOUPE_OK && info.label && *info.label)
          label = info.label;
        gtk_combo_box_text_append_text(GTK_COMBO_BOX_TEXT(f->widget), label);
      }
      gtk_combo_box_set_active(GTK_COMBO_BOX(f->widget), (gint)CLAMP(value, 0, MAX(k - 1, 0)));
      g_object_set_data(G_OBJECT(f->widget), "loupe-dialog", d);
      g_signal_connect(f->widget, "changed", G_CALLBACK(on_field_changed), f);
      attach(table, &r, gtk_label_new_with_mnemonic(def->label), f->widget, NULL);
    } else {
      f->widget = gtk_check_button_new_with_mnemonic(def->label);
      gtk_toggle_button_set_active(GTK_TOGGLE_BUTTON(f->widget), value != 0);
      g_object_set_data(G_OBJECT(f->widget), "loupe-dialog", d);
      g_signal_connect(f->widget, "toggled", G_CALLBACK(on_field_changed), f);
      attach(table, &r, NULL, f->widget, NULL);
    }
    if (def->help) gtk_widget_set_tooltip_text(f->widget, def->help);
  }
  /* The task's text input. */
  if (task->info.text_key && *task->info.text_key) {
    const gchar *text = loupe_gimp_values_get(values, LOUPE_GIMP_TASK, task->info.text_key);
    gchar *label = text_label ? g_strdup_printf("%s:", text_label) : form_label(task->info.text_label);
    const gchar *help = text_help ? text_help : task->info.text_help;
    d->text_key = g_strdup(task->info.text_key);
    d->text_required = loupe_gimp_task_needs_text(task);
    d->text = gtk_entry_new();
    gtk_entry_set_text(GTK_ENTRY(d->text), text ? text : "");
    gtk_entry_set_width_chars(GTK_ENTRY(d->text), 40);
    gtk_entry_set_activates_default(GTK_ENTRY(d->text), TRUE);
    if (help && *help) gtk_widget_set_tooltip_text(d->text, help);
    g_signal_connect(d->text, "changed", G_CALLBACK(on_text_changed), d);
    d->text_label = text_label ? gtk_label_new_with_mnemonic(label) : gtk_label_new(label);
    attach(table, &r, d->text_label, d->text, NULL);
    g_free(label);
  }
  /* One row per parameter; the advanced ones folded away. */
  d->rows = g_new0(Row, MAX(task->info.param_count, 1));
  d->n_rows = (gint)task->info.param_count;
  for (i = 0; i < d->n_rows; ++i) {
    Row *row = &d->rows[i];
    const loupe_param_info *p = &task->params[i];
    build_row(row, p, loupe_gimp_values_get(values, LOUPE_GIMP_TASK, p->name));
    if (row->advanced) {
      if (!advanced) advanced = new_table();
      attach(advanced, &ra, row->label, row->widget, row->unit);
    } else {
      attach(table, &r, row->label, row->widget, row->unit);
    }
  }
  if (advanced) {
    GtkWidget *expander = gtk_expander_new_with_mnemonic("_Advanced");
    gtk_container_add(GTK_CONTAINER(expander), advanced);
    gtk_box_pack_start(GTK_BOX(d->form), expander, FALSE, FALSE, 0);
  }
  gtk_widget_show_all(d->form);
  d->built = TRUE;
  d->rebuilding = FALSE;
  update_ok(d);
  pump();
}

/* ------------------------------------------------------------------ the dump (tests) */

static gchar *one_line(const gchar *s) { /* the dump's separators stay separators */
  gchar *out = g_strdup(s ? s : ""), *c;
  for (c = out; *c; ++c)
    if (*c == '|' || *c == '\n' || *c == '\r') *c = ' ';
  return out;
}

static gchar *label_text(GtkWidget *label) {
  const gchar *t = label ? gtk_label_get_text(GTK_LABEL(label)) : "";
  gchar *s = g_strdup(t);
  const gsize n = strlen(s);
  if (n > 0 && s[n - 1] == ':') s[n - 1] = '\0';
  return s;
}

static gchar *widget_value(GtkWidget *w, loupe_param_type type) {
  if (GTK_IS_SPIN_BUTTON(w)) {
    const gdouble v = gtk_spin_button_get_value(GTK_SPIN_BUTTON(w));
    return type == LOUPE_PARAM_INT ? g_strdup_printf("%" G_GINT64_FORMAT, (gint64)llround(v))
                                   : loupe_gimp_format_number(v);
  }
  if (GTK_IS_TOGGLE_BUTTON(w)) return g_strdup(gtk_toggle_button_get_active(GTK_TOGGLE_BUTTON(w)) ? "1" : "0");
  if (GTK_IS_COMBO_BOX_TEXT(w)) {
    gchar *t = gtk_combo_box_text_get_active_text(GTK_COMBO_BOX_TEXT(w));
    return t ? t : g_strdup("");
  }
  if (GTK_IS_ENTRY(w)) return g_strdup(gtk_entry_get_text(GTK_ENTRY(w)));
  return g_strdup("");
}

static gchar *combo_items(GtkWidget *w) {
  GString *s = g_string_new(NULL);
  GtkTreeModel *model = gtk_combo_box_get_model(GTK_COMBO_BOX(w));
  GtkTreeIter it;
  gboolean more = gtk_tree_model_get_iter_first(model, &it);
  while (more) {
    gchar *text = NULL;
    gtk_tree_model_get(model, &it, 0, &text, -1);
    g_string_append_printf(s, "%s%s", s->len ? "," : "", text ? text : "");
    g_free(text);
    more = gtk_tree_model_iter_next(model, &it);
  }
  return g_string_free(s, FALSE);
}

static gboolean in_expander(GtkWidget *w) {
  for (; w; w = gtk_widget_get_parent(w))
    if (GTK_IS_EXPANDER(w)) return TRUE;
  return FALSE;
}

static void dump_write(const gchar *dir, const gchar *name, const GString *text) {
  gchar *path = g_build_filename(dir, name, NULL);
  GError *err = NULL;
  if (!g_file_set_contents(path, text->str, (gssize)text->len, &err)) {
    g_printerr("loupe-gimp: LOUPE_GIMP_DIALOG_DUMP: %s\n", err->message);
    g_clear_error(&err);
  }
  g_free(path);
}

/* What the dialog shows, read back from its widgets (LOUPE_GIMP_DIALOG_DUMP). */
static void dump(LoupeGimpDialog *d) {
  const gchar *dir = g_getenv("LOUPE_GIMP_DIALOG_DUMP");
  GString *rows, *fields;
  gchar *name;
  gint i;
  if (!dir || !*dir || !d->built) return;
  rows = g_string_new(NULL);
  for (i = 0; i < d->n_rows; ++i) {
    const Row *row = &d->rows[i];
    GtkWidget *w = row->widget;
    gchar *label = GTK_IS_CHECK_BUTTON(w) ? g_strdup(gtk_button_get_label(GTK_BUTTON(w))) : label_text(row->label);
    gchar *tip = gtk_widget_get_tooltip_text(w);
    gchar *value = widget_value(w, row->param->type);
    gchar *lo = g_strdup(""), *hi = g_strdup(""), *step = g_strdup(""), *choices = g_strdup("");
    gchar *cols[13];
    gchar *line;
    guint k;
    if (GTK_IS_SPIN_BUTTON(w)) {
      GtkAdjustment *adj = gtk_spin_button_get_adjustment(GTK_SPIN_BUTTON(w));
      g_free(lo), g_free(hi), g_free(step);
      lo = loupe_gimp_format_number(gtk_adjustment_get_lower(adj));
      hi = loupe_gimp_format_number(gtk_adjustment_get_upper(adj));
      step = loupe_gimp_format_number(gtk_adjustment_get_step_increment(adj));
    } else if (GTK_IS_COMBO_BOX(w)) {
      g_free(choices);
      choices = combo_items(w);
    }
    cols[0] = one_line(row->param->name);
    cols[1] = g_strdup(loupe_gimp_param_type_name(row->param->type));
    cols[2] = g_strdup(G_OBJECT_TYPE_NAME(w));
    cols[3] = one_line(label);
    cols[4] = one_line(tip);
    cols[5] = one_line(row->unit ? gtk_label_get_text(GTK_LABEL(row->unit)) : "");
    cols[6] = one_line(value);
    cols[7] = lo, cols[8] = hi, cols[9] = step;
    cols[10] = g_strdup(in_expander(w) ? "1" : "0");
    cols[11] = one_line(choices);
    cols[12] = NULL;
    line = g_strjoinv("|", cols);
    g_string_append_printf(rows, "%s\n", line);
    g_free(line);
    for (k = 0; k < 12; ++k) g_free(cols[k]);
    g_free(label), g_free(tip), g_free(value), g_free(choices);
  }
  name = g_strdup_printf("%s.%s.rows.txt", d->proc, d->task);
  dump_write(dir, name, rows);
  g_free(name);
  g_string_free(rows, TRUE);

  fields = g_string_new(NULL);
  if (d->models) {
    const gchar *active = loupe_gimp_dialog_model(d);
    guint m;
    for (m = 0; m < d->models->len; ++m) {
      const LoupeGimpModel *model = g_ptr_array_index(d->models, m);
      gchar *label = one_line(model->label);
      g_string_append_printf(fields, "model|%s|%s|%s\n", label, model->path,
                             active && strcmp(active, model->path) == 0 ? "active" : "");
      g_free(label);
    }
  }
  if (d->text) {
    gchar *label = label_text(d->text_label), *tip = gtk_widget_get_tooltip_text(d->text);
    gchar *t0 = one_line(label), *t1 = one_line(tip), *t2 = one_line(gtk_entry_get_text(GTK_ENTRY(d->text)));
    g_string_append_printf(fields, "text|%s|%s|%s|%s|%s\n", d->text_key, t0, t1, t2,
                           d->text_required ? "required" : "optional");
    g_free(label), g_free(tip), g_free(t0), g_free(t1), g_free(t2);
  }
  if (d->with_ok) {
    GtkWidget *ok = gtk_dialog_get_widget_for_response(GTK_DIALOG(d->dialog), GTK_RESPONSE_OK);
    g_string_append_printf(fields, "ok|%d\n", ok && gtk_widget_get_sensitive(ok) ? 1 : 0);
  }
  for (i = 0; i < d->n_fields; ++i) {
    const FieldRow *f = &d->fields[i];
    gchar *value = g_strdup_printf("%d", f->field->kind == LOUPE_GIMP_FIELD_TASK
                                             ? gtk_combo_box_get_active(GTK_COMBO_BOX(f->widget))
                                             : (gint)gtk_toggle_button_get_active(GTK_TOGGLE_BUTTON(f->widget)));
    gchar *items = f->field->kind == LOUPE_GIMP_FIELD_TASK ? combo_items(f->widget) : g_strdup("");
    g_string_append_printf(fields, "field|%s|%s|%s\n", f->field->key, value, items);
    g_free(value), g_free(items);
  }
  name = g_strdup_printf("%s.fields.txt", d->proc);
  dump_write(dir, name, fields);
  g_free(name);
  g_string_free(fields, TRUE);
}

/* ------------------------------------------------------------------ running */

/* One "key=value" of a test's answer: the model choice ("model=<index>"), a field of the procedure
 * or a parameter row set as the person would. TRUE when it changed something that rebuilds the
 * dialog (the rest of the answer then waits for the rebuilt one). */
static gboolean auto_set(LoupeGimpDialog *d, const gchar *key, const gchar *value) {
  const gint n = atoi(value);
  gint i;
  if (strcmp(key, "model") == 0) {
    if (!d->model_combo || gtk_combo_box_get_active(GTK_COMBO_BOX(d->model_combo)) == n) return FALSE;
    gtk_combo_box_set_active(GTK_COMBO_BOX(d->model_combo), n); /* -> REBUILD */
    return TRUE;
  }
  for (i = 0; i < d->n_fields; ++i) {
    const FieldRow *f = &d->fields[i];
    if (strcmp(f->field->key, key) != 0) continue;
    if (f->field->kind == LOUPE_GIMP_FIELD_TASK) {
      if (gtk_combo_box_get_active(GTK_COMBO_BOX(f->widget)) == n) return FALSE;
      gtk_combo_box_set_active(GTK_COMBO_BOX(f->widget), n);
    } else {
      if (gtk_toggle_button_get_active(GTK_TOGGLE_BUTTON(f->widget)) == (n != 0)) return FALSE;
      gtk_toggle_button_set_active(GTK_TOGGLE_BUTTON(f->widget), n != 0);
    }
    return f->field->changes_task;
  }
  for (i = 0; i < d->n_rows; ++i) {
    GtkWidget *w = d->rows[i].widget;
    if (strcmp(d->rows[i].param->name, key) != 0) continue;
    if (GTK_IS_SPIN_BUTTON(w)) gtk_spin_button_set_value(GTK_SPIN_BUTTON(w), g_ascii_strtod(value, NULL));
    else if (GTK_IS_TOGGLE_BUTTON(w)) gtk_toggle_button_set_active(GTK_TOGGLE_BUTTON(w), n != 0);
    else if (GTK_IS_COMBO_BOX(w)) gtk_combo_box_set_active(GTK_COMBO_BOX(w), n);
    else if (GTK_IS_ENTRY(w)) gtk_entry_set_text(GTK_ENTRY(w), value);
  }
  return FALSE;
}

/* LOUPE_GIMP_AUTO_OK: the test's answer. The global parasite "loupe-gimp-auto-response" may hold
 * "key=value ... ok|cancel" (set as the person would, then answer); without it: OK. */
static gboolean auto_answer(gpointer data) {
  LoupeGimpDialog *d = data;
  GimpParasite *p = gimp_get_parasite("loupe-gimp-auto-response");
  gchar *text = p ? g_strndup(gimp_parasite_data(p), gimp_parasite_data_size(p)) : g_strdup("ok");
  gchar **words = g_strsplit_set(text, " \n", -1);
  gint response = GTK_RESPONSE_OK, i;
  if (p) gimp_parasite_free(p);
  for (i = 0; words[i]; ++i) {
    gchar *eq = strchr(words[i], '=');
    if (strcmp(words[i], "cancel") == 0) response = GTK_RESPONSE_CANCEL;
    if (!eq) continue;
    *eq = '\0';
    if (auto_set(d, words[i], eq + 1)) {
      response = 0; /* the rebuilt dialog gets the answer */
      break;
    }
  }
  g_strfreev(words);
  g_free(text);
  if (response) gtk_dialog_response(GTK_DIALOG(d->dialog), response);
  return FALSE;
}

LoupeGimpAnswer loupe_gimp_dialog_run(LoupeGimpDialog *d) {
  const gchar *auto_ms = g_getenv("LOUPE_GIMP_AUTO_OK");
  guint timer = 0;
  gint response;
  dump(d);
  if (auto_ms && *auto_ms) timer = g_timeout_add((guint)MAX(0, atoi(auto_ms)), auto_answer, d);
  response = gimp_dialog_run(GIMP_DIALOG(d->dialog));
  if (timer) {
    GSource *s = g_main_context_find_source_by_id(NULL, timer);
    if (s && !g_source_is_destroyed(s)) g_source_remove(timer);
  }
  if (response == RESPONSE_REBUILD) {
    g_atomic_int_set(&d->ui.cancelled, 0);
    return LOUPE_GIMP_ANSWER_REBUILD;
  }
  return response == GTK_RESPONSE_OK ? LOUPE_GIMP_ANSWER_OK : LOUPE_GIMP_ANSWER_CANCEL;
}

void loupe_gimp_dialog_read(LoupeGimpDialog *d, LoupeGimpValues *values, gboolean changed_only) {
  gint i;
  if (!d->built) return;
  for (i = 0; i < d->n_fields; ++i) {
    const FieldRow *f = &d->fields[i];
    const gint v = f->field->kind == LOUPE_GIMP_FIELD_TASK ? gtk_combo_box_get_active(GTK_COMBO_BOX(f->widget))
                                                           : gtk_toggle_button_get_active(GTK_TOGGLE_BUTTON(f->widget));
    loupe_gimp_values_set_int(values, LOUPE_GIMP_PLUGIN, f->field->key, v);
  }
  if (d->text) loupe_gimp_values_set(values, LOUPE_GIMP_TASK, d->text_key, gtk_entry_get_text(GTK_ENTRY(d->text)));
  for (i = 0; i < d->n_rows; ++i) {
    Row *row = &d->rows[i];
    gchar *value;
    if (changed_only && !row->changed) continue;
    if (GTK_IS_SPIN_BUTTON(row->widget))
      gtk_spin_button_update(GTK_SPIN_BUTTON(row->widget)); /* typed, not yet taken */
    value = widget_value(row->widget, row->param->type);
    loupe_gimp_values_set(values, LOUPE_GIMP_TASK, row->param->name, value);
    g_free(value);
  }
}

void loupe_gimp_dialog_start_job(LoupeGimpDialog *d) {
  if (d->model_combo) gtk_widget_set_sensitive(d->model_combo, FALSE);
  if (d->form) gtk_widget_set_sensitive(d->form, FALSE);
  if (d->with_ok) gtk_dialog_set_response_sensitive(GTK_DIALOG(d->dialog), GTK_RESPONSE_OK, FALSE);
  g_atomic_int_set(&d->ui.cancelled, 0);
  gtk_widget_show(d->dialog);
  pump();
}
