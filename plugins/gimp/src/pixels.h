/* Pixels between GIMP and Loupe. Every read makes a copy in 8-bit R'G'B'A through babl, whatever
 * the image's mode (RGB, grayscale, indexed) and precision (8/16/32-bit, integer or float, linear or
 * perceptual): the person's image is never converted. */
#ifndef LOUPE_GIMP_PIXELS_H
#define LOUPE_GIMP_PIXELS_H

#include <libgimp/gimp.h>

#include "loupe/loupe.h"

typedef struct LoupeGimpPixels {
  gint width, height;
  guchar *rgba; /* width * height * 4, R'G'B'A u8 as GIMP shows them */
  guchar *rgb;  /* width * height * 3, the same composited over white (what the SDK gets) */
} LoupeGimpPixels;

/* Reads a drawable. FALSE (and *error) when it cannot be read. */
gboolean loupe_gimp_read_drawable(gint32 drawable, LoupeGimpPixels *out, gchar **error);
void loupe_gimp_pixels_clear(LoupeGimpPixels *pixels);
/* A loupe_image view of pixels->rgb. */
loupe_image loupe_gimp_pixels_image(const LoupeGimpPixels *pixels);

/* The selection over the drawable's area as a GRAY8 mask (255 = selected, 0 outside the image);
 * g_free it. *any is set to whether some pixel is selected. */
guchar *loupe_gimp_read_selection_mask(gint32 image, gint32 drawable, gboolean *any);

/* A new layer (not yet in the image) of the image's base type with alpha, filled with an RGB8 or
 * RGBA8 result image. alpha, if not NULL, is width*height bytes used as the layer's alpha.
 * -1 with *error on failure. */
gint32 loupe_gimp_new_layer(gint32 image, const gchar *name, const loupe_image *result, const guchar *alpha,
                            gchar **error);

/* Text from the SDK made safe for GIMP (valid UTF-8, no NUL). g_free it. */
gchar *loupe_gimp_clean_text(const char *text);

#endif
