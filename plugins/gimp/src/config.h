/* Where the GIMP plug-in finds its models: the environment first, then the settings the Loupe
 * editor saved (a QSettings INI file, read here without Qt), then defaults. */
#ifndef LOUPE_GIMP_CONFIG_H
#define LOUPE_GIMP_CONFIG_H

#include <glib.h>

typedef struct LoupeGimpConfig {
  gchar *models_dir; /* LOUPE_MODELS_DIR, else [loupe] modelsDir, else ~/.local/share/loupe/models */
  gchar *device;     /* [loupe] device, else "auto" */
  gchar *precision;  /* [loupe] precision, else "auto" */
  gchar *last_model; /* [loupe] lastModel (the model the editor opened last), or NULL */
} LoupeGimpConfig;

/* The editor's settings file: $XDG_CONFIG_HOME (or ~/.config) /Loupe/Loupe Editor.conf. */
gchar *loupe_gimp_settings_path(void);

/* Reads one value of a QSettings INI file ("group/key"); NULL when the file or key is absent.
 * Understands QSettings' quoting and escapes (\", \\, \n, \t, \xHHHH, @@). */
gchar *loupe_gimp_ini_read(const gchar *path, const gchar *group, const gchar *key);

void loupe_gimp_config_load(LoupeGimpConfig *config);
void loupe_gimp_config_clear(LoupeGimpConfig *config);

typedef enum LoupeGimpModelKind {
  LOUPE_GIMP_MODEL_FLORENCE,  /* caption, detect, ground, segment */
  LOUPE_GIMP_MODEL_SD,        /* txt2img */
  LOUPE_GIMP_MODEL_SD_INPAINT /* inpaint: an inpainting variant if there is one */
} LoupeGimpModelKind;

/* The model folder for a kind of task: LOUPE_FLORENCE_MODEL / LOUPE_SD_MODEL
 * (LOUPE_SD_INPAINT_MODEL, else LOUPE_SD_MODEL, for inpainting), else the editor's last model if
 * it is of the right family, else the first folder of the models folder that is. NULL with *error
 * set (a sentence for the person) when there is none. */
gchar *loupe_gimp_find_model(const LoupeGimpConfig *config, LoupeGimpModelKind kind, gchar **error);

#endif
