#define _XOPEN_SOURCE 700 /* realpath */
#include "models.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <json-glib/json-glib.h>
#include <libgimp/gimp.h>

#include "loupe/loupe.h"

static const gchar *kind_key(LoupeGimpModelKind kind) {
  switch (kind) {
    case LOUPE_GIMP_MODEL_FLORENCE:
      return "loupe-gimp-model-florence2";
    case LOUPE_GIMP_MODEL_SD:
      return "loupe-gimp-model-sd";
    case LOUPE_GIMP_MODEL_SD_INPAINT:
      return "loupe-gimp-model-sd-inpaint";
  }
  return "loupe-gimp-model";
}

static gchar *remembered(LoupeGimpModelKind kind) {
  const gint size = gimp_get_data_size(kind_key(kind));
  gchar *path;
  if (size <= 1) return NULL;
  path = g_malloc0((gsize)size + 1);
  if (!gimp_get_data(kind_key(kind), path) || !*path) {
    g_free(path);
    return NULL;
  }
  return path;
}

void loupe_gimp_model_remember(LoupeGimpModelKind kind, const gchar *path) {
  if (path && *path) gimp_set_data(kind_key(kind), path, (guint32)strlen(path) + 1);
}

gchar *loupe_gimp_model_for(LoupeGimpModelKind kind, gboolean with_choice, gchar **error) {
  LoupeGimpConfig config;
  gchar *path = with_choice ? remembered(kind) : NULL;
  if (path && g_file_test(path, G_FILE_TEST_EXISTS)) return path;
  g_free(path);
  loupe_gimp_config_load(&config);
  path = loupe_gimp_find_model(&config, kind, error);
  loupe_gimp_config_clear(&config);
  return path;
}

/* ------------------------------------------------------------------ the list */

static void model_free(gpointer data) {
  LoupeGimpModel *m = data;
  g_free(m->path);
  g_free(m->label);
  g_free(m);
}

/* One entry per model, whatever the spelling of its path (links, "..", a trailing slash). */
static gchar *same_key(const gchar *path) {
  char buf[PATH_MAX];
  return realpath(path, buf) ? g_strdup(buf) : g_canonicalize_filename(path, NULL);
}

static LoupeGimpModel *find_entry(GPtrArray *list, const gchar *path) {
  gchar *key = same_key(path);
  LoupeGimpModel *found = NULL;
  guint i;
  for (i = 0; i < list->len && !found; ++i) {
    gchar *k = same_key(((LoupeGimpModel *)g_ptr_array_index(list, i))->path);
    if (strcmp(k, key) == 0) found = g_ptr_array_index(list, i);
    g_free(k);
  }
  g_free(key);
  return found;
}

static void add_entry(GPtrArray *list, const gchar *path, gchar *label /* taken */) {
  LoupeGimpModel *m;
  if (!path || !*path || find_entry(list, path)) {
    g_free(label);
    return;
  }
  m = g_new0(LoupeGimpModel, 1);
  m->path = g_strdup(path);
  m->label = label;
  g_ptr_array_add(list, m);
}

static gchar *base_name(const gchar *path) {
  gchar *copy = g_strdup(path), *name;
  gsize n = strlen(copy);
  while (n > 1 && copy[n - 1] == G_DIR_SEPARATOR) copy[--n] = '\0';
  name = g_path_get_basename(copy);
  g_free(copy);
  return name;
}

/* Where the plug-in's own rules found a model, in words. */
static gchar *origin_label(const LoupeGimpConfig *config, LoupeGimpModelKind kind, const gchar *path) {
  const gchar *env = kind == LOUPE_GIMP_MODEL_FLORENCE ? "LOUPE_FLORENCE_MODEL" : "LOUPE_SD_MODEL";
  const gchar *inpaint_env = g_getenv("LOUPE_SD_INPAINT_MODEL");
  const gchar *env_value = g_getenv(env);
  gchar *name = base_name(path), *label;
  if (kind == LOUPE_GIMP_MODEL_SD_INPAINT && inpaint_env && strcmp(inpaint_env, path) == 0)
    label = g_strdup_printf("%s (LOUPE_SD_INPAINT_MODEL)", name);
  else if (env_value && strcmp(env_value, path) == 0) label = g_strdup_printf("%s (%s)", name, env);
  else if (config->last_model && strcmp(config->last_model, path) == 0)
    label = g_strdup_printf("%s (last used in the Loupe editor)", name);
  else label = g_strdup_printf("%s (models folder)", name);
  g_free(name);
  return label;
}

static const gchar *source_label(const gchar *source) {
  if (strcmp(source, "hf-cache") == 0) return "Hugging Face cache";
  if (strcmp(source, "a1111") == 0) return "AUTOMATIC1111 / Forge";
  if (strcmp(source, "comfyui") == 0) return "ComfyUI";
  return "models folder";
}

static const gchar *member_string(JsonObject *o, const gchar *name) {
  JsonNode *n = json_object_get_member(o, name);
  return n && JSON_NODE_HOLDS_VALUE(n) && json_node_get_value_type(n) == G_TYPE_STRING ? json_node_get_string(n) : "";
}

