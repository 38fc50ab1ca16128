/* The procedures of Filters > Loupe: their PDB parameters, which task each runs, and what each
 * does with the result. Everything between (values, dialogs, the model, the job) is run.c's. */
#include "procs.h"

#include <string.h>

#include "engine.h"
#include "run.h"

#define IMAGE_TYPES "RGB*, GRAY*, INDEXED*"
#define RUN_MODE_PARAM \
  { GIMP_PDB_INT32, "run-mode", "The run mode { RUN-INTERACTIVE (0), RUN-NONINTERACTIVE (1) }" }

/* ------------------------------------------------------------------------------------ helpers */

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

static void set_pdb_string(LoupeGimpValues *v, const gchar *key, const GimpParam *p) {
  loupe_gimp_values_set(v, LOUPE_GIMP_TASK, key, p->data.d_string ? p->data.d_string : "");
}
static void set_pdb_int(LoupeGimpValues *v, const gchar *key, const GimpParam *p) {
  loupe_gimp_values_set_int(v, LOUPE_GIMP_TASK, key, p->data.d_int32);
}
static void set_pdb_bool(LoupeGimpValues *v, const gchar *key, const GimpParam *p) {
  loupe_gimp_values_set_int(v, LOUPE_GIMP_TASK, key, p->data.d_int32 != 0);
}
static void set_pdb_float(LoupeGimpValues *v, const gchar *key, const GimpParam *p) {
  loupe_gimp_values_set_double(v, LOUPE_GIMP_TASK, key, p->data.d_float);
}

/* The text the job ran on, for layer names. */
static const gchar *sent_text(const LoupeGimpCall *call) {
  const gchar *key = call->task->info.text_key;
  const gchar *t = key && *key ? loupe_gimp_values_get(call->values, LOUPE_GIMP_TASK, key) : NULL;
  return t ? t : "";
}

/* ------------------------------------------------------------------------------------ caption */

#define CAPTION_PROC "plug-in-loupe-caption"

static const GimpParamDef caption_params[] = {
    RUN_MODE_PARAM,
    {GIMP_PDB_IMAGE, "image", "Input image"},
    {GIMP_PDB_DRAWABLE, "drawable", "The layer to describe"},
    {GIMP_PDB_INT32, "detail", "0 = short caption, 1 = detailed, 2 = more detailed"},
    {GIMP_PDB_INT32, "text-layer", "1 = also add the caption as a text layer"},
};
static const GimpParamDef caption_returns[] = {{GIMP_PDB_STRING, "caption", "The caption (also the image's comment)"}};

static const gchar *const caption_tasks[] = {"caption", "detailed_caption", "more_detailed_caption", NULL};

static const LoupeGimpField caption_fields[] = {
    {"detail", LOUPE_GIMP_FIELD_TASK, "_Detail:", "How much the caption says", 0, caption_tasks, TRUE},
    {"text_layer", LOUPE_GIMP_FIELD_BOOL, "Also add a _text layer", "The caption also as a text layer above the layer",
     0, NULL, FALSE},
};

static const gchar *caption_task(const LoupeGimpValues *v) {
  return caption_tasks[CLAMP(loupe_gimp_values_int(v, LOUPE_GIMP_PLUGIN, "detail", 0), 0, 2)];
}

static gboolean caption_from_pdb(LoupeGimpCall *call, const GimpParam *param, gchar **error) {
  const gint detail = param[3].data.d_int32;
  if (detail < 0 || detail > 2) {
    *error = g_strdup_printf("detail must be 0, 1 or 2 (got %d)", detail);
    return FALSE;
  }
  loupe_gimp_values_set_int(call->values, LOUPE_GIMP_PLUGIN, "detail", detail);
  loupe_gimp_values_set_int(call->values, LOUPE_GIMP_PLUGIN, "text_layer", param[4].data.d_int32 != 0);
  return TRUE;
}

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

