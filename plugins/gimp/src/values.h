/* A task as the open session describes it, and the values a procedure keeps for it.
 *
 * Values are strings by key, in two groups: LOUPE_GIMP_TASK (the task's text input under its
 * text_key, and its parameters under their names, as loupe_task_param names them) and
 * LOUPE_GIMP_PLUGIN (what the procedure itself decides, e.g. which caption task, a text layer).
 * A key that is not set takes the session's default. They are stored per procedure with
 * gimp_set_data as key=value text (a GKeyFile), so a parameter added to the SDK's table is
 * remembered like any other, without a struct to change. */
#ifndef LOUPE_GIMP_VALUES_H
#define LOUPE_GIMP_VALUES_H

#include <glib.h>

#include "loupe/loupe.h"

/* ------------------------------------------------------------------ task descriptions */

typedef struct LoupeGimpTask {
  size_t index;             /* in the session's list */
  loupe_task_info info;     /* strings live as long as the session */
  loupe_param_info *params; /* info.param_count of them */
} LoupeGimpTask;

/* The task `name` as `session` offers it. FALSE with *error (naming the tasks offered) if it
 * does not, or if the SDK cannot describe it. */
gboolean loupe_gimp_task_load(loupe_session *session, const gchar *name, LoupeGimpTask *out, gchar **error);
void loupe_gimp_task_clear(LoupeGimpTask *task);
/* The task's parameter by name, or NULL. */
const loupe_param_info *loupe_gimp_task_param(const LoupeGimpTask *task, const gchar *name);
/* TRUE when the task cannot run without its text (LOUPE_INPUT_TEXT / QUESTION in required). */
gboolean loupe_gimp_task_needs_text(const LoupeGimpTask *task);
/* "int", "float", "string", "bool", "choice". */
const gchar *loupe_gimp_param_type_name(loupe_param_type type);
/* A number as the values and the dialog dump write it ("%.9g", C locale). g_free it. */
gchar *loupe_gimp_format_number(double value);

/* ------------------------------------------------------------------ values */

#define LOUPE_GIMP_TASK "task"
#define LOUPE_GIMP_PLUGIN "plug-in"

typedef struct LoupeGimpValues LoupeGimpValues;

LoupeGimpValues *loupe_gimp_values_new(void);
void loupe_gimp_values_free(LoupeGimpValues *values);
/* The values last stored for a procedure (none: empty). */
LoupeGimpValues *loupe_gimp_values_load(const gchar *proc);
/* Stores them for the procedure (gimp_set_data). */
void loupe_gimp_values_save(const LoupeGimpValues *values, const gchar *proc);
/* key=value lines by group ("[task]" / "[plug-in]"), as stored. g_free it. */
gchar *loupe_gimp_values_to_text(const LoupeGimpValues *values);

/* NULL when not set. */
const gchar *loupe_gimp_values_get(const LoupeGimpValues *values, const gchar *group, const gchar *key);
void loupe_gimp_values_set(LoupeGimpValues *values, const gchar *group, const gchar *key, const gchar *value);
void loupe_gimp_values_set_int(LoupeGimpValues *values, const gchar *group, const gchar *key, gint64 value);
void loupe_gimp_values_set_double(LoupeGimpValues *values, const gchar *group, const gchar *key, gdouble value);
void loupe_gimp_values_unset(LoupeGimpValues *values, const gchar *group, const gchar *key);
/* The value as a number; def when unset or not a number. */
gint64 loupe_gimp_values_int(const LoupeGimpValues *values, const gchar *group, const gchar *key, gint64 def);
/* Copies every value of `from` into `into` (replacing). */
void loupe_gimp_values_merge(LoupeGimpValues *into, const LoupeGimpValues *from);

/* Parses a value for a parameter of its type. FALSE if it is not one (not a number, not a whole
 * number for int and bool, not 0/1 for bool). Ranges and choices are the SDK's to check. */
gboolean loupe_gimp_value_parse(const loupe_param_info *param, const gchar *value, gint64 *as_int, gdouble *as_double);
/* TRUE when the value is valid for the parameter as described (type, range, choices). */
gboolean loupe_gimp_value_fits(const loupe_param_info *param, const gchar *value);
/* The parameter's default as a value string. g_free it. */
gchar *loupe_gimp_param_default(const loupe_param_info *param);

/* Stored values that no longer fit the description (a choice the model does not offer, a value
 * out of the model's range) are dropped, so the session's defaults apply. */
void loupe_gimp_values_fit(LoupeGimpValues *values, const LoupeGimpTask *task);
/* Values equal to the session's default are dropped before storing, so that the next run (maybe
 * with another model) takes that model's default: what is kept is what the person chose. */
void loupe_gimp_values_drop_defaults(LoupeGimpValues *values, const LoupeGimpTask *task);

/* Sets the task's text input and every parameter of the task that has a value, each by its type
 * (int/bool: loupe_request_set_int, float: _set_float, string/choice: _set_string); parameters
 * without a value take the session's defaults. Values of keys the task does not have are not
 * sent. FALSE with *error (loupe_last_error) when the SDK refuses one. */
gboolean loupe_gimp_values_to_request(const LoupeGimpValues *values, const LoupeGimpTask *task, loupe_request *request,
                                      gchar **error);

#endif
