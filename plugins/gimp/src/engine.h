/* The Loupe side of the plug-in: one runtime and its open sessions, kept for the whole GIMP session
 * by the extension process (see main.c), closed after an idle time. */
#ifndef LOUPE_GIMP_ENGINE_H
#define LOUPE_GIMP_ENGINE_H

#include <gtk/gtk.h>

#include "config.h"
#include "loupe/loupe.h"

/* What a job shows while it runs, in interactive mode. dialog NULL = no UI (batch). */
typedef struct LoupeGimpUi {
  GtkWidget *dialog;   /* the procedure's dialog: its Cancel button stops the job */
  GtkWidget *progress; /* a GtkProgressBar inside it */
  gint cancelled;      /* set (atomically) by the dialog's Cancel */
} LoupeGimpUi;

/* The open session for a model folder or file, opened on first use (the dialog, if any, shows
 * that it loads). NULL with *error set. */
loupe_session *loupe_gimp_engine_open(const gchar *path, LoupeGimpUi *ui, gchar **error);

/* Runs a request on a session and waits (pumping the dialog, if any). NULL with *error set on
 * failure; NULL with *error NULL when the person cancelled. */
loupe_result *loupe_gimp_engine_run(loupe_session *session, const loupe_request *request, LoupeGimpUi *ui,
                                    gchar **error);

/* The same for task "edit": a job over two sessions, a finder and a painter (loupe_edit_submit). */
loupe_result *loupe_gimp_engine_run_edit(loupe_session *finder, loupe_session *painter, const loupe_request *request,
                                         LoupeGimpUi *ui, gchar **error);

/* How many sessions were opened (weights loaded) since the extension started. */
gint loupe_gimp_engine_loads(void);
/* {"loads": N, "idle_seconds": S, "sessions": [...], "diagnostics": {...}} (g_free it). */
gchar *loupe_gimp_engine_info(void);

/* Marks the engine as used now. */
void loupe_gimp_engine_touch(void);
/* Closes every session and the runtime when unused for LOUPE_GIMP_IDLE_SECONDS (default 600;
 * 0 = never). Returns the milliseconds until the next check is due (0 = nothing open). */
guint loupe_gimp_engine_idle_check(void);
/* Closes everything (idle time out, or GIMP quits). */
void loupe_gimp_engine_shutdown(void);

#endif