static GimpPDBStatusType caption_apply(LoupeGimpCall *call, const loupe_result *res, GimpParam *out, gint *n_out,
                                       gchar **error) {
  static gchar *returned;
  gchar *caption = loupe_gimp_clean_text(loupe_result_text(res));
  GimpParasite *parasite;
  (void)error;
  gimp_image_undo_group_start(call->image);
  parasite = gimp_parasite_new("gimp-comment", GIMP_PARASITE_PERSISTENT, (guint32)strlen(caption) + 1, caption);
  gimp_image_attach_parasite(call->image, parasite);
  gimp_parasite_free(parasite);
  if (loupe_gimp_values_int(call->values, LOUPE_GIMP_PLUGIN, "text_layer", 0) &&
      add_text_layer(call->image, call->drawable, caption) < 0)
    g_message("Loupe: GIMP could not make a text layer (no fonts?); the caption is in the image's comment.");
  gimp_image_undo_group_end(call->image);
  g_free(returned);
  returned = caption;
  out[0].type = GIMP_PDB_STRING;
  out[0].data.d_string = returned;
  *n_out = 1;
  return GIMP_PDB_SUCCESS;
}

static const LoupeGimpProcSpec caption_spec = {
    CAPTION_PROC,
    "Loupe: Caption",
    "Describe the layer in words. The caption becomes the image's comment (Image > Properties).",
    "Describing the layer…",
    LOUPE_GIMP_MODEL_FLORENCE,
    LOUPE_GIMP_FROM_LAYER,
    caption_fields,
    G_N_ELEMENTS(caption_fields),
    NULL,
    NULL,
    NULL,
    caption_task,
    caption_from_pdb,
    caption_apply,
    FALSE,
    LOUPE_GIMP_MODEL_FLORENCE};

/* ------------------------------------------------------------------------------------ detect */

#define DETECT_PROC "plug-in-loupe-detect"

static const GimpParamDef detect_params[] = {
    RUN_MODE_PARAM,
    {GIMP_PDB_IMAGE, "image", "Input image"},
    {GIMP_PDB_DRAWABLE, "drawable", "The layer to look at"},
};
static const GimpParamDef detect_returns[] = {
    {GIMP_PDB_INT32, "num-paths", "The number of paths added (one per object)"},
    {GIMP_PDB_INT32ARRAY, "paths", "The paths, in the order the model gave the objects"},
};

static const gchar *detect_task(const LoupeGimpValues *v) {
  (void)v;
  return "detect";
}

static gboolean no_pdb_values(LoupeGimpCall *call, const GimpParam *param, gchar **error) {
  (void)call, (void)param, (void)error;
  return TRUE;
}

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

static GimpPDBStatusType detect_apply(LoupeGimpCall *call, const loupe_result *res, GimpParam *out, gint *n_out,
                                      gchar **error) {
  static gint32 *ids;
  const size_t n = loupe_result_box_count(res);
  loupe_box *boxes = g_new0(loupe_box, MAX(n, 1));
  size_t i;
  gint ox = 0, oy = 0;
  for (i = 0; i < n; ++i) { /* all of them read before the image changes */
    loupe_box b = LOUPE_BOX_INIT;
    if (loupe_result_get_box(res, i, &b) != LOUPE_OK) {
      *error = g_strdup_printf("Loupe could not read object %u of the result: %s", (unsigned)i, loupe_last_error());
      g_free(boxes);
      return GIMP_PDB_EXECUTION_ERROR;
    }
    boxes[i] = b;
  }
  g_free(ids);
  ids = g_new0(gint32, MAX(n, 1));
  gimp_drawable_offsets(call->drawable, &ox, &oy);
  gimp_image_undo_group_start(call->image);
  /* Inserted bottom-up at the top of the list, so the Paths dialog lists them in the model's order. */
  for (i = n; i-- > 0;) {
    const loupe_box *b = &boxes[i];
    gchar *label = loupe_gimp_clean_text(b->label);
    ids[i] = box_path(call->image, *label ? label : "object", ox + MIN(b->x0, b->x1), oy + MIN(b->y0, b->y1),
                      ox + MAX(b->x0, b->x1), oy + MAX(b->y0, b->y1));
    gimp_image_insert_vectors(call->image, ids[i], 0, 0);
    gimp_item_set_visible(ids[i], TRUE);
    g_free(label);
  }
  gimp_image_undo_group_end(call->image);
  g_free(boxes);
  if (call->mode != GIMP_RUN_NONINTERACTIVE && n == 0) g_message("Loupe found no objects in this layer.");
  out[0].type = GIMP_PDB_INT32;
  out[0].data.d_int32 = (gint32)n;
  out[1].type = GIMP_PDB_INT32ARRAY;
  out[1].data.d_int32array = ids;
  *n_out = 2;
  return GIMP_PDB_SUCCESS;
}

