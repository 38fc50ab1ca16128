/* A program built against the previous header (libloupe 0.1, kept as compat/loupe_0_1.h) runs
 * against this library unchanged: its option and info structs are smaller, and it reads boxes and
 * polygons with the 0.1 accessors and layouts. Plain C99, like an integrator's program. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loupe_0_1.h"

static int failures = 0;
#define CHECK(cond)                                                                                          \
  do {                                                                                                       \
    if (!(cond)) {                                                                                           \
      ++failures;                                                                                            \
      fprintf(stderr, "%s:%d: CHECK(%s) failed; last error: %s\n", __FILE__, __LINE__, #cond, loupe_last_error()); \
    }                                                                                                        \
  } while (0)

static loupe_result *run(loupe_session *s, const char *task, const loupe_image *im) {
  loupe_request *rq = NULL;
  loupe_job *job = NULL;
  loupe_result *res = NULL;
  CHECK(loupe_request_create(&rq, task) == LOUPE_OK);
  CHECK(loupe_request_set_image(rq, im) == LOUPE_OK);
  CHECK(loupe_request_set_int(rq, "max_new_tokens", 40) == LOUPE_OK);
  CHECK(loupe_session_submit(&job, s, rq, NULL, NULL) == LOUPE_OK);
  CHECK(loupe_job_wait(job, -1) == LOUPE_OK);
  CHECK(loupe_job_take_result(&res, job) == LOUPE_OK);
  loupe_job_free(job);
  loupe_request_free(rq);
  return res;
}

int main(void) {
  const char *fixtures = getenv("LOUPE_FIXTURES_DIR");
  char path[1024];
  loupe_runtime_options ro = LOUPE_RUNTIME_OPTIONS_INIT;
  loupe_session_info info = LOUPE_SESSION_INFO_INIT;
  loupe_runtime *rt = NULL;
  loupe_session *s = NULL;
  loupe_result *res;
  unsigned char px[64 * 48 * 3];
  loupe_image im;
  size_t i, boxes = 0, polygons = 0;
  if (!fixtures) {
    fprintf(stderr, "LOUPE_FIXTURES_DIR is not set\n");
    return 1;
  }
  CHECK(LOUPE_VERSION_MINOR == 1);         /* really the 0.1 header */
  CHECK(loupe_version_number() >= 200);    /* against a newer library */
  ro.device = "cpu";
  CHECK(loupe_runtime_create(&rt, &ro) == LOUPE_OK);
  snprintf(path, sizeof path, "%s/florence2/tiny", fixtures);
  CHECK(loupe_session_open(&s, rt, path, NULL) == LOUPE_OK);
  if (!s) return 1;
  CHECK(loupe_session_describe(s, &info) == LOUPE_OK);
  CHECK(strcmp(info.family, "florence2") == 0 && strstr(info.tasks, "ocr_regions") != NULL);
  for (i = 0; i < sizeof px; ++i) px[i] = (unsigned char)((i * 13) ^ (i >> 5));
  im.width = 64; im.height = 48; im.stride = 64 * 3; im.format = LOUPE_RGB8; im.data = px;
  /* boxes and polygons in the 0.1 layouts, through the 0.1 accessors */
  {
    const char *tasks[] = {"detect", "dense_caption", "region_proposal", "ocr_regions"};
    size_t t;
    for (t = 0; t < 4; ++t) {
      res = run(s, tasks[t], &im);
      if (!res) continue;
      for (i = 0; i < loupe_result_box_count(res); ++i) {
        loupe_box b;
        memset(&b, 0, sizeof b);
        CHECK(loupe_result_box(res, i, &b) == LOUPE_OK);
        CHECK(b.x0 == b.x0 && b.y1 == b.y1 && b.score > 0 && b.label != NULL); /* filled, finite */
        ++boxes;
      }
      for (i = 0; i < loupe_result_polygon_count(res); ++i) {
        loupe_polygon p;
        memset(&p, 0, sizeof p);
        CHECK(loupe_result_polygon(res, i, &p) == LOUPE_OK);
        CHECK(p.points != NULL && p.point_count >= 3 && p.label != NULL);
        ++polygons;
      }
      {
        loupe_box b;
        CHECK(loupe_result_box(res, loupe_result_box_count(res), &b) == LOUPE_ERROR_NOT_FOUND);
      }
      loupe_result_free(res);
    }
  }
  printf("read %zu boxes and %zu polygons through the 0.1 accessors\n", boxes, polygons);
  CHECK(boxes > 0);
  loupe_session_close(s);
  loupe_runtime_free(rt);
  if (failures) fprintf(stderr, "%d check(s) failed\n", failures);
  return failures ? 1 : 0;
}
