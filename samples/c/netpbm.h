/* Minimal binary PPM (P6) / PGM (P5) reading and writing, so that the samples need nothing but
 * loupe.h and the C library. */
#ifndef LOUPE_SAMPLES_NETPBM_H
#define LOUPE_SAMPLES_NETPBM_H
#include <stdio.h>
#include <stdlib.h>

#include "loupe/loupe.h"

/* Reads a P6 (RGB) or P5 (gray) file into *out (data malloc'ed; free it). Returns 0 on success. */
static inline int netpbm_read(const char *path, loupe_image *out) {
  FILE *f = fopen(path, "rb");
  char magic[3] = {0};
  int w, h, maxval, ch;
  unsigned char *data;
  if (!f) return -1;
  if (fscanf(f, "%2s %d %d %d", magic, &w, &h, &maxval) != 4 || maxval != 255 || w <= 0 || h <= 0 ||
      (magic[1] != '6' && magic[1] != '5') || fgetc(f) == EOF) {
    fclose(f);
    return -1;
  }
  ch = magic[1] == '6' ? 3 : 1;
  data = (unsigned char *)malloc((size_t)w * h * ch);
  if (!data || fread(data, 1, (size_t)w * h * ch, f) != (size_t)w * h * ch) {
    free(data);
    fclose(f);
    return -1;
  }
  fclose(f);
  out->width = w;
  out->height = h;
  out->stride = w * ch;
  out->format = ch == 3 ? LOUPE_RGB8 : LOUPE_GRAY8;
  out->data = data;
  return 0;
}

/* Writes an RGB8/RGBA8 image as P6 (alpha dropped). Returns 0 on success. */
static inline int netpbm_write(const char *path, const loupe_image *im) {
  FILE *f = fopen(path, "wb");
  int x, y, bpp = im->format == LOUPE_RGBA8 ? 4 : 3;
  if (!f) return -1;
  fprintf(f, "P6\n%d %d\n255\n", im->width, im->height);
  for (y = 0; y < im->height; ++y)
    for (x = 0; x < im->width; ++x) fwrite(im->data + (size_t)y * im->stride + (size_t)x * bpp, 1, 3, f);
  return fclose(f) == 0 ? 0 : -1;
}
#endif
