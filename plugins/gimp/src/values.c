#include "values.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <libgimp/gimp.h>

/* ------------------------------------------------------------------ task descriptions */

gboolean loupe_gimp_task_load(loupe_session *session, const gchar *name, LoupeGimpTask *out, gchar **error) {
  loupe_task_info info = LOUPE_TASK_INFO_INIT;
  size_t index = 0, i;
  memset(out, 0, sizeof *out);
  if (loupe_task_find(session, name, &index) != LOUPE_OK) {
    *error = g_strdup_printf("This model cannot do what was asked: %s", loupe_last_error());
    return FALSE;
  }
  if (loupe_task_describe(session, index, &info) != LOUPE_OK) {
    *error = g_strdup_printf("Loupe could not describe the task '%s': %s", name, loupe_last_error());
    return FALSE;
  }
  out->index = index;
  out->info = info;
  out->params = g_new0(loupe_param_info, MAX(info.param_count, 1));
  for (i = 0; i < info.param_count; ++i) {
    loupe_param_info p = LOUPE_PARAM_INFO_INIT;
    if (loupe_task_param(session, index, i, &p) != LOUPE_OK) {
      *error = g_strdup_printf("Loupe could not describe parameter %u of the task '%s': %s", (unsigned)i, name,
                               loupe_last_error());
      loupe_gimp_task_clear(out);
      return FALSE;
    }
    out->params[i] = p;
  }
  return TRUE;
}

void loupe_gimp_task_clear(LoupeGimpTask *task) {
  g_free(task->params);
  memset(task, 0, sizeof *task);
}

const loupe_param_info *loupe_gimp_task_param(const LoupeGimpTask *task, const gchar *name) {
  size_t i;
  for (i = 0; i < task->info.param_count; ++i)
    if (task->params[i].name && strcmp(task->params[i].name, name) == 0) return &task->params[i];
  return NULL;
}

gboolean loupe_gimp_task_needs_text(const LoupeGimpTask *task) {
  return task->info.text_key && *task->info.text_key &&
         (task->info.required & (LOUPE_INPUT_TEXT | LOUPE_INPUT_QUESTION)) != 0;
}

const gchar *loupe_gimp_param_type_name(loupe_param_type type) {
  switch (type) {
    case LOUPE_PARAM_INT:
      return "int";
    case LOUPE_PARAM_FLOAT:
      return "float";
    case LOUPE_PARAM_STRING:
      return "string";
    case LOUPE_PARAM_BOOL:
      return "bool";
    case LOUPE_PARAM_CHOICE:
      return "choice";
  }
  return "unknown";
}

gchar *loupe_gimp_format_number(double value) {
  gchar buf[G_ASCII_DTOSTR_BUF_SIZE];
  if (value == 0) value = 0; /* no "-0" */
  return g_strdup(g_ascii_formatd(buf, sizeof buf, "%.9g", value));
}

/* ------------------------------------------------------------------ values */

struct LoupeGimpValues {
  GHashTable *task; /* key -> value (both owned) */
  GHashTable *plugin;
};

static GHashTable *group_table(const LoupeGimpValues *v, const gchar *group) {
  return strcmp(group, LOUPE_GIMP_PLUGIN) == 0 ? v->plugin : v->task;
}

LoupeGimpValues *loupe_gimp_values_new(void) {
  LoupeGimpValues *v = g_new0(LoupeGimpValues, 1);
  v->task = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  v->plugin = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  return v;
}

void loupe_gimp_values_free(LoupeGimpValues *values) {
  if (!values) return;
  g_hash_table_destroy(values->task);
  g_hash_table_destroy(values->plugin);
  g_free(values);
}

static const gchar *const kGroups[] = {LOUPE_GIMP_TASK, LOUPE_GIMP_PLUGIN};

LoupeGimpValues *loupe_gimp_values_load(const gchar *proc) {
  LoupeGimpValues *v = loupe_gimp_values_new();
  const gint size = gimp_get_data_size(proc);
  GKeyFile *kf;
  gchar *text;
  guint g;
  if (size <= 0) return v;
  text = g_malloc0((gsize)size + 1);
  if (!gimp_get_data(proc, text)) {
    g_free(text);
    return v;
  }
  kf = g_key_file_new();
  /* Values stored by an older plug-in (a fixed struct, not text) do not parse: they are ignored. */
  if (g_utf8_validate(text, -1, NULL) &&
      g_key_file_load_from_data(kf, text, (gsize)strlen(text), G_KEY_FILE_NONE, NULL)) {
    for (g = 0; g < G_N_ELEMENTS(kGroups); ++g) {
      gchar **keys = g_key_file_get_keys(kf, kGroups[g], NULL, NULL);
      gchar **k;
      for (k = keys; k && *k; ++k) {
        gchar *value = g_key_file_get_string(kf, kGroups[g], *k, NULL);
        if (value) g_hash_table_replace(group_table(v, kGroups[g]), g_strdup(*k), value);
      }
      g_strfreev(keys);
    }
  }
  g_key_file_free(kf);
  g_free(text);
  return v;
}