static const LoupeGimpProcSpec detect_spec = {
    DETECT_PROC,
    "Loupe: Detect Objects",
    "Find the objects in the layer. Each one becomes a path named after it (Paths dialog).",
    "Finding objects…",
    LOUPE_GIMP_MODEL_FLORENCE,
    LOUPE_GIMP_FROM_LAYER,
    NULL,
    0,
    NULL,
    NULL,
    NULL,
    detect_task,
    no_pdb_values,
    detect_apply,
    FALSE,
    LOUPE_GIMP_MODEL_FLORENCE};

/* ------------------------------------------------------------------------------------ select */

#define SELECT_PROC "plug-in-loupe-select"

static const GimpParamDef select_params[] = {
    RUN_MODE_PARAM,
    {GIMP_PDB_IMAGE, "image", "Input image"},
    {GIMP_PDB_DRAWABLE, "drawable", "The layer to look at"},
    {GIMP_PDB_STRING, "text", "What to select, in words (e.g. \"the red car\")"},
    {GIMP_PDB_INT32, "outline", "1 = follow the outline (segmentation), 0 = boxes"},
};
static const GimpParamDef select_returns[] = {
    {GIMP_PDB_INT32, "num-regions",
     "How many regions make the new selection (0 = nothing found, selection unchanged)"}};

static const LoupeGimpField select_fields[] = {
    {"outline", LOUPE_GIMP_FIELD_BOOL, "Follow the _outline (slower than boxes)",
     "Outlines (segmentation) instead of boxes (phrase grounding)", 0, NULL, TRUE},
};

static const gchar *select_task(const LoupeGimpValues *v) {
  return loupe_gimp_values_int(v, LOUPE_GIMP_PLUGIN, "outline", 0) ? "segment" : "ground";
}

static gboolean select_from_pdb(LoupeGimpCall *call, const GimpParam *param, gchar **error) {
  (void)error;
  set_pdb_string(call->values, "text", &param[3]);
  loupe_gimp_values_set_int(call->values, LOUPE_GIMP_PLUGIN, "outline", param[4].data.d_int32 != 0);
  return TRUE;
}

