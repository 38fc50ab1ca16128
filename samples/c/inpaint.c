/* inpaint: repaints the white part of a mask with a Stable Diffusion model folder.
 *   inpaint MODEL_DIR image.ppm mask.pgm "prompt" out.ppm [seed]
 * Ctrl-C-free cancel demo: a progress callback could return 0 to stop. */
#include <stdio.h>
#include <stdlib.h>

#include "loupe/loupe.h"
#include "netpbm.h"

static int on_progress(void *user, const loupe_progress *p) {
  (void)user;
  fprintf(stderr, "\r%s %d/%d%s", p->stage, p->step, p->total, p->preview ? " (preview)" : "");
  return 1;
}

int main(int argc, char **argv) {
  loupe_runtime_options ro = LOUPE_RUNTIME_OPTIONS_INIT;
  loupe_runtime *rt = NULL;
  loupe_session *session = NULL;
  loupe_request *rq = NULL;
  loupe_job *job = NULL;
  loupe_result *res = NULL;
  loupe_image image = {0, 0, 0, LOUPE_RGB8, NULL}, mask = {0, 0, 0, LOUPE_GRAY8, NULL}, out;
  int rc = 1;
  if (argc < 6) {
    fprintf(stderr, "usage: %s MODEL_DIR image.ppm mask.pgm \"prompt\" out.ppm [seed]\n", argv[0]);
    return 2;
  }
  if (netpbm_read(argv[2], &image) != 0 || netpbm_read(argv[3], &mask) != 0) {
    fprintf(stderr, "cannot read the image (PPM) or the mask (PGM)\n");
    free((void *)image.data);
    return 2;
  }
  if (loupe_runtime_create(&rt, &ro) != LOUPE_OK) goto fail;
  if (loupe_session_open(&session, rt, argv[1], NULL) != LOUPE_OK) goto fail;
  if (loupe_request_create(&rq, "inpaint") != LOUPE_OK) goto fail;
  if (loupe_request_set_image(rq, &image) != LOUPE_OK) goto fail;
  if (loupe_request_set_mask(rq, &mask) != LOUPE_OK) goto fail;
  if (loupe_request_set_string(rq, "prompt", argv[4]) != LOUPE_OK) goto fail;
  if (loupe_request_set_int(rq, "seed", argc > 6 ? atoll(argv[6]) : 42) != LOUPE_OK) goto fail;
  if (loupe_request_set_float(rq, "mask_blur", 4.0) != LOUPE_OK) goto fail;
  if (loupe_session_submit(&job, session, rq, on_progress, NULL) != LOUPE_OK) goto fail;
  loupe_job_wait(job, -1);
  fprintf(stderr, "\n");
  if (loupe_job_take_result(&res, job) != LOUPE_OK) goto fail;
  if (loupe_result_image(res, 0, &out) != LOUPE_OK) goto fail;
  if (netpbm_write(argv[5], &out) != 0) {
    fprintf(stderr, "cannot write %s\n", argv[5]);
    goto done;
  }
  printf("wrote %s\n", argv[5]);
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
  free((void *)mask.data);
  return rc;
}
