#include "engine.h"

#include <stdio.h>
#include <string.h>

#define MAX_SESSIONS 3

typedef struct Slot {
  gchar *path;
  loupe_session *session;
  gint64 used; /* monotonic time of the last job */
} Slot;

static loupe_runtime *g_runtime;
static gchar *g_runtime_key; /* device|precision|models_dir the runtime was made with */
static Slot g_slots[MAX_SESSIONS];
static gint g_loads;
static gint64 g_last_use;

static void pump(void) {
  while (gtk_events_pending()) gtk_main_iteration();
}

static void log_to_stderr(void *user, loupe_log_level level, const char *message) {
  (void)user;
  fprintf(stderr, "loupe-gimp [%d] %s\n", (int)level, message);
}

static loupe_precision parse_precision(const gchar *p) {
  if (g_ascii_strcasecmp(p, "fp32") == 0 || g_ascii_strcasecmp(p, "float32") == 0) return LOUPE_PRECISION_FP32;
  if (g_ascii_strcasecmp(p, "fp16") == 0 || g_ascii_strcasecmp(p, "float16") == 0) return LOUPE_PRECISION_FP16;
  if (g_ascii_strcasecmp(p, "bf16") == 0 || g_ascii_strcasecmp(p, "bfloat16") == 0) return LOUPE_PRECISION_BF16;
  return LOUPE_PRECISION_AUTO;
}

void loupe_gimp_engine_shutdown(void) {
  int i;
  for (i = 0; i < MAX_SESSIONS; ++i) {
    loupe_session_close(g_slots[i].session);
    g_free(g_slots[i].path);
    memset(&g_slots[i], 0, sizeof g_slots[i]);
  }
  loupe_runtime_free(g_runtime);
  g_runtime = NULL;
  g_free(g_runtime_key);
  g_runtime_key = NULL;
}

void loupe_gimp_engine_touch(void) { g_last_use = g_get_monotonic_time(); }

static gint64 idle_limit_us(void) {
  const gchar *v = g_getenv("LOUPE_GIMP_IDLE_SECONDS");
  const gint64 s = v && *v ? g_ascii_strtoll(v, NULL, 10) : 600;
  return s > 0 ? s * G_USEC_PER_SEC : 0;
}

guint loupe_gimp_engine_idle_check(void) {
  const gint64 limit = idle_limit_us();
  gint64 left;
  if (!g_runtime || limit == 0) return 0;
  left = g_last_use + limit - g_get_monotonic_time();
  if (left <= 0) {
    loupe_gimp_engine_shutdown(); /* the memory goes back; the next call loads again */
    return 0;
  }
  return (guint)MIN(left / 1000 + 1, (gint64)G_MAXUINT);
}

static gboolean ensure_runtime(const LoupeGimpConfig *config, gchar **error) {
  gchar *key = g_strdup_printf("%s|%s|%s", config->device, config->precision, config->models_dir);
  loupe_runtime_options ro = LOUPE_RUNTIME_OPTIONS_INIT;
  if (g_runtime && strcmp(key, g_runtime_key) == 0) {
    g_free(key);
    return TRUE;
  }
  loupe_gimp_engine_shutdown(); /* the settings changed: start over with the new ones */
  ro.device = config->device;
  ro.precision = parse_precision(config->precision);
  ro.models_dir = config->models_dir;
  if (g_getenv("LOUPE_GIMP_VERBOSE")) ro.log_fn = log_to_stderr;
  if (loupe_runtime_create(&g_runtime, &ro) != LOUPE_OK) {
    gchar *first = g_strdup(loupe_last_error());
    /* A saved device that is gone (e.g. cuda:1) must not lock the person out. */
    ro.device = "auto";
    if (!config->device || strcmp(config->device, "auto") == 0 || loupe_runtime_create(&g_runtime, &ro) != LOUPE_OK) {
      *error = g_strdup_printf("Loupe could not start: %s", first);
      g_runtime = NULL;
      g_free(first);
      g_free(key);
      return FALSE;
    }
    g_free(first);
  }
  g_runtime_key = key;
  return TRUE;
}

