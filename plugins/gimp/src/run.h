/* The one way a Loupe procedure runs (run.c): check the layer, gather the values (PDB parameters,
 * last values, or the dialog built from the task's description), open the model, build the request
 * from the layer / selection and the values, submit it with progress and Cancel, wait, take the
 * result, and only then hand it to the procedure to change the image. Every loupe_* status is
 * checked; a failure comes back as *error (the PDB error, shown to the person in menu runs). */
#ifndef LOUPE_GIMP_RUN_H
#define LOUPE_GIMP_RUN_H

#include <libgimp/gimp.h>

#include "config.h"
#include "dialogs.h"
#include "pixels.h"
#include "values.h"

/* What the request's inputs come from. */
enum {
  LOUPE_GIMP_FROM_LAYER = 1u,     /* the layer's pixels are the image (else the drawable only says where results go) */
  LOUPE_GIMP_FROM_SELECTION = 2u, /* the selection over the layer is the mask; a selection is needed */
  LOUPE_GIMP_PAD_TO_8 = 4u        /* image and mask padded right and bottom to multiples of 8 (edge pixels, mask 0) */
};

typedef struct LoupeGimpCall LoupeGimpCall;

typedef struct LoupeGimpProcSpec {
  const gchar *name;        /* the PDB procedure */
  const gchar *title;       /* the dialog's title */
  const gchar *explanation; /* the dialog's first line */
  const gchar *busy;        /* the progress window's line (repeat with last values) */
  LoupeGimpModelKind model;
  guint inputs;                 /* LOUPE_GIMP_FROM_* */
  const LoupeGimpField *fields; /* the procedure's own settings, shown above the task's */
  gint n_fields;
  const gchar *text_label; /* the text input's label and tooltip instead of the description's (NULL: its own) */
  const gchar *text_help;
  const gchar *text_missing; /* the error when a text the task needs is empty (NULL: a generic sentence) */
  /* The task to run for these values (e.g. which caption). */
  const gchar *(*task)(const LoupeGimpValues *values);
  /* Non-interactive: the PDB parameters into values (LOUPE_GIMP_TASK keys are the SDK's parameter
   * names); parameters a script cannot pass are left unset and take the session's defaults. FALSE
   * with *error for a value the procedure itself refuses. */
  gboolean (*from_pdb)(LoupeGimpCall *call, const GimpParam *param, gchar **error);
  /* The job succeeded and the image and layer are still there: change the image (one undo group)
   * and fill the return values. */
  GimpPDBStatusType (*apply)(LoupeGimpCall *call, const loupe_result *result, GimpParam *out, gint *n_out,
                             gchar **error);
  /* Task "edit" (loupe_edit_submit): `model` finds, `painter` repaints; the task's description is
   * the library's (no single session offers it). FALSE (left out of an initializer): one model. */
  gboolean two_models;
  LoupeGimpModelKind painter;
} LoupeGimpProcSpec;

struct LoupeGimpCall {
  const LoupeGimpProcSpec *spec;
  GimpRunMode mode;
  gint32 image;
  gint32 drawable;           /* -1: none (a new layer goes to the top) */
  LoupeGimpValues *values;   /* what this run sends */
  const LoupeGimpTask *task; /* the task as the session describes it */
  LoupeGimpPixels px;        /* FROM_LAYER: the layer as read (before padding) */
  guchar *mask;              /* FROM_SELECTION: the selection over the layer, px.width x px.height */
};

/* Runs a procedure (param[0] run mode, [1] image, [2] drawable, then its own). */
GimpPDBStatusType loupe_gimp_run_on_layer(const LoupeGimpProcSpec *spec, const GimpParam *param, GimpParam *out,
                                          gint *n_out, gchar **error);

/* The seed a diffusion result reports (the "seed" number), -1 if none or not 32-bit. */
gint32 loupe_gimp_result_seed(const loupe_result *result);

#endif
