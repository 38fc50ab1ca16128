/* caption: prints a caption of an image with a Florence-2 model folder.
 *   caption MODEL_DIR image.ppm [detailed]
 * Shows the whole life of a Loupe job: runtime, session, request, job with progress, result. */
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

int main(int argc, char **argv) {
  loupe_runtime_options ro = LOUPE_RUNTIME_OPTIONS_INIT;
  loupe_runtime *rt = NULL;
  loupe_session *session = NULL;
  loupe_request *rq = NULL;
  loupe_job *job = NULL;
  loupe_result *res = NULL;
  loupe_image image;
  int rc = 1;
  if (argc < 3) {
    fprintf(stderr, "usage: %s MODEL_DIR image.ppm [detailed]\n", argv[0]);
    return 2;
  }
  if (netpbm_read(argv[2], &image) != 0) {
    fprintf(stderr, "cannot read %s (binary PPM/PGM expected)\n", argv[2]);
    return 2;
  }
  ro.device = "auto";
  if (loupe_runtime_create(&rt, &ro) != LOUPE_OK) goto fail;
  if (loupe_session_open(&session, rt, argv[1], NULL) != LOUPE_OK) goto fail;
  if (loupe_request_create(&rq, argc > 3 && strcmp(argv[3], "detailed") == 0 ? "detailed_caption" : "caption") != LOUPE_OK)
    goto fail;
  if (loupe_request_set_image(rq, &image) != LOUPE_OK) goto fail;
  if (loupe_session_submit(&job, session, rq, on_progress, NULL) != LOUPE_OK) goto fail; /* returns at once */
  loupe_job_wait(job, -1);
  fprintf(stderr, "\n");
  if (loupe_job_take_result(&res, job) != LOUPE_OK) goto fail;
  printf("%s\n", loupe_result_text(res));
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