static GimpPDBStatusType select_apply(LoupeGimpCall *call, const loupe_result *res, GimpParam *out, gint *n_out,
                                      gchar **error) {
  const size_t nb = loupe_result_box_count(res), np = loupe_result_polygon_count(res);
  loupe_box *boxes = g_new0(loupe_box, MAX(nb, 1));
  loupe_polygon *polygons = g_new0(loupe_polygon, MAX(np, 1));
  size_t i;
  gint ox = 0, oy = 0, regions = 0;
  for (i = 0; i < nb + np; ++i) { /* all of them read before the image changes */
    loupe_box b = LOUPE_BOX_INIT;
    loupe_polygon p = LOUPE_POLYGON_INIT;
    const loupe_status st = i < nb ? loupe_result_get_box(res, i, &b) : loupe_result_get_polygon(res, i - nb, &p);
    if (st != LOUPE_OK) {
      *error = g_strdup_printf("Loupe could not read region %u of the result: %s", (unsigned)i, loupe_last_error());
      g_free(boxes);
      g_free(polygons);
      return GIMP_PDB_EXECUTION_ERROR;
    }
    if (i < nb) boxes[i] = b;
    else polygons[i - nb] = p;
  }
  gimp_drawable_offsets(call->drawable, &ox, &oy);
  gimp_image_undo_group_start(call->image);
  gimp_context_push(); /* the person's tool options stay as they are */
  gimp_context_set_feather(FALSE);
  gimp_context_set_antialias(TRUE);
  for (i = 0; i < nb; ++i) {
    const loupe_box *b = &boxes[i];
    const gdouble x0 = MIN(b->x0, b->x1), x1 = MAX(b->x0, b->x1), y0 = MIN(b->y0, b->y1), y1 = MAX(b->y0, b->y1);
    if (x1 - x0 < 1.0 || y1 - y0 < 1.0) continue; /* a line or a point selects nothing */
    gimp_image_select_rectangle(call->image, regions++ ? GIMP_CHANNEL_OP_ADD : GIMP_CHANNEL_OP_REPLACE, ox + x0,
                                oy + y0, x1 - x0, y1 - y0);
  }
  for (i = 0; i < np; ++i) {
    const loupe_polygon *p = &polygons[i];
    gdouble *segs;
    size_t k;
    if (p->point_count < 3) continue;
    segs = g_new(gdouble, 2 * p->point_count);
    for (k = 0; k < p->point_count; ++k) {
      segs[2 * k] = ox + p->points[2 * k];
      segs[2 * k + 1] = oy + p->points[2 * k + 1];
    }
    gimp_image_select_polygon(call->image, regions++ ? GIMP_CHANNEL_OP_ADD : GIMP_CHANNEL_OP_REPLACE,
                              (gint)(2 * p->point_count), segs);
    g_free(segs);
  }
  gimp_context_pop();
  gimp_image_undo_group_end(call->image);
  g_free(boxes);
  g_free(polygons);
  if (call->mode != GIMP_RUN_NONINTERACTIVE && regions == 0)
    g_message("Loupe found nothing matching \"%s\"; the selection is unchanged.", sent_text(call));
  out[0].type = GIMP_PDB_INT32;
  out[0].data.d_int32 = regions;
  *n_out = 1;
  return GIMP_PDB_SUCCESS;
}

static const LoupeGimpProcSpec select_spec = {SELECT_PROC,
                                              "Loupe: Select by Description",
                                              "Describe what to select. What the model finds replaces the selection.",
                                              "Looking for it…",
                                              LOUPE_GIMP_MODEL_FLORENCE,
                                              LOUPE_GIMP_FROM_LAYER,
                                              select_fields,
                                              G_N_ELEMENTS(select_fields),
                                              "_Select",
                                              "What to select, in words (e.g. \"the red car\")",
                                              "Select by Description needs a description of what to select.",
                                              select_task,
                                              select_from_pdb,
                                              select_apply,
    FALSE,
    LOUPE_GIMP_MODEL_FLORENCE};

/* ------------------------------------------------------------------------------------ Stable Diffusion */

static const GimpParamDef sd_returns[] = {
    {GIMP_PDB_LAYER, "layer", "The new layer with the result (the first, when the model made several)"},
    {GIMP_PDB_INT32, "seed", "The seed used (-1 if it does not fit 32 bits)"},
};

/* Each image of a diffusion result becomes a layer above `drawable` at (x, y), in one undo step
 * (alpha: width x height bytes, or NULL); the procedure returns the first layer and the seed. */
