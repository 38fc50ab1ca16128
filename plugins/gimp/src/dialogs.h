/* The procedures' dialogs, built from the task's description.
 *
 * A dialog has: a line of explanation, the model choice, the procedure's own fields (e.g. which
 * caption, a text layer), the task's text input, one widget per parameter of the task as the open
 * session describes it (int/float: a spin button with the range, step and unit; string: an entry;
 * bool: a check button; choice: a combo box; the help as tooltip; advanced parameters in an
 * "Advanced" expander), and a progress bar whose dialog's Cancel stops the job.
 *
 * Tests: LOUPE_GIMP_AUTO_OK=<ms> answers after that time: OK, or what the global parasite
 * "loupe-gimp-auto-response" says ("key=value ... ok" or "... cancel": the model choice by index,
 * the procedure's fields and parameter rows set first, as the person would, rebuilding the dialog
 * where that does); LOUPE_GIMP_DIALOG_DUMP=<folder> writes what
 * each dialog shows, read back from its widgets: <proc>.<task>.rows.txt, one line per parameter row
 * "name|type|widget|label|tooltip|unit|value|min|max|step|advanced|choices", and <proc>.fields.txt
 * (the model choice, the text input, the procedure's fields). */
#ifndef LOUPE_GIMP_DIALOGS_H
#define LOUPE_GIMP_DIALOGS_H

#include <gtk/gtk.h>

#include "engine.h"
#include "values.h"

typedef enum LoupeGimpFieldKind {
  LOUPE_GIMP_FIELD_BOOL, /* a check button: 0 / 1 */
  LOUPE_GIMP_FIELD_TASK  /* a combo box of tasks (labelled as the session describes them): the index */
} LoupeGimpFieldKind;

/* A setting of the procedure itself (not a parameter of the task), kept in LOUPE_GIMP_PLUGIN. */
typedef struct LoupeGimpField {
  const gchar *key;
  LoupeGimpFieldKind kind;
  const gchar *label; /* with a mnemonic */
  const gchar *help;
  gint def;
  const gchar *const *tasks; /* FIELD_TASK: the task names, NULL-terminated */
  gboolean changes_task;     /* a change rebuilds the parameters for the task it selects */
} LoupeGimpField;

/* What a dialog's run ended with. */
typedef enum LoupeGimpAnswer {
  LOUPE_GIMP_ANSWER_OK,
  LOUPE_GIMP_ANSWER_CANCEL,
  LOUPE_GIMP_ANSWER_REBUILD /* another model or another task was chosen: reload, rebuild, ask again */
} LoupeGimpAnswer;

typedef struct LoupeGimpDialog LoupeGimpDialog;

/* with_ok FALSE: a progress window only (repeat with last values). */
LoupeGimpDialog *loupe_gimp_dialog_new(const gchar *proc, const gchar *title, const gchar *text, gboolean with_ok);
void loupe_gimp_dialog_free(LoupeGimpDialog *d);
/* The progress bar and Cancel, for the engine. */
LoupeGimpUi *loupe_gimp_dialog_ui(LoupeGimpDialog *d);
gboolean loupe_gimp_dialog_cancelled(LoupeGimpDialog *d);

/* The model choice (a list of LoupeGimpModel, taken), with `active` chosen; note: a line under it
 * (e.g. the scan failed), or NULL. */
void loupe_gimp_dialog_set_models(LoupeGimpDialog *d, GPtrArray *models, const gchar *active, const gchar *note);
/* The chosen model's path (NULL without a model choice). */
const gchar *loupe_gimp_dialog_model(LoupeGimpDialog *d);

/* While a model loads: the choices are greyed out and OK is off. */
void loupe_gimp_dialog_set_loading(LoupeGimpDialog *d, gboolean loading);
/* No form (the model could not be opened): the message, and OK off; another model may be chosen. */
void loupe_gimp_dialog_show_error(LoupeGimpDialog *d, const gchar *message);

/* (Re)builds the form: the procedure's fields, the task's text input (text_label / text_help
 * override the description's, may be NULL) and its parameters, showing `values` where set and the
 * session's defaults elsewhere. */
void loupe_gimp_dialog_build(LoupeGimpDialog *d, loupe_session *session, const LoupeGimpField *fields, gint n_fields,
                             const LoupeGimpTask *task, const LoupeGimpValues *values, const gchar *text_label,
                             const gchar *text_help);
/* Shows the dialog and waits for an answer. */
LoupeGimpAnswer loupe_gimp_dialog_run(LoupeGimpDialog *d);
/* Writes the form into values: the fields, the text, and the parameters (all of them, or with
 * changed_only those the person changed in this dialog, so that a rebuild for another model keeps
 * them and takes that model's defaults for the rest). */
void loupe_gimp_dialog_read(LoupeGimpDialog *d, LoupeGimpValues *values, gboolean changed_only);
/* From here on the dialog shows the job: the form greyed out, Cancel stops the job. */
void loupe_gimp_dialog_start_job(LoupeGimpDialog *d);

#endif
