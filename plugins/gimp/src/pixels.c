#include "pixels.h"

#include <string.h>

gboolean loupe_gimp_read_drawable(gint32 drawable, LoupeGimpPixels *out, gchar **error) {
  GeglBuffer *buffer;
  gsize i, n;
  memset(out, 0, sizeof *out);
  buffer = gimp_drawable_get_buffer(drawable);
  if (!buffer) {
    *error = g_strdup("Loupe could not read the layer's pixels.");
    return FALSE;
  }
  out->width = gegl_buffer_get_width(buffer);
  out->height = gegl_buffer_get_height(buffer);
  n = (gsize)out->width * (gsize)out->height;
  out->rgba = g_try_malloc(n * 4);
  out->rgb = g_try_malloc(n * 3);
  if (!out->rgba || !out->rgb) {
    g_object_unref(buffer);
    loupe_gimp_pixels_clear(out);
    *error = g_strdup("Not enough memory for a copy of the layer.");
    return FALSE;
  }
  /* babl converts indexed, grayscale, 16/32-bit and float data; the layer stays as it is. */
  gegl_buffer_get(buffer, GEGL_RECTANGLE(0, 0, out->width, out->height), 1.0, babl_format("R'G'B'A u8"), out->rgba,
                  GEGL_AUTO_ROWSTRIDE, GEGL_ABYSS_NONE);
  g_object_unref(buffer);
  /* Transparent pixels have no meaningful colour: the models see them over white. */
  for (i = 0; i < n; ++i) {
    const guint a = out->rgba[4 * i + 3];
    int c;
    for (c = 0; c < 3; ++c) out->rgb[3 * i + c] = (guchar)((out->rgba[4 * i + c] * a + 255u * (255u - a) + 127u) / 255u);
  }
  return TRUE;
}

void loupe_gimp_pixels_clear(LoupeGimpPixels *pixels) {
  g_free(pixels->rgba);
  g_free(pixels->rgb);
  memset(pixels, 0, sizeof *pixels);
}

loupe_image loupe_gimp_pixels_image(const LoupeGimpPixels *pixels) {
  loupe_image im;
  im.width = pixels->width;
  im.height = pixels->height;
  im.stride = pixels->width * 3;
  im.format = LOUPE_RGB8;
  im.data = pixels->rgb;
  return im;
}

guchar *loupe_gimp_read_selection_mask(gint32 image, gint32 drawable, gboolean *any) {
  const gint32 selection = gimp_image_get_selection(image);
  const gint w = gimp_drawable_width(drawable), h = gimp_drawable_height(drawable);
  gint ox = 0, oy = 0;
  gsize i, n = (gsize)w * (gsize)h;
  guchar *mask = g_malloc0(n);
  GeglBuffer *buffer = gimp_drawable_get_buffer(selection);
  *any = FALSE;
  gimp_drawable_offsets(drawable, &ox, &oy);
  if (buffer) {
    /* The selection in image coordinates, seen through the layer's rectangle; outside the image the
     * abyss is empty. */
    gegl_buffer_get(buffer, GEGL_RECTANGLE(ox, oy, w, h), 1.0, babl_format("Y u8"), mask, GEGL_AUTO_ROWSTRIDE,
                    GEGL_ABYSS_NONE);
    g_object_unref(buffer);
  }
  for (i = 0; i < n && !*any; ++i) *any = mask[i] != 0;
  return mask;
}

gint32 loupe_gimp_new_layer(gint32 image, const gchar *name, const loupe_image *result, const guchar *alpha,
                            gchar **error) {
  const GimpImageBaseType base = gimp_image_base_type(image);
  const GimpImageType type = base == GIMP_GRAY ? GIMP_GRAYA_IMAGE : base == GIMP_INDEXED ? GIMP_INDEXEDA_IMAGE : GIMP_RGBA_IMAGE;
  const gint w = result->width, h = result->height;
  const int bpp = result->format == LOUPE_RGBA8 ? 4 : result->format == LOUPE_RGB8 ? 3 : 1;
  guchar *rgba;
  GeglBuffer *buffer;
  gint32 layer;
  gint x, y;
  if (w <= 0 || h <= 0 || !result->data) {
    *error = g_strdup("The model returned an empty image.");
    return -1;
  }
  rgba = g_try_malloc((gsize)w * (gsize)h * 4);
  if (!rgba) {
    *error = g_strdup("Not enough memory for the new layer.");
    return -1;
  }
  for (y = 0; y < h; ++y) {
    const guint8 *src = result->data + (gsize)y * (gsize)result->stride;
    guchar *dst = rgba + (gsize)y * (gsize)w * 4;
    for (x = 0; x < w; ++x) {
      const guint8 *p = src + x * bpp;
      dst[4 * x + 0] = p[0];
      dst[4 * x + 1] = bpp >= 3 ? p[1] : p[0];
      dst[4 * x + 2] = bpp >= 3 ? p[2] : p[0];
      dst[4 * x + 3] = alpha ? alpha[(gsize)y * (gsize)w + x] : bpp == 4 ? p[3] : 255;
    }
  }
  layer = gimp_layer_new(image, name, w, h, type, 100.0, GIMP_LAYER_MODE_NORMAL);
  if (layer < 0) {
    g_free(rgba);
    *error = g_strdup("GIMP could not create the new layer.");
    return -1;
  }
  buffer = gimp_drawable_get_buffer(layer);
  /* babl converts to the image's mode (grayscale, or the nearest palette colour when indexed). */
  gegl_buffer_set(buffer, GEGL_RECTANGLE(0, 0, w, h), 0, babl_format("R'G'B'A u8"), rgba, GEGL_AUTO_ROWSTRIDE);
  g_object_unref(buffer);
  g_free(rgba);
  return layer;
}

gchar *loupe_gimp_clean_text(const char *text) {
  gchar *valid = g_utf8_make_valid(text ? text : "", -1);
  return g_strstrip(valid);
}