static GimpPDBStatusType add_result_layers(LoupeGimpCall *call, const loupe_result *res, const gchar *what, gint w,
                                           gint h, const guchar *alpha, gint x, gint y, GimpParam *out, gint *n_out,
                                           gchar **error) {
  const size_t n = loupe_result_image_count(res);
  gint32 *layers = g_new0(gint32, MAX(n, 1));
  gchar *name = layer_name(what, sent_text(call));
  size_t i;
  if (n == 0) *error = g_strdup("Loupe: the result has no image.");
  for (i = 0; i < n && !*error; ++i) { /* every layer made before the image changes */
    loupe_image im;
    if (loupe_result_image(res, i, &im) != LOUPE_OK) {
      *error = g_strdup_printf("Loupe could not read image %u of the result: %s", (unsigned)i, loupe_last_error());
      break;
    }
    if (w > 0 && (im.width < w || im.height < h || im.format == LOUPE_GRAY8)) {
      *error = g_strdup("Loupe: the result has no image of the layer's size.");
      break;
    }
    if (w > 0) im.width = w, im.height = h; /* the padding goes */
    layers[i] = loupe_gimp_new_layer(call->image, name, &im, alpha, error);
    if (layers[i] < 0) break;
  }
  g_free(name);
  if (*error) {
    while (i-- > 0)
      if (layers[i] >= 0) gimp_item_delete(layers[i]);
    g_free(layers);
    return GIMP_PDB_EXECUTION_ERROR;
  }
  gimp_image_undo_group_start(call->image);
  for (i = 0; i < n; ++i) { /* the first image on top */
    insert_above(call->image, layers[i], call->drawable);
    gimp_layer_set_offsets(layers[i], x, y);
  }
  gimp_image_undo_group_end(call->image);
  out[0].type = GIMP_PDB_LAYER;
  out[0].data.d_layer = layers[0];
  out[1].type = GIMP_PDB_INT32;
  out[1].data.d_int32 = loupe_gimp_result_seed(res);
  *n_out = 2;
  g_free(layers);
  return GIMP_PDB_SUCCESS;
}

/* ------------------------------------------------------------------------------------ inpaint */

#define INPAINT_PROC "plug-in-loupe-inpaint"

static const GimpParamDef inpaint_params[] = {
    RUN_MODE_PARAM,
    {GIMP_PDB_IMAGE, "image", "Input image"},
    {GIMP_PDB_DRAWABLE, "drawable", "The layer to repaint (the selection is the mask)"},
    {GIMP_PDB_STRING, "prompt", "What to paint into the selection (may be empty)"},
    {GIMP_PDB_STRING, "negative-prompt", "What to avoid (may be empty)"},
    {GIMP_PDB_INT32, "steps", "Denoising steps"},
    {GIMP_PDB_FLOAT, "guidance-scale", "Classifier-free guidance scale"},
    {GIMP_PDB_FLOAT, "strength", "0..1: how much of the selected area is repainted"},
    {GIMP_PDB_INT32, "seed", "Random seed (-1 = random)"},
    {GIMP_PDB_INT32, "only-masked", "1 = work on the selected area only, at full resolution"},
    {GIMP_PDB_FLOAT, "mask-blur", "Blur of the mask, in pixels"},
    {GIMP_PDB_FLOAT, "feather", "Feather of the pasted result, in pixels"},
};

static const gchar *inpaint_task(const LoupeGimpValues *v) {
  (void)v;
  return "inpaint";
}

static gboolean inpaint_from_pdb(LoupeGimpCall *call, const GimpParam *param, gchar **error) {
  (void)error;
  set_pdb_string(call->values, "prompt", &param[3]);
  set_pdb_string(call->values, "negative_prompt", &param[4]);
  set_pdb_int(call->values, "steps", &param[5]);
  set_pdb_float(call->values, "guidance_scale", &param[6]);
  set_pdb_float(call->values, "strength", &param[7]);
  set_pdb_int(call->values, "seed", &param[8]);
  set_pdb_bool(call->values, "only_masked", &param[9]);
  set_pdb_float(call->values, "mask_blur", &param[10]);
  set_pdb_float(call->values, "feather", &param[11]);
  return TRUE;
}