static gint compare_keys(gconstpointer a, gconstpointer b) {
  return strcmp(*(const gchar *const *)a, *(const gchar *const *)b);
}

gchar *loupe_gimp_values_to_text(const LoupeGimpValues *values) {
  GKeyFile *kf = g_key_file_new();
  gchar *text;
  guint g, i;
  for (g = 0; g < G_N_ELEMENTS(kGroups); ++g) {
    GHashTable *t = group_table(values, kGroups[g]);
    guint n = 0;
    gchar **keys = (gchar **)g_hash_table_get_keys_as_array(t, &n);
    qsort(keys, n, sizeof *keys, compare_keys); /* the same values give the same text */
    for (i = 0; i < n; ++i) g_key_file_set_string(kf, kGroups[g], keys[i], g_hash_table_lookup(t, keys[i]));
    g_free(keys);
  }
  text = g_key_file_to_data(kf, NULL, NULL);
  g_key_file_free(kf);
  return text;
}

void loupe_gimp_values_save(const LoupeGimpValues *values, const gchar *proc) {
  gchar *text = loupe_gimp_values_to_text(values);
  gimp_set_data(proc, text, (guint32)strlen(text) + 1);
  g_free(text);
}

const gchar *loupe_gimp_values_get(const LoupeGimpValues *values, const gchar *group, const gchar *key) {
  return g_hash_table_lookup(group_table(values, group), key);
}

void loupe_gimp_values_set(LoupeGimpValues *values, const gchar *group, const gchar *key, const gchar *value) {
  g_hash_table_replace(group_table(values, group), g_strdup(key), g_strdup(value ? value : ""));
}

void loupe_gimp_values_set_int(LoupeGimpValues *values, const gchar *group, const gchar *key, gint64 value) {
  g_hash_table_replace(group_table(values, group), g_strdup(key), g_strdup_printf("%" G_GINT64_FORMAT, value));
}

void loupe_gimp_values_set_double(LoupeGimpValues *values, const gchar *group, const gchar *key, gdouble value) {
  gchar buf[G_ASCII_DTOSTR_BUF_SIZE];
  g_hash_table_replace(group_table(values, group), g_strdup(key), g_strdup(g_ascii_dtostr(buf, sizeof buf, value)));
}

void loupe_gimp_values_unset(LoupeGimpValues *values, const gchar *group, const gchar *key) {
  g_hash_table_remove(group_table(values, group), key);
}

gint64 loupe_gimp_values_int(const LoupeGimpValues *values, const gchar *group, const gchar *key, gint64 def) {
  const gchar *v = loupe_gimp_values_get(values, group, key);
  gchar *end = NULL;
  gint64 n;
  if (!v || !*v) return def;
  n = g_ascii_strtoll(v, &end, 10);
  return end && *end == '\0' ? n : def;
}

void loupe_gimp_values_merge(LoupeGimpValues *into, const LoupeGimpValues *from) {
  guint g;
  for (g = 0; g < G_N_ELEMENTS(kGroups); ++g) {
    GHashTableIter it;
    gpointer k, v;
    g_hash_table_iter_init(&it, group_table(from, kGroups[g]));
    while (g_hash_table_iter_next(&it, &k, &v)) loupe_gimp_values_set(into, kGroups[g], k, v);
  }
}

gboolean loupe_gimp_value_parse(const loupe_param_info *param, const gchar *value, gint64 *as_int, gdouble *as_double) {
  gchar *end = NULL;
  gdouble d;
  if (!value) return FALSE;
  switch (param->type) {
    case LOUPE_PARAM_STRING:
    case LOUPE_PARAM_CHOICE:
      return TRUE;
    case LOUPE_PARAM_FLOAT:
      d = g_ascii_strtod(value, &end);
      if (!*value || !end || *end != '\0' || !isfinite(d)) return FALSE;
      if (as_double) *as_double = d;
      return TRUE;
    case LOUPE_PARAM_INT:
    case LOUPE_PARAM_BOOL: {
      const gint64 n = g_ascii_strtoll(value, &end, 10);
      if (!*value || !end || *end != '\0') return FALSE;
      if (param->type == LOUPE_PARAM_BOOL && n != 0 && n != 1) return FALSE;
      if (as_int) *as_int = n;
      if (as_double) *as_double = (gdouble)n;
      return TRUE;
    }
  }
  return FALSE;
}

