/* Which model a procedure runs on, and the models a dialog offers to choose from. */
#ifndef LOUPE_GIMP_MODELS_H
#define LOUPE_GIMP_MODELS_H

#include <glib.h>

#include "config.h"

typedef struct LoupeGimpModel {
  gchar *path;  /* what the engine opens */
  gchar *label; /* for the model choice: its catalog name when it is a catalog model, and where it was found */
} LoupeGimpModel;

/* The model for a kind of procedure. with_choice (dialogs and "repeat with last values"): the
 * model last chosen in a dialog for this kind, if it is still there; else (and for scripts) the
 * rules of loupe_gimp_find_model (environment, the editor's last model, the models folder).
 * NULL with *error when there is none. */
gchar *loupe_gimp_model_for(LoupeGimpModelKind kind, gboolean with_choice, gchar **error);
/* Remembers the model chosen in a dialog (for the GIMP session). */
void loupe_gimp_model_remember(LoupeGimpModelKind kind, const gchar *path);

/* The models that can run `task`, for the dialog's model choice: what the plug-in finds by its own
 * rules (environment, the editor's last model, the models folder), every model loupe_models_scan
 * finds (the models folder, the Hugging Face cache, A1111/Forge and ComfyUI folders) that offers the
 * task, labelled with its catalog entry when it matches one, and `current` (the model in use) if
 * neither found it. One entry per folder or file. *note is set (g_free it) when the scan failed. */
GPtrArray *loupe_gimp_models_list(LoupeGimpModelKind kind, const gchar *task, const gchar *current, gchar **note);

#endif