static GimpPDBStatusType inpaint_apply(LoupeGimpCall *call, const loupe_result *res, GimpParam *out, gint *n_out,
                                       gchar **error) {
  const gint w = call->px.width, h = call->px.height;
  guchar *alpha = g_malloc((gsize)w * h);
  gint ox = 0, oy = 0;
  gsize i;
  GimpPDBStatusType st;
  /* The new layer keeps the layer's transparency outside the selection. */
  for (i = 0; i < (gsize)w * h; ++i) alpha[i] = MAX(call->px.rgba[4 * i + 3], call->mask[i]);
  gimp_drawable_offsets(call->drawable, &ox, &oy);
  st = add_result_layers(call, res, "inpaint", w, h, alpha, ox, oy, out, n_out, error);
  g_free(alpha);
  return st;
}

static const LoupeGimpProcSpec inpaint_spec = {
    INPAINT_PROC,
    "Loupe: Inpaint Selection",
    "Repaint the selected area from a prompt. The result comes back as a new layer.",
    "Repainting the selection…",
    LOUPE_GIMP_MODEL_SD_INPAINT,
    LOUPE_GIMP_FROM_LAYER | LOUPE_GIMP_FROM_SELECTION | LOUPE_GIMP_PAD_TO_8,
    NULL,
    0,
    NULL,
    NULL,
    NULL,
    inpaint_task,
    inpaint_from_pdb,
    inpaint_apply,
    FALSE,
    LOUPE_GIMP_MODEL_FLORENCE};

/* ------------------------------------------------------------------------------------ generate */

#define GENERATE_PROC "plug-in-loupe-generate"

static const GimpParamDef generate_params[] = {
    RUN_MODE_PARAM,
    {GIMP_PDB_IMAGE, "image", "The image that gets the new layer"},
    {GIMP_PDB_DRAWABLE, "drawable", "The new layer goes above this one (-1 = at the top)"},
    {GIMP_PDB_STRING, "prompt", "What to paint (empty: unconditional generation)"},
    {GIMP_PDB_STRING, "negative-prompt", "What to avoid (may be empty)"},
    {GIMP_PDB_INT32, "width", "Width in pixels, rounded to a multiple of 8 (0 = the image's width)"},
    {GIMP_PDB_INT32, "height", "Height in pixels, rounded to a multiple of 8 (0 = the image's height)"},
    {GIMP_PDB_INT32, "steps", "Denoising steps"},
    {GIMP_PDB_FLOAT, "guidance-scale", "Classifier-free guidance scale"},
    {GIMP_PDB_INT32, "seed", "Random seed (-1 = random)"},
};

static const gchar *generate_task(const LoupeGimpValues *v) {
  (void)v;
  return "txt2img";
}

/* Sizes are multiples of 8 (the latent grid). */
static gint round8(gint v) { return CLAMP((v + 4) / 8 * 8, 8, 4096); }

static gboolean generate_from_pdb(LoupeGimpCall *call, const GimpParam *param, gchar **error) {
  const gint w = param[5].data.d_int32, h = param[6].data.d_int32;
  (void)error;
  set_pdb_string(call->values, "prompt", &param[3]);
  set_pdb_string(call->values, "negative_prompt", &param[4]);
  loupe_gimp_values_set_int(call->values, LOUPE_GIMP_TASK, "width", round8(w > 0 ? w : gimp_image_width(call->image)));
  loupe_gimp_values_set_int(call->values, LOUPE_GIMP_TASK, "height",
                            round8(h > 0 ? h : gimp_image_height(call->image)));
  set_pdb_int(call->values, "steps", &param[7]);
  set_pdb_float(call->values, "guidance_scale", &param[8]);
  set_pdb_int(call->values, "seed", &param[9]);
  return TRUE;
}

static GimpPDBStatusType generate_apply(LoupeGimpCall *call, const loupe_result *res, GimpParam *out, gint *n_out,
                                        gchar **error) {
  return add_result_layers(call, res, "generate", 0, 0, NULL, 0, 0, out, n_out, error);
}