gboolean loupe_gimp_value_fits(const loupe_param_info *param, const gchar *value) {
  gdouble d = 0;
  size_t i;
  if (!loupe_gimp_value_parse(param, value, NULL, &d)) return FALSE;
  switch (param->type) {
    case LOUPE_PARAM_INT:
    case LOUPE_PARAM_FLOAT:
      return d >= param->min && d <= param->max;
    case LOUPE_PARAM_CHOICE:
      for (i = 0; i < param->choice_count; ++i)
        if (param->choices[i] && strcmp(param->choices[i], value) == 0) return TRUE;
      return FALSE;
    default:
      return TRUE;
  }
}

gchar *loupe_gimp_param_default(const loupe_param_info *param) {
  switch (param->type) {
    case LOUPE_PARAM_INT:
    case LOUPE_PARAM_BOOL:
      return g_strdup_printf("%" G_GINT64_FORMAT, (gint64)llround(param->default_number));
    case LOUPE_PARAM_FLOAT:
      return loupe_gimp_format_number(param->default_number);
    default:
      return g_strdup(param->default_string ? param->default_string : "");
  }
}

void loupe_gimp_values_fit(LoupeGimpValues *values, const LoupeGimpTask *task) {
  size_t i;
  for (i = 0; i < task->info.param_count; ++i) {
    const loupe_param_info *p = &task->params[i];
    const gchar *v = loupe_gimp_values_get(values, LOUPE_GIMP_TASK, p->name);
    if (v && !loupe_gimp_value_fits(p, v)) loupe_gimp_values_unset(values, LOUPE_GIMP_TASK, p->name);
  }
}

void loupe_gimp_values_drop_defaults(LoupeGimpValues *values, const LoupeGimpTask *task) {
  size_t i;
  for (i = 0; i < task->info.param_count; ++i) {
    const loupe_param_info *p = &task->params[i];
    const gchar *v = loupe_gimp_values_get(values, LOUPE_GIMP_TASK, p->name);
    gboolean same = FALSE;
    if (!v) continue;
    if (p->type == LOUPE_PARAM_STRING || p->type == LOUPE_PARAM_CHOICE) {
      same = strcmp(v, p->default_string ? p->default_string : "") == 0;
    } else {
      gdouble d = 0;
      same = loupe_gimp_value_parse(p, v, NULL, &d) && d == p->default_number;
    }
    if (same) loupe_gimp_values_unset(values, LOUPE_GIMP_TASK, p->name);
  }
}

gboolean loupe_gimp_values_to_request(const LoupeGimpValues *values, const LoupeGimpTask *task, loupe_request *request,
                                      gchar **error) {
  const gchar *key = task->info.text_key;
  size_t i;
  if (key && *key) {
    const gchar *text = loupe_gimp_values_get(values, LOUPE_GIMP_TASK, key);
    if (text && loupe_request_set_string(request, key, text) != LOUPE_OK) {
      *error = g_strdup_printf("Loupe did not take the %s: %s", task->info.text_label, loupe_last_error());
      return FALSE;
    }
  }
  for (i = 0; i < task->info.param_count; ++i) {
    const loupe_param_info *p = &task->params[i];
    const gchar *v = loupe_gimp_values_get(values, LOUPE_GIMP_TASK, p->name);
    gint64 n = 0;
    gdouble d = 0;
    loupe_status st = LOUPE_OK;
    if (!v) continue; /* the session's default */
    if (!loupe_gimp_value_parse(p, v, &n, &d)) {
      *error = g_strdup_printf("%s (%s) must be %s, not \"%s\".", p->label, p->name,
                               p->type == LOUPE_PARAM_BOOL  ? "0 or 1"
                               : p->type == LOUPE_PARAM_INT ? "a whole number"
                                                            : "a number",
                               v);
      return FALSE;
    }
    switch (p->type) {
      case LOUPE_PARAM_INT:
      case LOUPE_PARAM_BOOL:
        st = loupe_request_set_int(request, p->name, n);
        break;
      case LOUPE_PARAM_FLOAT:
        st = loupe_request_set_float(request, p->name, d);
        break;
      case LOUPE_PARAM_STRING:
      case LOUPE_PARAM_CHOICE:
        st = loupe_request_set_string(request, p->name, v);
        break;
    }
    if (st != LOUPE_OK) {
      *error = g_strdup_printf("Loupe did not take %s = %s: %s", p->name, v, loupe_last_error());
      return FALSE;
    }
  }
  return TRUE;
}
