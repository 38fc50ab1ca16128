#include "config.h"

#include <string.h>

#include "loupe/loupe.h"

gchar *loupe_gimp_settings_path(void) {
  return g_build_filename(g_get_user_config_dir(), "Loupe", "Loupe Editor.conf", NULL);
}

/* QSettings writes a string value either bare or in double quotes, with backslash escapes, and
 * doubles a leading '@' (a leading '@' otherwise marks a typed value such as @Variant(...)). */
static gchar *ini_unescape(const gchar *v) {
  GString *out = g_string_new(NULL);
  gboolean quoted = FALSE, had_quotes = FALSE;
  const gchar *p = v;
  if (g_str_has_prefix(p, "@@")) p++;
  else if (*p == '@') return g_string_free(out, FALSE); /* a typed value: not a string */
  for (; *p; ++p) {
    if (*p == '"') {
      quoted = !quoted;
      had_quotes = TRUE;
      continue;
    }
    if (!quoted && (*p == ';' || *p == ',')) break; /* a comment or a list separator */
    if (*p != '\\' || p[1] == '\0') {
      g_string_append_c(out, *p);
      continue;
    }
    ++p;
    switch (*p) {
      case 'n': g_string_append_c(out, '\n'); break;
      case 't': g_string_append_c(out, '\t'); break;
      case 'r': g_string_append_c(out, '\r'); break;
      case '0': g_string_append_c(out, '\0'); break;
      case 'x': { /* \xHHHH: a UTF-16 code unit */
        gunichar c = 0;
        int n = 0;
        while (n < 4 && g_ascii_isxdigit(p[1])) {
          c = c * 16 + (gunichar)g_ascii_xdigit_value(p[1]);
          ++p;
          ++n;
        }
        g_string_append_unichar(out, c);
        break;
      }
      default: g_string_append_c(out, *p); break; /* \\ \" \; ... */
    }
  }
  /* Bare values lose surrounding blanks. */
  if (!had_quotes) g_strstrip(out->str);
  out->len = strlen(out->str);
  return g_string_free(out, FALSE);
}

gchar *loupe_gimp_ini_read(const gchar *path, const gchar *group, const gchar *key) {
  gchar *text = NULL;
  gchar *result = NULL;
  gchar **lines;
  gboolean in_group = FALSE;
  int i;
  if (!g_file_get_contents(path, &text, NULL, NULL)) return NULL;
  lines = g_strsplit_set(text, "\r\n", -1);
  for (i = 0; lines[i] && !result; ++i) {
    gchar *line = g_strstrip(lines[i]);
    gchar *eq;
    if (*line == '\0' || *line == ';' || *line == '#') continue;
    if (*line == '[') {
      gchar *end = strrchr(line, ']');
      if (end) *end = '\0';
      in_group = g_ascii_strcasecmp(line + 1, group) == 0;
      continue;
    }
    eq = strchr(line, '=');
    if (!eq) continue;
    *eq = '\0';
    g_strstrip(line);
    /* Keys in the General group may also be written as group/key ("loupe/modelsDir"). */
    if ((in_group && strcmp(line, key) == 0) ||
        (g_str_has_prefix(line, group) && line[strlen(group)] == '/' && strcmp(line + strlen(group) + 1, key) == 0))
      result = ini_unescape(g_strstrip(eq + 1));
  }
  g_strfreev(lines);
  g_free(text);
  if (result && *result == '\0') {
    g_free(result);
    result = NULL;
  }
  return result;
}

static gchar *env_or_null(const gchar *name) {
  const gchar *v = g_getenv(name);
  return v && *v ? g_strdup(v) : NULL;
}

void loupe_gimp_config_load(LoupeGimpConfig *config) {
  gchar *ini = loupe_gimp_settings_path();
  memset(config, 0, sizeof *config);
  /* The environment wins over settings (as in the editor), so that batch runs are reproducible. */
  config->models_dir = env_or_null("LOUPE_MODELS_DIR");
  if (!config->models_dir) config->models_dir = loupe_gimp_ini_read(ini, "loupe", "modelsDir");
  if (!config->models_dir) config->models_dir = g_build_filename(g_get_home_dir(), ".local", "share", "loupe", "models", NULL);
  config->device = loupe_gimp_ini_read(ini, "loupe", "device");
  if (!config->device) config->device = g_strdup("auto");
  config->precision = loupe_gimp_ini_read(ini, "loupe", "precision");
  if (!config->precision) config->precision = g_strdup("auto");
  config->last_model = loupe_gimp_ini_read(ini, "loupe", "lastModel");
  g_free(ini);
}