static const LoupeGimpProcSpec generate_spec = {
    GENERATE_PROC,
    "Loupe: Generate",
    "Paint a new layer from a prompt (or from nothing: an empty prompt is allowed).",
    "Generating…",
    LOUPE_GIMP_MODEL_SD,
    0,
    NULL,
    0,
    NULL,
    NULL,
    NULL,
    generate_task,
    generate_from_pdb,
    generate_apply,
    FALSE,
    LOUPE_GIMP_MODEL_FLORENCE};

/* ------------------------------------------------------------------------------------ edit by words */

#define EDIT_PROC "plug-in-loupe-edit"

static const GimpParamDef edit_params[] = {
    RUN_MODE_PARAM,
    {GIMP_PDB_IMAGE, "image", "Input image"},
    {GIMP_PDB_DRAWABLE, "drawable", "The layer to edit"},
    {GIMP_PDB_STRING, "target", "What to change, in words (e.g. \"the red car\")"},
    {GIMP_PDB_STRING, "prompt", "What it becomes (e.g. \"a blue bicycle\"); empty = remove it"},
    {GIMP_PDB_INT32, "grow", "Pixels the found mask is widened by"},
    {GIMP_PDB_FLOAT, "feather", "Pixels over which the result blends in, inwards from the mask's edge"},
    {GIMP_PDB_INT32, "steps", "Denoising steps"},
    {GIMP_PDB_FLOAT, "strength", "0..1: how much of the found area is repainted"},
    {GIMP_PDB_INT32, "seed", "Random seed (-1 = random)"},
};
static const GimpParamDef edit_returns[] = {
    {GIMP_PDB_LAYER, "layer", "The new layer with the edited layer"},
    {GIMP_PDB_INT32, "regions", "How many objects were found"},
    {GIMP_PDB_INT32, "seed", "The seed used (-1 if it does not fit 32 bits)"},
};

static const gchar *edit_task(const LoupeGimpValues *v) {
  (void)v;
  return "edit";
}

static gboolean edit_from_pdb(LoupeGimpCall *call, const GimpParam *param, gchar **error) {
  (void)error;
  set_pdb_string(call->values, "target", &param[3]);
  set_pdb_string(call->values, "prompt", &param[4]);
  set_pdb_int(call->values, "grow", &param[5]);
  set_pdb_float(call->values, "feather", &param[6]);
  set_pdb_int(call->values, "steps", &param[7]);
  set_pdb_float(call->values, "strength", &param[8]);
  set_pdb_int(call->values, "seed", &param[9]);
  return TRUE;
}

/* The edited layer becomes a new layer above it, with the layer's transparency (the repainted area
 * opaque), in one undo step. */
static GimpPDBStatusType edit_apply(LoupeGimpCall *call, const loupe_result *res, GimpParam *out, gint *n_out,
                                    gchar **error) {
  const gint w = call->px.width, h = call->px.height;
  const size_t n = loupe_result_image_count(res);
  loupe_image im, mask;
  double regions = 0;
  guchar *alpha;
  gchar *name;
  gint32 layer;
  gint ox = 0, oy = 0, y, x;
  if (n < 2 || loupe_result_image(res, 0, &im) != LOUPE_OK || loupe_result_image(res, n - 1, &mask) != LOUPE_OK ||
      im.width != w || im.height != h || mask.width != w || mask.height != h || mask.format != LOUPE_GRAY8) {
    *error = g_strdup("Loupe: the edit's result has no image and mask of the layer's size.");
    return GIMP_PDB_EXECUTION_ERROR;
  }
  alpha = g_malloc((gsize)w * h);
  for (y = 0; y < h; ++y)
    for (x = 0; x < w; ++x) {
      const gsize i = (gsize)y * w + x;
      alpha[i] = MAX(call->px.rgba[4 * i + 3], mask.data[(gsize)y * mask.stride + x]);
    }
  name = layer_name("edit", sent_text(call));
  layer = loupe_gimp_new_layer(call->image, name, &im, alpha, error);
  g_free(name);
  g_free(alpha);
  if (layer < 0) return GIMP_PDB_EXECUTION_ERROR;
  gimp_drawable_offsets(call->drawable, &ox, &oy);
  gimp_image_undo_group_start(call->image);
  insert_above(call->image, layer, call->drawable);
  gimp_layer_set_offsets(layer, ox, oy);
  gimp_image_undo_group_end(call->image);
  loupe_result_number(res, "regions", &regions);
  out[0].type = GIMP_PDB_LAYER;
  out[0].data.d_layer = layer;
  out[1].type = GIMP_PDB_INT32;
  out[1].data.d_int32 = (gint32)regions;
  out[2].type = GIMP_PDB_INT32;
  out[2].data.d_int32 = loupe_gimp_result_seed(res);
  *n_out = 3;
  return GIMP_PDB_SUCCESS;
}