static gboolean offers(JsonObject *model, const gchar *task) {
  JsonNode *n = json_object_get_member(model, "tasks");
  JsonArray *a;
  guint i;
  if (!n || !JSON_NODE_HOLDS_ARRAY(n)) return FALSE;
  a = json_node_get_array(n);
  for (i = 0; i < json_array_get_length(a); ++i) {
    JsonNode *t = json_array_get_element(a, i);
    if (JSON_NODE_HOLDS_VALUE(t) && json_node_get_value_type(t) == G_TYPE_STRING &&
        strcmp(json_node_get_string(t), task) == 0)
      return TRUE;
  }
  return FALSE;
}

/* The scan's models that offer the task, added to the list (or, for a model already listed, its
 * label gets the catalog name). FALSE with *note when the scan failed. */
static gboolean add_scanned(GPtrArray *list, const LoupeGimpConfig *config, const gchar *task, gchar **note) {
  loupe_scan_options so = LOUPE_SCAN_OPTIONS_INIT;
  const char *dirs[1];
  char *json = NULL;
  JsonParser *parser;
  GError *err = NULL;
  JsonObject *root;
  JsonNode *node;
  GHashTable *catalog;
  guint i;
  dirs[0] = config->models_dir;
  so.dirs = dirs;
  so.dir_count = 1;
  if (loupe_models_scan(NULL, &so, &json) != LOUPE_OK) {
    *note = g_strdup_printf("Looking for models failed: %s", loupe_last_error());
    return FALSE;
  }
  parser = json_parser_new();
  if (!json_parser_load_from_data(parser, json, -1, &err) || !JSON_NODE_HOLDS_OBJECT(json_parser_get_root(parser))) {
    *note = g_strdup_printf("Looking for models failed: the SDK's list does not read as JSON (%s)",
                            err ? err->message : "not an object");
    g_clear_error(&err);
    g_object_unref(parser);
    loupe_string_free(json);
    return FALSE;
  }
  root = json_node_get_object(json_parser_get_root(parser));
  /* Catalog entries by id, for their names. */
  catalog = g_hash_table_new(g_str_hash, g_str_equal);
  node = json_object_get_member(root, "catalog");
  if (node && JSON_NODE_HOLDS_ARRAY(node)) {
    JsonArray *a = json_node_get_array(node);
    for (i = 0; i < json_array_get_length(a); ++i) {
      JsonNode *e = json_array_get_element(a, i);
      if (JSON_NODE_HOLDS_OBJECT(e))
        g_hash_table_insert(catalog, (gpointer)member_string(json_node_get_object(e), "id"),
                            (gpointer)member_string(json_node_get_object(e), "name"));
    }
  }
  node = json_object_get_member(root, "models");
  if (node && JSON_NODE_HOLDS_ARRAY(node)) {
    JsonArray *a = json_node_get_array(node);
    for (i = 0; i < json_array_get_length(a); ++i) {
      JsonNode *e = json_array_get_element(a, i);
      JsonObject *m;
      JsonNode *supported;
      const gchar *path, *name, *catalog_name;
      LoupeGimpModel *existing;
      gchar *label;
      if (!JSON_NODE_HOLDS_OBJECT(e)) continue;
      m = json_node_get_object(e);
      supported = json_object_get_member(m, "supported");
      if (strcmp(member_string(m, "kind"), "model") != 0 || !supported || !JSON_NODE_HOLDS_VALUE(supported) ||
          !json_node_get_boolean(supported) || !offers(m, task))
        continue;
      path = member_string(m, "path");
      name = member_string(m, "name");
      catalog_name = g_hash_table_lookup(catalog, member_string(m, "catalog_id"));
      if (!*path) continue;
      if (!*name) name = path;
      if (catalog_name && *catalog_name)
        label = g_strdup_printf("%s (%s, %s)", catalog_name, name, source_label(member_string(m, "source")));
      else label = g_strdup_printf("%s (%s)", name, source_label(member_string(m, "source")));
      existing = find_entry(list, path);
      if (existing && catalog_name && *catalog_name) { /* listed by the plug-in's rules: now with its catalog name */
        g_free(existing->label);
        existing->label = label;
      } else {
        add_entry(list, path, label);
      }
    }
  }
  g_hash_table_destroy(catalog);
  g_object_unref(parser);
  loupe_string_free(json);
  return TRUE;
}

GPtrArray *loupe_gimp_models_list(LoupeGimpModelKind kind, const gchar *task, const gchar *current, gchar **note) {
  GPtrArray *list = g_ptr_array_new_with_free_func(model_free);
  LoupeGimpConfig config;
  gchar *found;
  loupe_gimp_config_load(&config);
  found = loupe_gimp_find_model(&config, kind, NULL);
  if (found) add_entry(list, found, origin_label(&config, kind, found));
  add_scanned(list, &config, task, note);
  if (current) { /* chosen in a dialog earlier, and found by neither */
    gchar *name = base_name(current);
    add_entry(list, current, g_strdup_printf("%s (chosen before)", name));
    g_free(name);
  }
  g_free(found);
  loupe_gimp_config_clear(&config);
  return list;
}