void loupe_gimp_config_clear(LoupeGimpConfig *config) {
  g_free(config->models_dir);
  g_free(config->device);
  g_free(config->precision);
  g_free(config->last_model);
  memset(config, 0, sizeof *config);
}

/* The string value of "key" at the top level of a flat JSON object written by the SDK; NULL if
 * absent. Enough for loupe_model_inspect's "family" and "variant". */
static gchar *json_string(const char *json, const char *key) {
  gchar *needle = g_strdup_printf("\"%s\"", key);
  const char *p = strstr(json, needle);
  GString *out;
  g_free(needle);
  if (!p) return NULL;
  p += strlen(key) + 2;
  while (*p == ' ' || *p == ':') ++p;
  if (*p != '"') return NULL;
  out = g_string_new(NULL);
  for (++p; *p && *p != '"'; ++p) {
    if (*p == '\\' && p[1]) ++p;
    g_string_append_c(out, *p);
  }
  return g_string_free(out, FALSE);
}

/* 1 when the folder holds a model of the family the kind needs (2 when it is also the preferred
 * variant, e.g. an inpainting one for inpainting), else 0. */
static int model_fits(const gchar *models_dir, const gchar *path, LoupeGimpModelKind kind) {
  char *json = NULL;
  gchar *family, *variant;
  gchar *resolved = g_path_is_absolute(path) ? g_strdup(path) : g_build_filename(models_dir, path, NULL);
  int fit = 0;
  if (loupe_model_inspect(NULL, resolved, &json) == LOUPE_OK && json) {
    family = json_string(json, "family");
    variant = json_string(json, "variant");
    if (family && kind == LOUPE_GIMP_MODEL_FLORENCE && strcmp(family, "florence2") == 0) fit = 1;
    if (family && kind != LOUPE_GIMP_MODEL_FLORENCE && strcmp(family, "stable-diffusion") == 0) {
      const gboolean inpainting = variant && strstr(variant, "inpaint") != NULL;
      fit = (kind == LOUPE_GIMP_MODEL_SD_INPAINT) == inpainting ? 2 : 1;
    }
    g_free(family);
    g_free(variant);
  }
  loupe_string_free(json);
  g_free(resolved);
  return fit;
}

static gint compare_strings(gconstpointer a, gconstpointer b) {
  return strcmp(*(const gchar *const *)a, *(const gchar *const *)b);
}

gchar *loupe_gimp_find_model(const LoupeGimpConfig *config, LoupeGimpModelKind kind, gchar **error) {
  const gchar *env = kind == LOUPE_GIMP_MODEL_FLORENCE ? "LOUPE_FLORENCE_MODEL" : "LOUPE_SD_MODEL";
  gchar *path = NULL;
  GDir *dir;
  GPtrArray *names;
  guint i;
  int best = 0;
  if (kind == LOUPE_GIMP_MODEL_SD_INPAINT) path = env_or_null("LOUPE_SD_INPAINT_MODEL");
  if (!path) path = env_or_null(env);
  if (path) return path; /* the person chose: the SDK will say if it does not fit */
  if (config->last_model && model_fits(config->models_dir, config->last_model, kind) == 2)
    return g_strdup(config->last_model);
  /* The first fitting folder of the models folder, in name order (a preferred variant wins). */
  dir = g_dir_open(config->models_dir, 0, NULL);
  names = g_ptr_array_new_with_free_func(g_free);
  if (dir) {
    const gchar *name;
    while ((name = g_dir_read_name(dir)) != NULL) g_ptr_array_add(names, g_strdup(name));
    g_dir_close(dir);
  }
  g_ptr_array_sort(names, compare_strings);
  if (config->last_model && model_fits(config->models_dir, config->last_model, kind) == 1) {
    path = g_strdup(config->last_model);
    best = 1;
  }
  for (i = 0; i < names->len && best < 2; ++i) {
    gchar *candidate = g_build_filename(config->models_dir, (const gchar *)g_ptr_array_index(names, i), NULL);
    const int fit = g_file_test(candidate, G_FILE_TEST_IS_DIR) ? model_fits(config->models_dir, candidate, kind) : 0;
    if (fit > best) {
      g_free(path);
      path = candidate;
      best = fit;
    } else {
      g_free(candidate);
    }
  }
  g_ptr_array_free(names, TRUE);
  if (!path && error)
    *error = g_strdup_printf(
        "No %s model found in %s. Download one with the Loupe editor (Models panel), or set %s to a model folder.",
        kind == LOUPE_GIMP_MODEL_FLORENCE ? "Florence-2" : "Stable Diffusion", config->models_dir, env);
  return path;
}