typedef struct OpenTask {
  loupe_runtime *runtime;
  const gchar *path;
  loupe_session *session;
  gchar *error;
  gint done;
} OpenTask;

static gpointer open_thread(gpointer data) {
  OpenTask *t = data;
  if (loupe_session_open(&t->session, t->runtime, t->path, NULL) != LOUPE_OK) t->error = g_strdup(loupe_last_error());
  g_atomic_int_set(&t->done, 1);
  return NULL;
}

loupe_session *loupe_gimp_engine_open(const gchar *model, LoupeGimpUi *ui, gchar **error) {
  LoupeGimpConfig config;
  gchar *path = g_strdup(model);
  OpenTask task;
  int i, slot = 0;
  loupe_gimp_config_load(&config);
  if (!ensure_runtime(&config, error)) {
    loupe_gimp_config_clear(&config);
    g_free(path);
    return NULL;
  }
  loupe_gimp_config_clear(&config);
  loupe_gimp_engine_touch();
  for (i = 0; i < MAX_SESSIONS; ++i) {
    if (g_slots[i].path && strcmp(g_slots[i].path, path) == 0) {
      g_slots[i].used = g_get_monotonic_time();
      g_free(path);
      return g_slots[i].session; /* loaded before: no second load */
    }
    if (!g_slots[i].path) slot = i;
  }
  /* All slots taken: the one used least recently makes room. */
  if (g_slots[slot].path) {
    for (i = 1; i < MAX_SESSIONS; ++i)
      if (g_slots[i].used < g_slots[slot].used) slot = i;
    loupe_session_close(g_slots[slot].session);
    g_free(g_slots[slot].path);
    memset(&g_slots[slot], 0, sizeof g_slots[slot]);
  }
  memset(&task, 0, sizeof task);
  task.runtime = g_runtime;
  task.path = path;
  if (ui && ui->dialog) {
    /* Loading takes seconds for real models: keep the dialog alive meanwhile. */
    GThread *thread = g_thread_new("loupe-open", open_thread, &task);
    gtk_progress_bar_set_text(GTK_PROGRESS_BAR(ui->progress), "Loading the model…");
    while (!g_atomic_int_get(&task.done)) {
      gtk_progress_bar_pulse(GTK_PROGRESS_BAR(ui->progress));
      pump();
      g_usleep(50000);
    }
    g_thread_join(thread);
  } else {
    open_thread(&task);
  }
  if (!task.session) {
    *error = g_strdup_printf("Loupe could not open the model %s: %s", path, task.error ? task.error : "");
    g_free(task.error);
    g_free(path);
    return NULL;
  }
  ++g_loads;
  g_slots[slot].path = path;
  g_slots[slot].session = task.session;
  g_slots[slot].used = g_get_monotonic_time();
  return task.session;
}

typedef struct JobProgress {
  gint step, total;
  gint cancel;
} JobProgress;

static int on_progress(void *user, const loupe_progress *p) {
  JobProgress *jp = user;
  g_atomic_int_set(&jp->step, p->step);
  g_atomic_int_set(&jp->total, p->total);
  return !g_atomic_int_get(&jp->cancel);
}

static loupe_result *run_job(loupe_session *session, loupe_session *painter, const loupe_request *request,
                             LoupeGimpUi *ui, gchar **error);

loupe_result *loupe_gimp_engine_run(loupe_session *session, const loupe_request *request, LoupeGimpUi *ui,
                                    gchar **error) {
  return run_job(session, NULL, request, ui, error);
}

loupe_result *loupe_gimp_engine_run_edit(loupe_session *finder, loupe_session *painter, const loupe_request *request,
                                         LoupeGimpUi *ui, gchar **error) {
  return run_job(finder, painter, request, ui, error);
}

