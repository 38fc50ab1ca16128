/* loupe-gimp-expect: what the GIMP plug-in should have put into the image, computed straight from the
 * SDK (C ABI) for the same pixels, written as the same "facts" files the Script-Fu checker writes.
 *
 *   loupe-gimp-expect MODEL TASK IMAGE.ppm OUTDIR [TEXT]
 *
 * IMAGE.ppm is the layer as GIMP itself converts it (8-bit RGB, over white), exported by the test.
 * caption tasks -> OUTDIR/comment.txt      the caption (valid UTF-8, stripped)
 * detect        -> OUTDIR/paths.txt        one path name per box, in order ("object" when unlabeled)
 * ground/segment-> OUTDIR/regions.txt      boxes of at least 1x1 pixel + polygons of 3+ points
 *                  OUTDIR/bounds.txt       their union "x0 y0 x1 y1", clipped to the image
 *   loupe-gimp-expect --inspect MODEL     prints loupe_model_inspect's JSON (which family, if any) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "loupe/loupe.h"

static int read_token(FILE *f, char *buf, size_t size) {
  int c;
  size_t n = 0;
  for (;;) { /* blanks and # comments (GIMP writes one) */
    c = fgetc(f);
    if (c == '#')
      while (c != '\n' && c != EOF) c = fgetc(f);
    if (c == EOF) return 0;
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
  }
  while (c != EOF && c != ' ' && c != '\t' && c != '\n' && c != '\r' && n + 1 < size) {
    buf[n++] = (char)c;
    c = fgetc(f);
  }
  buf[n] = '\0';
  return 1; /* the single blank after the last header token is consumed */
}

static unsigned char *read_ppm(const char *path, int *w, int *h) {
  FILE *f = fopen(path, "rb");
  char tok[4][32];
  unsigned char *data;
  int i;
  if (!f) return NULL;
  for (i = 0; i < 4; ++i)
    if (!read_token(f, tok[i], sizeof tok[i])) break;
  *w = atoi(tok[1]), *h = atoi(tok[2]);
  if (i < 4 || strcmp(tok[0], "P6") != 0 || strcmp(tok[3], "255") != 0 || *w <= 0 || *h <= 0) {
    fclose(f);
    return NULL;
  }
  data = malloc((size_t)*w * *h * 3);
  if (data && fread(data, 1, (size_t)*w * *h * 3, f) != (size_t)*w * *h * 3) {
    free(data);
    data = NULL;
  }
  fclose(f);
  return data;
}

static gchar *clean(const char *text) { return g_strstrip(g_utf8_make_valid(text ? text : "", -1)); }

static void write_fact(const char *dir, const char *name, const char *text) {
  gchar *path = g_build_filename(dir, name, NULL);
  GError *err = NULL;
  if (!g_file_set_contents(path, text, -1, &err)) {
    fprintf(stderr, "loupe-gimp-expect: %s\n", err->message);
    exit(1);
  }
  g_free(path);
}

int main(int argc, char **argv) {
  loupe_runtime *rt = NULL;
  loupe_session *s = NULL;
  loupe_request *rq = NULL;
  loupe_job *job = NULL;
  loupe_result *res = NULL;
  loupe_image im;
  int w = 0, h = 0;
  const char *task, *out;
  unsigned char *pixels;
  size_t i;
  if (argc == 3 && strcmp(argv[1], "--inspect") == 0) {
    char *json = NULL;
    if (loupe_model_inspect(NULL, argv[2], &json) != LOUPE_OK) return 1;
    printf("%s\n", json);
    loupe_string_free(json);
    return 0;
  }
  if (argc < 5) {
    fprintf(stderr, "usage: %s MODEL TASK IMAGE.ppm OUTDIR [TEXT]\n", argv[0]);
    return 2;
  }
  task = argv[2];
  out = argv[4];
  pixels = read_ppm(argv[3], &w, &h);
  if (!pixels) {
    fprintf(stderr, "loupe-gimp-expect: cannot read %s (binary PPM, maxval 255)\n", argv[3]);
    return 2;
  }
  im.width = w, im.height = h, im.stride = w * 3, im.format = LOUPE_RGB8, im.data = pixels;
  if (loupe_runtime_create(&rt, NULL) != LOUPE_OK || loupe_session_open(&s, rt, argv[1], NULL) != LOUPE_OK ||
      loupe_request_create(&rq, task) != LOUPE_OK || loupe_request_set_image(rq, &im) != LOUPE_OK ||
      (argc > 5 && loupe_request_set_string(rq, "text", argv[5]) != LOUPE_OK) ||
      loupe_session_submit(&job, s, rq, NULL, NULL) != LOUPE_OK || loupe_job_wait(job, -1) != LOUPE_OK ||
      loupe_job_take_result(&res, job) != LOUPE_OK) {
    fprintf(stderr, "loupe-gimp-expect: %s\n", loupe_last_error());
    return 1;
  }
  if (strstr(task, "caption")) {
    gchar *c = clean(loupe_result_text(res));
    write_fact(out, "comment.txt", c);
    g_free(c);
  } else if (strcmp(task, "detect") == 0) {
    GString *names = g_string_new(NULL);
    for (i = 0; i < loupe_result_box_count(res); ++i) {
      loupe_box b;
      gchar *label;
      loupe_result_box(res, i, &b);
      label = clean(b.label);
      g_string_append_printf(names, "%s\n", *label ? label : "object");
      g_free(label);
    }
    write_fact(out, "paths.txt", names->str);
    g_string_free(names, TRUE);
  } else {
    double x0 = w, y0 = h, x1 = 0, y1 = 0;
    int regions = 0;
    gchar *text;
    for (i = 0; i < loupe_result_box_count(res); ++i) {
      loupe_box b;
      loupe_result_box(res, i, &b);
      if (fabs(b.x1 - b.x0) < 1 || fabs(b.y1 - b.y0) < 1) continue;
      ++regions;
      x0 = fmin(x0, fmin(b.x0, b.x1)), x1 = fmax(x1, fmax(b.x0, b.x1));
      y0 = fmin(y0, fmin(b.y0, b.y1)), y1 = fmax(y1, fmax(b.y0, b.y1));
    }
    for (i = 0; i < loupe_result_polygon_count(res); ++i) {
      loupe_polygon p;
      size_t k;
      loupe_result_polygon(res, i, &p);
      if (p.point_count < 3) continue;
      ++regions;
      for (k = 0; k < p.point_count; ++k) {
        x0 = fmin(x0, p.points[2 * k]), x1 = fmax(x1, p.points[2 * k]);
        y0 = fmin(y0, p.points[2 * k + 1]), y1 = fmax(y1, p.points[2 * k + 1]);
      }
    }
    text = g_strdup_printf("%d", regions);
    write_fact(out, "regions.txt", text);
    g_free(text);
    text = g_strdup_printf("%d %d %d %d", (int)lround(fmax(x0, 0)), (int)lround(fmax(y0, 0)), (int)lround(fmin(x1, w)),
                           (int)lround(fmin(y1, h)));
    write_fact(out, "bounds.txt", text);
    g_free(text);
  }
  loupe_result_free(res);
  loupe_job_free(job);
  loupe_request_free(rq);
  loupe_session_close(s);
  loupe_runtime_free(rt);
  free(pixels);
  return 0;
}
