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
 *   loupe-gimp-expect --inspect MODEL     prints loupe_model_inspect's JSON (which family, if any)
 *   loupe-gimp-expect --rows MODEL TASK   prints the rows the plug-in's dialog must show for TASK as a
 *                                         session of MODEL describes it (loupe_task_param), in the format
 *                                         of its LOUPE_GIMP_DIALOG_DUMP (plugins/gimp/src/dialogs.h) */
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

/* ------------------------------------------------------------------ --rows */

static const char *type_name(loupe_param_type t) {
  switch (t) {
    case LOUPE_PARAM_INT:
      return "int";
    case LOUPE_PARAM_FLOAT:
      return "float";
    case LOUPE_PARAM_STRING:
      return "string";
    case LOUPE_PARAM_BOOL:
      return "bool";
    case LOUPE_PARAM_CHOICE:
      return "choice";
  }
  return "unknown";
}

static const char *widget_for(loupe_param_type t) {
  switch (t) {
    case LOUPE_PARAM_INT:
    case LOUPE_PARAM_FLOAT:
      return "GtkSpinButton";
    case LOUPE_PARAM_BOOL:
      return "GtkCheckButton";
    case LOUPE_PARAM_CHOICE:
      return "GtkComboBoxText";
    default:
      return "GtkEntry";
  }
}

static gchar *num(double v) {
  gchar buf[G_ASCII_DTOSTR_BUF_SIZE];
  if (v == 0) v = 0;
  return g_strdup(g_ascii_formatd(buf, sizeof buf, "%.9g", v));
}

static gchar *one_line(const char *s) {
  gchar *out = g_strdup(s ? s : ""), *c;
  for (c = out; *c; ++c)
    if (*c == '|' || *c == '\n' || *c == '\r') *c = ' ';
  return out;
}

/* What the dialog must show for each parameter: the description, through the plug-in's rules for
 * widgets (int/float: spin button, string: entry, bool: check button labelled as the parameter,
 * choice: combo box; other labels start with a capital; the unit beside spin buttons; spin buttons
 * hold integer ranges within +-2^53, what a double holds exactly; a step of 0 is 1 for int, 0.01
 * for float; the value shown is the session's default, within the range). */
static int print_rows(const char *model, const char *task) {
  const double exact = 9007199254740992.0;
  loupe_runtime *rt = NULL;
  loupe_session *s = NULL;
  loupe_task_info info = LOUPE_TASK_INFO_INIT;
  size_t index = 0, i;
  if (loupe_runtime_create(&rt, NULL) != LOUPE_OK || loupe_session_open(&s, rt, model, NULL) != LOUPE_OK ||
      loupe_task_find(s, task, &index) != LOUPE_OK || loupe_task_describe(s, index, &info) != LOUPE_OK) {
    fprintf(stderr, "loupe-gimp-expect: %s\n", loupe_last_error());
    return 1;
  }
  for (i = 0; i < info.param_count; ++i) {
    loupe_param_info p = LOUPE_PARAM_INFO_INIT;
    gchar *label, *value, *lo = g_strdup(""), *hi = g_strdup(""), *step = g_strdup(""), *unit, *help, *name;
    GString *choices = g_string_new(NULL);
    if (loupe_task_param(s, index, i, &p) != LOUPE_OK) {
      fprintf(stderr, "loupe-gimp-expect: %s\n", loupe_last_error());
      return 1;
    }
    if (p.type == LOUPE_PARAM_BOOL) {
      label = g_strdup(p.label);
    } else {
      gchar up[8] = {0};
      g_unichar_to_utf8(g_unichar_toupper(g_utf8_get_char(p.label)), up);
      label = g_strdup_printf("%s%s", up, g_utf8_next_char(p.label));
    }
    if (p.type == LOUPE_PARAM_INT || p.type == LOUPE_PARAM_FLOAT) {
      const int is_int = p.type == LOUPE_PARAM_INT;
      const double l = is_int ? fmax(p.min, -exact) : p.min, h = is_int ? fmin(p.max, exact) : p.max;
      const double v = fmin(fmax(p.default_number, l), h);
      g_free(lo), g_free(hi), g_free(step);
      lo = num(l), hi = num(h), step = num(p.step > 0 ? p.step : is_int ? 1 : 0.01);
      value = is_int ? g_strdup_printf("%" G_GINT64_FORMAT, (gint64)llround(v)) : num(v);
      unit = one_line(p.unit);
    } else if (p.type == LOUPE_PARAM_BOOL) {
      value = g_strdup(p.default_number != 0 ? "1" : "0");
      unit = g_strdup("");
    } else {
      size_t k;
      const char *shown = p.default_string ? p.default_string : "";
      if (p.type == LOUPE_PARAM_CHOICE) {
        int found = 0;
        for (k = 0; k < p.choice_count; ++k) {
          g_string_append_printf(choices, "%s%s", k ? "," : "", p.choices[k]);
          found = found || strcmp(p.choices[k], shown) == 0;
        }
        if (!found) shown = p.choice_count ? p.choices[0] : "";
      }
      value = one_line(shown);
      unit = g_strdup("");
    }
    name = one_line(label);
    help = one_line(p.help);
    printf("%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%d|%s\n", p.name, type_name(p.type), widget_for(p.type), name, help, unit,
           value, lo, hi, step, p.advanced ? 1 : 0, choices->str);
    g_free(label), g_free(value), g_free(lo), g_free(hi), g_free(step), g_free(unit), g_free(help), g_free(name);
    g_string_free(choices, TRUE);
  }
  loupe_session_close(s);
  loupe_runtime_free(rt);
  return 0;
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
    if (loupe_model_inspect(NULL, argv[2], &json) != LOUPE_OK) {
      fprintf(stderr, "loupe-gimp-expect: %s\n", loupe_last_error());
      return 1;
    }
    printf("%s\n", json);
    loupe_string_free(json);
    return 0;
  }
  if (argc == 4 && strcmp(argv[1], "--rows") == 0) return print_rows(argv[2], argv[3]);
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
      loupe_box b = LOUPE_BOX_INIT;
      gchar *label;
      loupe_result_get_box(res, i, &b);
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
      loupe_box b = LOUPE_BOX_INIT;
      loupe_result_get_box(res, i, &b);
      if (fabs(b.x1 - b.x0) < 1 || fabs(b.y1 - b.y0) < 1) continue;
      ++regions;
      x0 = fmin(x0, fmin(b.x0, b.x1)), x1 = fmax(x1, fmax(b.x0, b.x1));
      y0 = fmin(y0, fmin(b.y0, b.y1)), y1 = fmax(y1, fmax(b.y0, b.y1));
    }
    for (i = 0; i < loupe_result_polygon_count(res); ++i) {
      loupe_polygon p = LOUPE_POLYGON_INIT;
      size_t k;
      loupe_result_get_polygon(res, i, &p);
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
