/* The procedures under Filters > Loupe. Each reads its parameters (from the PDB call, the last
 * values, or its dialog), runs one Loupe job, and only then changes the image, in one undo group. */
#ifndef LOUPE_GIMP_PROCS_H
#define LOUPE_GIMP_PROCS_H

#include <libgimp/gimp.h>

/* A procedure body: fills out[] (return values after the status, *n_out of them) or sets *error
 * (a sentence for the person). Returns GIMP_PDB_SUCCESS, GIMP_PDB_CANCEL, or an error status. */
typedef GimpPDBStatusType (*LoupeGimpProcFn)(gint nparams, const GimpParam *param, GimpParam *out, gint *n_out,
                                             gchar **error);

typedef struct LoupeGimpProc {
  const gchar *name;
  const gchar *menu_label; /* NULL = not in a menu */
  const gchar *blurb;
  const gchar *help;
  const gchar *image_types;
  gint n_params;
  const GimpParamDef *params;
  gint n_returns;
  const GimpParamDef *returns;
  LoupeGimpProcFn fn;
} LoupeGimpProc;

/* The procedures, ended by an entry with name NULL. */
extern const LoupeGimpProc loupe_gimp_procs[];

#endif
