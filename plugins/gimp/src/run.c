#include "run.h"

#include <string.h>

#include "engine.h"
#include "models.h"

/* ------------------------------------------------------------------ checks */

/* Only layers: a channel or a layer mask has no colours to look at, and results go next to a layer.
 * Without FROM_LAYER (generate) the drawable only says where the new layer goes. */
static GimpPDBStatusType check_target(LoupeGimpCall *call, gchar **error) {
  if (!gimp_image_is_valid(call->image)) {
    *error = g_strdup("Loupe needs an open image.");
    return GIMP_PDB_CALLING_ERROR;
  }
  if (!(call->spec->inputs & LOUPE_GIMP_FROM_LAYER)) {
    if (!gimp_item_is_valid(call->drawable)) call->drawable = -1;
    return GIMP_PDB_SUCCESS;
  }
  if (!gimp_item_is_valid(call->drawable) || !gimp_item_is_layer(call->drawable) ||
      gimp_item_get_image(call->drawable) != call->image) {
    *error = g_strdup("Loupe works on a layer: pick a layer (not a channel or a layer mask) in the Layers dialog.");
    return GIMP_PDB_CALLING_ERROR;
  }
  return GIMP_PDB_SUCCESS;
}

/* The selection is the mask: without one over the layer there is nothing to repaint. */
static GimpPDBStatusType check_selection(LoupeGimpCall *call, gchar **error) {
  gboolean selected = FALSE, any = FALSE;
  gint x1, y1, x2, y2;
  gimp_selection_bounds(call->image, &selected, &x1, &y1, &x2, &y2);
  if (!selected) {
    *error =
        g_strdup_printf("%s needs a selection: select the area to repaint first (white = repaint).", call->spec->title);
    return GIMP_PDB_EXECUTION_ERROR;
  }
  g_free(loupe_gimp_read_selection_mask(call->image, call->drawable, &any));
  if (!any) {
    *error = g_strdup("The selection does not cover any part of this layer: select inside the layer to repaint.");
    return GIMP_PDB_EXECUTION_ERROR;
  }
  return GIMP_PDB_SUCCESS;
}

/* The person may close the image or delete the layer while a long job runs. */
static gboolean still_there(const LoupeGimpCall *call, gchar **error) {
  if (gimp_image_is_valid(call->image) && (call->drawable < 0 || gimp_item_is_valid(call->drawable))) return TRUE;
  *error = g_strdup("The image or the layer went away while Loupe was working; nothing was changed.");
  return FALSE;
}

/* The text a task cannot run without. */
static gboolean check_text(const LoupeGimpCall *call, const LoupeGimpTask *task, gchar **error) {
  const gchar *text;
  gchar *stripped;
  gboolean ok;
  if (!loupe_gimp_task_needs_text(task)) return TRUE;
  text = loupe_gimp_values_get(call->values, LOUPE_GIMP_TASK, task->info.text_key);
  stripped = g_strstrip(g_strdup(text ? text : ""));
  ok = *stripped != '\0';
  g_free(stripped);
  if (!ok)
    *error = call->spec->text_missing ? g_strdup(call->spec->text_missing)
                                      : g_strdup_printf("%s needs a %s.", call->spec->title, task->info.text_label);
  return ok;
}

/* ------------------------------------------------------------------ the dialog */

/* Interactive: the dialog, with the model loading in it; rebuilt when another model or task is
 * chosen. On OK, *session / *task / *model are what the values are for. */