/* painter NULL: a job of `session`; else an edit job of finder `session` and `painter`. */
static loupe_result *run_job(loupe_session *session, loupe_session *painter, const loupe_request *request,
                             LoupeGimpUi *ui, gchar **error) {
  JobProgress jp = {0, 0, 0};
  loupe_job *job = NULL;
  loupe_result *result = NULL;
  loupe_status st;
  *error = NULL;
  loupe_gimp_engine_touch();
  if ((painter ? loupe_edit_submit(&job, g_runtime, session, painter, request, on_progress, &jp)
               : loupe_session_submit(&job, session, request, on_progress, &jp)) != LOUPE_OK) {
    *error = g_strdup_printf("Loupe could not start the job: %s", loupe_last_error());
    return NULL;
  }
  if (ui && ui->dialog) {
    gtk_progress_bar_set_text(GTK_PROGRESS_BAR(ui->progress), "Working…");
    while ((st = loupe_job_wait(job, 50)) == LOUPE_ERROR_TIMEOUT) {
      const gint step = g_atomic_int_get(&jp.step), total = g_atomic_int_get(&jp.total);
      if (total > 0) {
        gchar *text = g_strdup_printf("%d / %d", step, total);
        gtk_progress_bar_set_fraction(GTK_PROGRESS_BAR(ui->progress), CLAMP((double)step / total, 0.0, 1.0));
        gtk_progress_bar_set_text(GTK_PROGRESS_BAR(ui->progress), text);
        g_free(text);
      } else {
        gtk_progress_bar_pulse(GTK_PROGRESS_BAR(ui->progress));
      }
      pump();
      if (g_atomic_int_get(&ui->cancelled) && !g_atomic_int_get(&jp.cancel)) {
        g_atomic_int_set(&jp.cancel, 1); /* the progress callback stops it too, at its next step */
        if (loupe_job_cancel(job) != LOUPE_OK) {
          *error = g_strdup_printf("Loupe could not cancel the job: %s", loupe_last_error());
          break;
        }
      }
    }
  } else {
    st = loupe_job_wait(job, -1);
  }
  if (!*error && st != LOUPE_OK) *error = g_strdup_printf("Loupe could not wait for the job: %s", loupe_last_error());
  if (!*error) {
    st = loupe_job_take_result(&result, job);
    if (st == LOUPE_ERROR_CANCELLED) result = NULL; /* *error stays NULL: the person asked for it */
    else if (st != LOUPE_OK) *error = g_strdup_printf("Loupe: %s", loupe_last_error());
  }
  loupe_job_free(job); /* a job still running (cancel failed) is cancelled and waited for */
  loupe_gimp_engine_touch();
  if (*error || st != LOUPE_OK) {
    loupe_result_free(result);
    return NULL;
  }
  return result;
}

gint loupe_gimp_engine_loads(void) { return g_loads; }

gchar *loupe_gimp_engine_info(void) {
  GString *s = g_string_new(NULL);
  char *diag = NULL;
  int i, n = 0;
  g_string_append_printf(s, "{\"loads\": %d, \"idle_seconds\": %d, \"sessions\": [", g_loads,
                         (int)(idle_limit_us() / G_USEC_PER_SEC));
  for (i = 0; i < MAX_SESSIONS; ++i) {
    const char *c;
    if (!g_slots[i].path) continue;
    g_string_append(s, n++ ? ", \"" : "\"");
    for (c = g_slots[i].path; *c; ++c) { /* JSON string: UTF-8 kept, quotes and controls escaped */
      if (*c == '"' || *c == '\\') g_string_append_printf(s, "\\%c", *c);
      else if ((unsigned char)*c < 0x20) g_string_append_printf(s, "\\u%04x", (unsigned)*c);
      else g_string_append_c(s, *c);
    }
    g_string_append_c(s, '"');
  }
  g_string_append(s, "], \"diagnostics\": ");
  if (g_runtime && loupe_runtime_diagnostics(g_runtime, &diag) == LOUPE_OK && diag) g_string_append(s, diag);
  else g_string_append(s, "null");
  loupe_string_free(diag);
  g_string_append(s, "}");
  return g_string_free(s, FALSE);
}
