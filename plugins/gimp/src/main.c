/* loupe-gimp: the Loupe plug-in for GIMP 2.10.
 *
 * Design: the binary registers one GIMP *extension* ("extension-loupe", no parameters), which GIMP
 * starts with itself and keeps running for the whole GIMP session. The extension installs the
 * procedures of Filters > Loupe as temporary procedures, so every call runs inside this one long-
 * lived process: the Loupe runtime and the sessions opened by the first call (the model weights)
 * stay loaded for the next ones. After LOUPE_GIMP_IDLE_SECONDS without a call (default 600) the
 * sessions and the runtime are closed to give the memory back; the next call loads again.
 *
 * Calls are served one at a time; a call arriving while a job runs (possible when a script runs
 * while a dialog is open) is answered at once with an error saying Loupe is busy.
 * No gimp_progress_*: GIMP's progress Cancel would kill this process and every loaded model with
 * it, so jobs show their progress and a Cancel button in the procedure's own dialog. */
#include <string.h>

#include <libgimp/gimp.h>

#include "engine.h"
#include "procs.h"

#define EXTENSION_NAME "extension-loupe"

static void query(void);
static void run(const gchar *name, gint nparams, const GimpParam *param, gint *nreturn_vals, GimpParam **return_vals);
static void quit(void);

const GimpPlugInInfo PLUG_IN_INFO = {NULL, quit, query, run};

MAIN()

static void query(void) {
  gimp_install_procedure(EXTENSION_NAME, "Loupe: vision-language and image-generation models",
                         "Keeps the Loupe models loaded for the GIMP session and serves the procedures of "
                         "Filters > Loupe (caption, detect, select by description, inpaint, generate).",
                         "Loupe", "Loupe", "2025", NULL, NULL, GIMP_EXTENSION, 0, 0, NULL, NULL);
}

static void quit(void) { loupe_gimp_engine_shutdown(); }

static gboolean g_busy;

static void run_temp(const gchar *name, gint nparams, const GimpParam *param, gint *nreturn_vals,
                     GimpParam **return_vals) {
  static GimpParam values[8];
  static gchar *message;
  const LoupeGimpProc *proc = NULL;
  GimpPDBStatusType status;
  gint n_out = 0, i;
  gchar *error = NULL;
  g_free(message);
  message = NULL;
  memset(values, 0, sizeof values);
  for (i = 0; loupe_gimp_procs[i].name; ++i)
    if (strcmp(loupe_gimp_procs[i].name, name) == 0) proc = &loupe_gimp_procs[i];
  if (!proc || nparams < 1) {
    status = GIMP_PDB_CALLING_ERROR;
    error = g_strdup_printf("%s: unknown procedure or no run mode", name);
  } else if (nparams != proc->n_params) {
    status = GIMP_PDB_CALLING_ERROR;
    error = g_strdup_printf("%s takes %d parameters, got %d", name, proc->n_params, nparams);
  } else if (g_busy) {
    status = GIMP_PDB_EXECUTION_ERROR;
    error = g_strdup("Loupe is busy with another job; try again when it has finished.");
  } else {
    g_busy = TRUE;
    status = proc->fn(nparams, param, values + 1, &n_out, &error);
    g_busy = FALSE;
  }
  values[0].type = GIMP_PDB_STATUS;
  values[0].data.d_status = status;
  *return_vals = values;
  if (status == GIMP_PDB_SUCCESS) {
    *nreturn_vals = 1 + n_out;
    g_free(error);
    return;
  }
  *nreturn_vals = 1;
  if (error) {
    /* The PDB error: GIMP shows it to the person (menu runs), scripts get it as the call's error. */
    message = error;
    values[1].type = GIMP_PDB_STRING;
    values[1].data.d_string = message;
    *nreturn_vals = 2;
  }
}

static void run(const gchar *name, gint nparams, const GimpParam *param, gint *nreturn_vals, GimpParam **return_vals) {
  static GimpParam values[1];
  int i;
  (void)nparams;
  (void)param;
  values[0].type = GIMP_PDB_STATUS;
  values[0].data.d_status = GIMP_PDB_SUCCESS;
  *nreturn_vals = 1;
  *return_vals = values;
  if (strcmp(name, EXTENSION_NAME) != 0) {
    values[0].data.d_status = GIMP_PDB_CALLING_ERROR;
    return;
  }
  gegl_init(NULL, NULL);
  for (i = 0; loupe_gimp_procs[i].name; ++i) {
    const LoupeGimpProc *p = &loupe_gimp_procs[i];
    gimp_install_temp_proc(p->name, p->blurb, p->help, "Loupe", "Loupe", "2025", p->menu_label, p->image_types,
                           GIMP_TEMPORARY, p->n_params, p->n_returns, p->params, p->returns, run_temp);
    if (p->menu_label) gimp_plugin_menu_register(p->name, "<Image>/Filters/Loupe");
  }
  gimp_extension_ack();
  /* Serve calls until GIMP quits (then libgimp calls quit() and exits). Between calls, close the
   * models once they have been idle long enough. */
  for (;;) {
    const guint next = loupe_gimp_engine_idle_check();
    gimp_extension_process(next);
  }
}