static const LoupeGimpProcSpec edit_spec = {
    EDIT_PROC,
    "Loupe: Edit by Words",
    "Say what to change and what it becomes (nothing: remove it). The edited layer comes back as a new layer.",
    "Editing…",
    LOUPE_GIMP_MODEL_FLORENCE,
    LOUPE_GIMP_FROM_LAYER,
    NULL,
    0,
    "_What",
    "What to change, in words (e.g. \"the red car\")",
    "Edit by Words needs a description of what to change.",
    edit_task,
    edit_from_pdb,
    edit_apply,
    TRUE,
    LOUPE_GIMP_MODEL_SD_INPAINT};

/* ------------------------------------------------------------------------------------ the runs */

#define RUN_ON_LAYER(fn, spec)                                                                                    \
  static GimpPDBStatusType fn(gint nparams, const GimpParam *param, GimpParam *out, gint *n_out, gchar **error) { \
    (void)nparams;                                                                                                \
    return loupe_gimp_run_on_layer(&spec, param, out, n_out, error);                                              \
  }
RUN_ON_LAYER(caption_run, caption_spec)
RUN_ON_LAYER(detect_run, detect_spec)
RUN_ON_LAYER(select_run, select_spec)
RUN_ON_LAYER(inpaint_run, inpaint_spec)
RUN_ON_LAYER(generate_run, generate_spec)
RUN_ON_LAYER(edit_run, edit_spec)

/* ------------------------------------------------------------------------------------ info */

#define INFO_PROC "plug-in-loupe-info"

static const GimpParamDef info_params[] = {RUN_MODE_PARAM};
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
     "a new layer above the layer. Needs a selection. Parameters a script cannot pass take the model's defaults.",
     IMAGE_TYPES, N(inpaint_params), inpaint_params, N(sd_returns), sd_returns, inpaint_run},
    {GENERATE_PROC, "_Generate...", "Paint a new layer from a prompt",
     "Runs Stable Diffusion text-to-image and adds the picture as a new layer; an empty prompt generates "
     "unconditionally. Parameters a script cannot pass take the model's defaults.",
     "*", N(generate_params), generate_params, N(sd_returns), sd_returns, generate_run},
    {EDIT_PROC, "_Edit by Words...", "Find what words name and repaint it (or remove it), as a new layer",
     "Finds the target with Florence-2 (referring segmentation), grows the mask, and repaints only that area "
     "with Stable Diffusion inpainting following the prompt (an empty prompt removes it); the edited layer is "
     "added above the layer, pixels outside the mask unchanged. Nothing found is an error naming the target.",
     IMAGE_TYPES, N(edit_params), edit_params, N(edit_returns), edit_returns, edit_run},
    {INFO_PROC, NULL, "Loupe's state: models loaded, sessions, diagnostics",
     "For scripts and bug reports: how many models were loaded since GIMP started, which are open, and the "
     "runtime's diagnostics JSON.",
     "", N(info_params), info_params, N(info_returns), info_returns, info_run},
    {NULL, NULL, NULL, NULL, NULL, 0, NULL, 0, NULL, NULL},
};