static GimpPDBStatusType ask(LoupeGimpCall *call, LoupeGimpDialog *d, gchar **model, loupe_session **session,
                             LoupeGimpTask *task, gchar **error) {
  const LoupeGimpProcSpec *spec = call->spec;
  gchar *note = NULL, *problem = NULL;
  GPtrArray *models = loupe_gimp_models_list(spec->model, spec->task(call->values), *model, &note);
  if (models->len == 0) {
    g_ptr_array_free(models, TRUE);
    g_free(note);
    if (!*error) *error = g_strdup("Loupe found no model for this.");
    return GIMP_PDB_EXECUTION_ERROR;
  }
  g_clear_pointer(error, g_free); /* there are models to choose from after all */
  loupe_gimp_dialog_set_models(d, models, *model, note);
  g_free(note);
  for (;;) {
    const gchar *path = loupe_gimp_dialog_model(d);
    LoupeGimpAnswer answer;
    g_clear_pointer(&problem, g_free);
    loupe_gimp_task_clear(task);
    loupe_gimp_dialog_set_loading(d, TRUE);
    *session = loupe_gimp_engine_open(path, loupe_gimp_dialog_ui(d), &problem);
    loupe_gimp_dialog_set_loading(d, FALSE);
    if (loupe_gimp_dialog_cancelled(d)) {
      g_free(problem);
      return GIMP_PDB_CANCEL;
    }
    if (*session && loupe_gimp_task_load(spec->two_models ? NULL : *session, spec->task(call->values), task, &problem)) {
      loupe_gimp_values_fit(call->values, task);
      loupe_gimp_dialog_build(d, *session, spec->fields, spec->n_fields, task, call->values, spec->text_label,
                              spec->text_help);
    } else {
      *session = NULL;
      loupe_gimp_dialog_show_error(d, problem);
    }
    answer = loupe_gimp_dialog_run(d);
    if (answer == LOUPE_GIMP_ANSWER_CANCEL) {
      g_free(problem);
      return GIMP_PDB_CANCEL;
    }
    /* A rebuild keeps what the person changed; the new model's defaults fill the rest. */
    loupe_gimp_dialog_read(d, call->values, answer == LOUPE_GIMP_ANSWER_REBUILD);
    if (answer == LOUPE_GIMP_ANSWER_OK) {
      if (!*session) { /* OK without a form (only a test's automatic OK can do that) */
        *error = problem;
        return GIMP_PDB_EXECUTION_ERROR;
      }
      g_free(problem);
      g_free(*model);
      *model = g_strdup(path);
      return GIMP_PDB_SUCCESS;
    }
  }
}

/* ------------------------------------------------------------------ the request */

/* Pads width x height pixels of bpp bytes right and bottom to multiples of 8 with the edge pixels
 * (fill_zero: with zeros). g_free the result. */
static guchar *pad8(const guchar *src, gint w, gint h, gint bpp, gint pw, gint ph, gboolean fill_zero) {
  guchar *dst = fill_zero ? g_malloc0((gsize)pw * ph * bpp) : g_malloc((gsize)pw * ph * bpp);
  gint x, y;
  for (y = 0; y < ph; ++y)
    for (x = 0; x < pw; ++x) {
      if (fill_zero && (x >= w || y >= h)) continue;
      memcpy(dst + ((gsize)y * pw + x) * bpp, src + ((gsize)MIN(y, h - 1) * w + MIN(x, w - 1)) * bpp, (gsize)bpp);
    }
  return dst;
}

static gboolean set_inputs(LoupeGimpCall *call, loupe_request *rq, gchar **error) {
  const LoupeGimpProcSpec *spec = call->spec;
  const loupe_task_info *info = &call->task->info;
  gint pw, ph;
  guchar *image = NULL, *mask = NULL;
  loupe_image im;
  gboolean ok = TRUE;
  if (!(spec->inputs & LOUPE_GIMP_FROM_LAYER) || !(info->inputs & LOUPE_INPUT_IMAGE)) return TRUE;
  if (!loupe_gimp_read_drawable(call->drawable, &call->px, error)) return FALSE;
  if (spec->inputs & LOUPE_GIMP_FROM_SELECTION) { /* read again: the person may have changed it meanwhile */
    gboolean any = FALSE;
    call->mask = loupe_gimp_read_selection_mask(call->image, call->drawable, &any);
    if (!any) {
      *error = g_strdup("The selection does not cover any part of this layer: select inside the layer to repaint.");
      return FALSE;
    }
  }
  pw = call->px.width, ph = call->px.height;
  if (spec->inputs & LOUPE_GIMP_PAD_TO_8) pw = (pw + 7) / 8 * 8, ph = (ph + 7) / 8 * 8;
  image = pw == call->px.width && ph == call->px.height
              ? NULL
              : pad8(call->px.rgb, call->px.width, call->px.height, 3, pw, ph, FALSE);
  im.width = pw, im.height = ph, im.stride = pw * 3, im.format = LOUPE_RGB8, im.data = image ? image : call->px.rgb;
  if (loupe_request_set_image(rq, &im) != LOUPE_OK) {
    *error = g_strdup_printf("Loupe did not take the layer's pixels: %s", loupe_last_error());
    ok = FALSE;
  }
  if (ok && call->mask && (info->inputs & LOUPE_INPUT_MASK)) {
    loupe_image m;
    mask = image ? pad8(call->mask, call->px.width, call->px.height, 1, pw, ph, TRUE) : NULL;
    m.width = pw, m.height = ph, m.stride = pw, m.format = LOUPE_GRAY8, m.data = mask ? mask : call->mask;
    if (loupe_request_set_mask(rq, &m) != LOUPE_OK) {
      *error = g_strdup_printf("Loupe did not take the selection as the mask: %s", loupe_last_error());
      ok = FALSE;
    }
  }
  g_free(image); /* the request holds copies */
  g_free(mask);
  return ok;
}

