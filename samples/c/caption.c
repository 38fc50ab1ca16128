/* caption: runs an image task of a Florence-2 model folder and prints what it found.
 *   caption MODEL_DIR image.ppm [TASK]      TASK: caption (default), detailed (detailed_caption),
 *                                           or any image task the model offers: detect, ocr_regions, ...
 * Shows the whole life of a Loupe job: runtime, session, the task's description, request, job with
 * progress, result (text, boxes and polygons read with their kind). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loupe/loupe.h"
#include "netpbm.h"

static int on_progress(void *user, const loupe_progress *p) {
  (void)user;
  fprintf(stderr, "\r%s %d/%d", p->stage, p->step, p->total);
  return 1; /* return 0 to stop the job */
}

static const char *kind_name(loupe_shape_kind kind) {
  switch (kind) {
    case LOUPE_SHAPE_BOX: return "box";
    case LOUPE_SHAPE_QUAD: return "quad";
    case LOUPE_SHAPE_POLYGON: return "polygon";
  }
  return "?";
}

int main(int argc, char **argv) {
  loupe_runtime_options ro = LOUPE_RUNTIME_OPTIONS_INIT;
  loupe_task_info task = LOUPE_TASK_INFO_INIT;
  loupe_runtime *rt = NULL;
  loupe_session *session = NULL;
  loupe_request *rq = NULL;
  loupe_job *job = NULL;
  loupe_result *res = NULL;
  loupe_image image;
  const char *name = "caption";
  size_t index = 0, i;
  int rc = 1;
  if (argc < 3) {
    fprintf(stderr, "usage: %s MODEL_DIR image.ppm [TASK]\n", argv[0]);
    return 2;
  }
  if (argc > 3) name = strcmp(argv[3], "detailed") == 0 ? "detailed_caption" : argv[3];
  if (netpbm_read(argv[2], &image) != 0) {
    fprintf(stderr, "cannot read %s (binary PPM/PGM expected)\n", argv[2]);
    return 2;
  }
  ro.device = "auto";
  if (loupe_runtime_create(&rt, &ro) != LOUPE_OK) goto fail;
  if (loupe_session_open(&session, rt, argv[1], NULL) != LOUPE_OK) goto fail;
  /* Does the model offer the task, and what does it take? (the error names the tasks it offers) */
  if (loupe_task_find(session, name, &index) != LOUPE_OK) goto fail;
  if (loupe_task_describe(session, index, &task) != LOUPE_OK) goto fail;
  if (task.required & ~LOUPE_INPUT_IMAGE) {
    fprintf(stderr, "%s needs more than an image (%s); this sample gives it only the image\n", task.name, task.help);
    goto done;
  }
  if (loupe_request_create(&rq, name) != LOUPE_OK) goto fail;
  if (loupe_request_set_image(rq, &image) != LOUPE_OK) goto fail;
  if (loupe_session_submit(&job, session, rq, on_progress, NULL) != LOUPE_OK) goto fail; /* returns at once */
  loupe_job_wait(job, -1);
  fprintf(stderr, "\n");
  if (loupe_job_take_result(&res, job) != LOUPE_OK) goto fail;
  if (task.outputs & LOUPE_OUTPUT_TEXT) printf("%s\n", loupe_result_text(res));
  if (task.outputs & LOUPE_OUTPUT_BOXES) printf("%s: %zu boxes\n", task.name, loupe_result_box_count(res));
  for (i = 0; i < loupe_result_box_count(res); i++) {
    loupe_box box = LOUPE_BOX_INIT; /* struct_size: how much of it the library fills */
    if (loupe_result_get_box(res, i, &box) != LOUPE_OK) goto fail;
    printf("  %s '%s' [%.1f, %.1f, %.1f, %.1f]\n", kind_name(box.kind), box.label, box.x0, box.y0, box.x1, box.y1);
  }
  if (task.outputs & LOUPE_OUTPUT_POLYGONS) printf("%s: %zu polygons\n", task.name, loupe_result_polygon_count(res));
  for (i = 0; i < loupe_result_polygon_count(res); i++) {
    loupe_polygon polygon = LOUPE_POLYGON_INIT;
    if (loupe_result_get_polygon(res, i, &polygon) != LOUPE_OK) goto fail;
    printf("  %s '%s' group %d, %zu points, first (%.1f, %.1f)\n", kind_name(polygon.kind), polygon.label,
           (int)polygon.group, polygon.point_count, polygon.point_count ? polygon.points[0] : 0.0f,
           polygon.point_count ? polygon.points[1] : 0.0f);
  }
  rc = 0;
  goto done;
fail:
  fprintf(stderr, "loupe: %s\n", loupe_last_error());
done:
  loupe_result_free(res);
  loupe_job_free(job);
  loupe_request_free(rq);
  loupe_session_close(session);
  loupe_runtime_free(rt);
  free((void *)image.data);
  return rc;
}