static loupe_request *build_request(LoupeGimpCall *call, gchar **error) {
  loupe_request *rq = NULL;
  LoupeGimpValues *sent = loupe_gimp_values_new();
  const gchar *key = call->task->info.text_key;
  gboolean ok;
  if (loupe_request_create(&rq, call->task->info.name) != LOUPE_OK) {
    *error = g_strdup_printf("Loupe cannot make a '%s' request: %s", call->task->info.name, loupe_last_error());
    loupe_gimp_values_free(sent);
    return NULL;
  }
  loupe_gimp_values_merge(sent, call->values);
  if (key && *key && loupe_gimp_values_get(sent, LOUPE_GIMP_TASK, key)) { /* the text without surrounding blanks */
    gchar *text = g_strstrip(g_strdup(loupe_gimp_values_get(sent, LOUPE_GIMP_TASK, key)));
    loupe_gimp_values_set(sent, LOUPE_GIMP_TASK, key, text);
    g_free(text);
  }
  ok = set_inputs(call, rq, error) && loupe_gimp_values_to_request(sent, call->task, rq, error);
  loupe_gimp_values_free(sent);
  if (!ok) {
    loupe_request_free(rq);
    return NULL;
  }
  return rq;
}

/* What is remembered for next time (dialogs, repeat): the stored values with this run's on top,
 * without those equal to the session's defaults. */
static void remember(const LoupeGimpCall *call) {
  LoupeGimpValues *stored = loupe_gimp_values_load(call->spec->name);
  loupe_gimp_values_merge(stored, call->values);
  loupe_gimp_values_drop_defaults(stored, call->task);
  loupe_gimp_values_save(stored, call->spec->name);
  loupe_gimp_values_free(stored);
}

gint32 loupe_gimp_result_seed(const loupe_result *result) {
  double seed = -1;
  if (loupe_result_number(result, "seed", &seed) != LOUPE_OK) return -1;
  return seed >= 0 && seed <= G_MAXINT32 ? (gint32)seed : -1;
}

/* ------------------------------------------------------------------ the run */

GimpPDBStatusType loupe_gimp_run_on_layer(const LoupeGimpProcSpec *spec, const GimpParam *param, GimpParam *out,
                                          gint *n_out, gchar **error) {
  LoupeGimpCall call;
  LoupeGimpDialog *dialog = NULL;
  LoupeGimpTask task;
  loupe_session *session = NULL, *painter = NULL;
  loupe_request *rq = NULL;
  loupe_result *res = NULL;
  gchar *model = NULL;
  GimpPDBStatusType st;
  memset(&call, 0, sizeof call);
  memset(&task, 0, sizeof task);
  call.spec = spec;
  call.mode = (GimpRunMode)param[0].data.d_int32;
  call.image = param[1].data.d_image;
  call.drawable = param[2].data.d_drawable;
  st = check_target(&call, error);
  if (st == GIMP_PDB_SUCCESS && (spec->inputs & LOUPE_GIMP_FROM_SELECTION)) st = check_selection(&call, error);
  if (st != GIMP_PDB_SUCCESS) return st;

  /* The values: a script's parameters (the rest: the session's defaults), else the last ones. */
  if (call.mode == GIMP_RUN_NONINTERACTIVE) {
    call.values = loupe_gimp_values_new();
    if (!spec->from_pdb(&call, param, error)) {
      st = GIMP_PDB_CALLING_ERROR;
      goto done;
    }
  } else {
    call.values = loupe_gimp_values_load(spec->name);
  }

  /* The model and its session; in a dialog, the person may choose another. */
  model = loupe_gimp_model_for(spec->model, call.mode != GIMP_RUN_NONINTERACTIVE, error);
  if (call.mode == GIMP_RUN_INTERACTIVE) {
    dialog = loupe_gimp_dialog_new(spec->name, spec->title, spec->explanation, TRUE);
    st = ask(&call, dialog, &model, &session, &task, error);
    if (st != GIMP_PDB_SUCCESS) goto done;
    loupe_gimp_model_remember(spec->model, model);
  } else {
    if (!model) {
      st = GIMP_PDB_EXECUTION_ERROR;
      goto done;
    }
    if (call.mode == GIMP_RUN_WITH_LAST_VALS)
      dialog = loupe_gimp_dialog_new(spec->name, spec->title, spec->busy, FALSE);
    session = loupe_gimp_engine_open(model, dialog ? loupe_gimp_dialog_ui(dialog) : NULL, error);
    if (!session) {
      st = GIMP_PDB_EXECUTION_ERROR;
      goto done;
    }
    if (dialog && loupe_gimp_dialog_cancelled(dialog)) {
      st = GIMP_PDB_CANCEL;
      goto done;
    }
    if (!loupe_gimp_task_load(spec->two_models ? NULL : session, spec->task(call.values), &task, error)) {
      st = GIMP_PDB_EXECUTION_ERROR;
      goto done;
    }
    /* Last values the model no longer accepts fall back to its defaults; a script's go to the SDK,
     * which says what is wrong with them. */
    if (call.mode == GIMP_RUN_WITH_LAST_VALS) loupe_gimp_values_fit(call.values, &task);
  }
  call.task = &task;
  if (!check_text(&call, &task, error)) {
    st = GIMP_PDB_CALLING_ERROR;
    goto done;
  }
  remember(&call);

  /* Edit by words: the painter too (the kind's model by the same rules: environment, last choice,
   * the models folder). */
  if (spec->two_models) {
    gchar *painter_model = loupe_gimp_model_for(spec->painter, call.mode != GIMP_RUN_NONINTERACTIVE, error);
    painter = painter_model ? loupe_gimp_engine_open(painter_model, dialog ? loupe_gimp_dialog_ui(dialog) : NULL, error)
                            : NULL;
    g_free(painter_model);
    if (!painter) {
      st = GIMP_PDB_EXECUTION_ERROR;
      goto done;
    }
  }

  /* The job. */
  if (dialog) loupe_gimp_dialog_start_job(dialog);
  rq = build_request(&call, error);
  if (!rq) {
    st = GIMP_PDB_EXECUTION_ERROR;
    goto done;
  }
  res = spec->two_models ? loupe_gimp_engine_run_edit(session, painter, rq, dialog ? loupe_gimp_dialog_ui(dialog) : NULL, error)
                         : loupe_gimp_engine_run(session, rq, dialog ? loupe_gimp_dialog_ui(dialog) : NULL, error);
  loupe_gimp_dialog_free(dialog);
  dialog = NULL;
  if (!res) {
    st = *error ? GIMP_PDB_EXECUTION_ERROR : GIMP_PDB_CANCEL;
    goto done;
  }
  if (!still_there(&call, error)) {
    st = GIMP_PDB_EXECUTION_ERROR;
    goto done;
  }
  st = spec->apply(&call, res, out, n_out, error);
  if (st == GIMP_PDB_SUCCESS && call.mode != GIMP_RUN_NONINTERACTIVE) gimp_displays_flush();

done:
  loupe_gimp_dialog_free(dialog);
  loupe_result_free(res);
  loupe_request_free(rq);
  loupe_gimp_task_clear(&task);
  loupe_gimp_values_free(call.values);
  loupe_gimp_pixels_clear(&call.px);
  g_free(call.mask);
  g_free(model);
  return st;
}
