/* The whole C ABI surface, compiled as C99: creation, options with an older struct_size, errors and
 * their messages, jobs (wait, poll, cancel), free(NULL), results. Uses the runtime's self-test as
 * the job; model sessions are covered with the fixture models (LOUPE_FIXTURES_DIR). */
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>
#include <time.h>

#include "loupe/loupe.h"

static int failures = 0;
static int checks = 0;

#define CHECK(cond)                                                                  \
  do {                                                                               \
    ++checks;                                                                        \
    if (!(cond)) {                                                                   \
      ++failures;                                                                    \
      fprintf(stderr, "%s:%d: CHECK(%s) failed; last error: %s\n", __FILE__, __LINE__, \
              #cond, loupe_last_error());                                            \
    }                                                                                \
  } while (0)

#define CHECK_ERR(call, status, needle)                                                       \
  do {                                                                                        \
    loupe_status st_ = (call);                                                                \
    ++checks;                                                                                 \
    if (st_ != (status) || strstr(loupe_last_error(), (needle)) == NULL) {                    \
      ++failures;                                                                             \
      fprintf(stderr, "%s:%d: %s gave %s '%s', expected %s with '%s'\n", __FILE__, __LINE__, \
              #call, loupe_status_name(st_), loupe_last_error(), #status, needle);            \
    }                                                                                         \
  } while (0)

static int progress_calls;
static int on_progress(void *user, const loupe_progress *p) {
  (void)user;
  ++progress_calls;
  return p->step < 1000000;
}
static int stop_at_two(void *user, const loupe_progress *p) {
  (void)user;
  return p->step < 2;
}

/* Text generation streams its partial output through progress (the appended field `text`). */
static int text_calls;
static char last_text[512];
static int on_text_progress(void *user, const loupe_progress *p) {
  (void)user;
  if (p->struct_size > offsetof(loupe_progress, text) && p->text) {
    ++text_calls;
    strncpy(last_text, p->text, sizeof last_text - 1);
    last_text[sizeof last_text - 1] = 0;
  }
  return 1;
}

static void test_text_progress(loupe_runtime *rt, const char *fixtures) {
  char path[1024];
  loupe_session *s = NULL;
  loupe_request *rq = NULL;
  loupe_job *job = NULL;
  loupe_result *res = NULL;
  loupe_image im;
  static unsigned char px[32 * 24 * 3];
  size_t i;
  snprintf(path, sizeof path, "%s/paligemma/tiny-pg1", fixtures);
  CHECK(loupe_session_open(&s, rt, path, NULL) == LOUPE_OK);
  if (!s) return;
  for (i = 0; i < sizeof px; ++i) px[i] = (unsigned char)(i * 13);
  im.width = 32; im.height = 24; im.stride = 96; im.format = LOUPE_RGB8; im.data = px;
  CHECK(loupe_request_create(&rq, "caption") == LOUPE_OK);
  CHECK(loupe_request_set_image(rq, &im) == LOUPE_OK);
  CHECK(loupe_request_set_int(rq, "max_new_tokens", 6) == LOUPE_OK);
  CHECK(loupe_request_set_int(rq, "num_beams", 1) == LOUPE_OK);
  text_calls = 0;
  last_text[0] = 0;
  CHECK(loupe_session_submit(&job, s, rq, on_text_progress, NULL) == LOUPE_OK);
  CHECK(loupe_job_wait(job, -1) == LOUPE_OK);
  CHECK(loupe_job_take_result(&res, job) == LOUPE_OK);
  /* one report per generated token, the last one holding the whole answer */
  CHECK(text_calls >= 1 && text_calls <= 6);
  CHECK(res && loupe_result_text(res) && strcmp(loupe_result_text(res), last_text) == 0);
  loupe_result_free(res);
  loupe_job_free(job);
  loupe_request_free(rq);
  loupe_session_close(s);
}

static int log_records;
static void on_log(void *user, loupe_log_level level, const char *msg) {
  (void)user;
  (void)level;
  if (msg && *msg) ++log_records;
}

/* The older layout of loupe_runtime_options: a program built against a header that had only the
 * first three fields must still work (the rest take their defaults). */
typedef struct {
  uint32_t struct_size;
  const char *device;
  loupe_precision precision;
} old_runtime_options;

static loupe_request *small_selftest(int64_t iterations) {
  loupe_request *rq = NULL;
  CHECK(loupe_request_create(&rq, "selftest") == LOUPE_OK);
  CHECK(loupe_request_set_int(rq, "matmul_size", 64) == LOUPE_OK);
  CHECK(loupe_request_set_int(rq, "alloc_mib", 1) == LOUPE_OK);
  CHECK(loupe_request_set_int(rq, "iterations", iterations) == LOUPE_OK);
  return rq;
}

static void test_version_and_status(void) {
  CHECK(strcmp(loupe_version(), "0.3.0") == 0);
  CHECK(loupe_version_number() == LOUPE_VERSION_NUMBER);
  CHECK(strcmp(loupe_status_name(LOUPE_ERROR_BAD_MODEL), "LOUPE_ERROR_BAD_MODEL") == 0);
  CHECK(strcmp(loupe_status_name((loupe_status)-99), "LOUPE_ERROR_UNKNOWN") == 0);
}

static void test_free_null(void) {
  loupe_runtime_free(NULL);
  loupe_session_close(NULL);
  loupe_request_free(NULL);
  loupe_job_free(NULL);
  loupe_result_free(NULL);
  loupe_string_free(NULL);
  CHECK(loupe_result_box_count(NULL) == 0);
  CHECK(strcmp(loupe_result_text(NULL), "") == 0);
}

static void test_bad_arguments(loupe_runtime *rt) {
  loupe_runtime *out = (loupe_runtime *)0x1;
  loupe_runtime_options bad = LOUPE_RUNTIME_OPTIONS_INIT;
  loupe_request *rq = NULL;
  loupe_job *job = (loupe_job *)0x1;
  loupe_session *s = (loupe_session *)0x1;
  unsigned char px[16 * 16 * 4];
  loupe_image im;
  CHECK_ERR(loupe_runtime_create(NULL, NULL), LOUPE_ERROR_INVALID_ARGUMENT, "out is NULL");
  bad.device = "gpu7";
  CHECK_ERR(loupe_runtime_create(&out, &bad), LOUPE_ERROR_INVALID_ARGUMENT, "gpu7");
  CHECK(out == (loupe_runtime *)0x1); /* untouched on error */
  bad.device = "cpu";
  bad.struct_size = 0;
  CHECK_ERR(loupe_runtime_create(&out, &bad), LOUPE_ERROR_INVALID_ARGUMENT, "struct_size");
  bad = (loupe_runtime_options)LOUPE_RUNTIME_OPTIONS_INIT;
  bad.precision = (loupe_precision)42;
  CHECK_ERR(loupe_runtime_create(&out, &bad), LOUPE_ERROR_INVALID_ARGUMENT, "precision");
  bad = (loupe_runtime_options)LOUPE_RUNTIME_OPTIONS_INIT;
  bad.num_threads = -2;
  CHECK_ERR(loupe_runtime_create(&out, &bad), LOUPE_ERROR_INVALID_ARGUMENT, "num_threads");

  CHECK_ERR(loupe_request_create(&rq, "paint_a_masterpiece"), LOUPE_ERROR_INVALID_ARGUMENT, "paint_a_masterpiece");
  CHECK_ERR(loupe_request_create(&rq, NULL), LOUPE_ERROR_INVALID_ARGUMENT, "task");
  CHECK(loupe_request_create(&rq, "caption") == LOUPE_OK);
  memset(px, 0, sizeof px);
  im.width = 0; im.height = 16; im.stride = 64; im.format = LOUPE_RGBA8; im.data = px;
  CHECK_ERR(loupe_request_set_image(rq, &im), LOUPE_ERROR_INVALID_ARGUMENT, "empty");
  im.width = 16; im.stride = 32;
  CHECK_ERR(loupe_request_set_image(rq, &im), LOUPE_ERROR_INVALID_ARGUMENT, "stride 32");
  im.stride = 64; im.format = (loupe_pixel_format)9;
  CHECK_ERR(loupe_request_set_image(rq, &im), LOUPE_ERROR_INVALID_ARGUMENT, "pixel format");
  im.format = LOUPE_RGBA8; im.data = NULL;
  CHECK_ERR(loupe_request_set_image(rq, &im), LOUPE_ERROR_INVALID_ARGUMENT, "data is NULL");
  im.data = px;
  CHECK(loupe_request_set_image(rq, &im) == LOUPE_OK);
  CHECK_ERR(loupe_request_set_mask(rq, &im), LOUPE_ERROR_INVALID_ARGUMENT, "GRAY8");
  CHECK_ERR(loupe_request_set_region(rq, 10, 10, 5, 20), LOUPE_ERROR_INVALID_ARGUMENT, "x1 > x0");
  CHECK_ERR(loupe_request_set_int(rq, NULL, 1), LOUPE_ERROR_INVALID_ARGUMENT, "key");
  CHECK_ERR(loupe_request_set_int(NULL, "steps", 1), LOUPE_ERROR_INVALID_ARGUMENT, "request is NULL");
  /* the runtime runs only the self-test; model tasks need a session */
  CHECK_ERR(loupe_runtime_submit(&job, rt, rq, NULL, NULL), LOUPE_ERROR_INVALID_ARGUMENT, "session");
  CHECK(job == (loupe_job *)0x1);
  CHECK_ERR(loupe_session_open(&s, rt, "/no/such/model/dir", NULL), LOUPE_ERROR_NOT_FOUND, "/no/such/model/dir");
  CHECK(s == (loupe_session *)0x1);
  CHECK_ERR(loupe_session_open(&s, rt, NULL, NULL), LOUPE_ERROR_INVALID_ARGUMENT, "path");
  CHECK_ERR(loupe_job_wait(NULL, 0), LOUPE_ERROR_INVALID_ARGUMENT, "job");
  CHECK_ERR(loupe_runtime_diagnostics(NULL, NULL), LOUPE_ERROR_INVALID_ARGUMENT, "runtime");
  loupe_request_free(rq);
}

static void test_old_struct_size(void) {
  old_runtime_options old;
  loupe_runtime *rt = NULL;
  old.struct_size = sizeof(old);
  old.device = "cpu";
  old.precision = LOUPE_PRECISION_FP32;
  CHECK(loupe_runtime_create(&rt, (const loupe_runtime_options *)&old) == LOUPE_OK);
  CHECK(rt && strcmp(loupe_runtime_device(rt), "cpu") == 0);
  loupe_runtime_free(rt);
}

static void test_jobs(loupe_runtime *rt) {
  loupe_request *rq = small_selftest(3);
  loupe_job *job = NULL;
  loupe_result *res = NULL;
  loupe_job_state state;
  float fraction = -1;
  double v = 0;
  loupe_box box = LOUPE_BOX_INIT;
  progress_calls = 0;
  CHECK(loupe_runtime_submit(&job, rt, rq, on_progress, NULL) == LOUPE_OK);
  loupe_request_free(rq); /* submit copied it */
  CHECK(loupe_job_wait(job, -1) == LOUPE_OK);
  CHECK(loupe_job_poll(job, &state, &fraction) == LOUPE_OK);
  CHECK(state == LOUPE_JOB_DONE && fraction == 1.0f);
  CHECK(loupe_job_status(job) == LOUPE_OK);
  CHECK(progress_calls > 3);
  CHECK(loupe_job_take_result(&res, job) == LOUPE_OK);
  CHECK_ERR(loupe_job_take_result(&res, job), LOUPE_ERROR_INVALID_STATE, "already taken");
  CHECK(strcmp(loupe_result_task(res), "selftest") == 0);
  CHECK(loupe_result_number(res, "ok", &v) == LOUPE_OK && v == 1.0);
  CHECK(loupe_result_number(res, "matmul_max_abs_error", &v) == LOUPE_OK && v == 0.0);
  CHECK_ERR(loupe_result_number(res, "nope", &v), LOUPE_ERROR_NOT_FOUND, "nope");
  CHECK_ERR(loupe_result_get_box(res, 0, &box), LOUPE_ERROR_NOT_FOUND, "out of range");
  box.struct_size = 0;
  CHECK_ERR(loupe_result_get_box(res, 0, &box), LOUPE_ERROR_INVALID_ARGUMENT, "LOUPE_BOX_INIT");
  CHECK(strstr(loupe_result_json(res), "\"matmul_tflops\"") != NULL);
  CHECK(strstr(loupe_result_text(res), "self-test passed") != NULL);
  loupe_result_free(res);
  loupe_job_free(job);

  /* cancel from the progress callback */
  rq = small_selftest(100000);
  CHECK(loupe_runtime_submit(&job, rt, rq, stop_at_two, NULL) == LOUPE_OK);
  CHECK(loupe_job_wait(job, -1) == LOUPE_OK);
  CHECK_ERR(loupe_job_status(job), LOUPE_ERROR_CANCELLED, "cancelled");
  CHECK_ERR(loupe_job_take_result(&res, job), LOUPE_ERROR_CANCELLED, "cancelled");
  loupe_job_free(job);

  /* cancel from this thread while it runs; wait with a timeout first */
  CHECK(loupe_runtime_submit(&job, rt, rq, NULL, NULL) == LOUPE_OK);
  CHECK_ERR(loupe_job_wait(job, 1), LOUPE_ERROR_TIMEOUT, "still running");
  CHECK(loupe_job_cancel(job) == LOUPE_OK);
  CHECK(loupe_job_cancel(job) == LOUPE_OK); /* idempotent */
  CHECK(loupe_job_wait(job, -1) == LOUPE_OK);
  CHECK(loupe_job_status(job) == LOUPE_ERROR_CANCELLED);
  loupe_job_free(job);

  /* freeing a running job cancels it */
  CHECK(loupe_runtime_submit(&job, rt, rq, NULL, NULL) == LOUPE_OK);
  loupe_job_free(job);
  loupe_request_free(rq);
}

static void test_diagnostics(loupe_runtime *rt) {
  char *json = NULL;
  CHECK(loupe_runtime_log(rt, LOUPE_LOG_WARNING, "host says hello") == LOUPE_OK);
  CHECK(loupe_runtime_diagnostics(rt, &json) == LOUPE_OK);
  CHECK(json && strstr(json, "\"build\"") && strstr(json, "\"devices\"") && strstr(json, "\"problems\""));
  CHECK(json && strstr(json, "host says hello"));
  loupe_string_free(json);
  json = NULL;
  CHECK(loupe_model_inspect(rt, "/no/such/model", &json) == LOUPE_OK);
  CHECK(json && strstr(json, "does not exist"));
  loupe_string_free(json);
  CHECK(log_records > 0);
}

/* Stable Diffusion through the ABI: an external VAE (a diffusers vae/ folder) swapped in and out,
 * a missing VAE file, and an empty prompt (unconditional generation). */
static void test_sd_session(loupe_runtime *rt, const char *fixtures) {
  char path[1024], vae[1100];
  loupe_session *s = NULL;
  loupe_request *rq = NULL;
  loupe_job *job = NULL;
  loupe_result *res = NULL;
  snprintf(path, sizeof path, "%s/sd/tiny-sd15", fixtures);
  snprintf(vae, sizeof vae, "%s/vae", path);
  CHECK(loupe_session_open(&s, rt, path, NULL) == LOUPE_OK);
  if (!s) return;
  CHECK(loupe_session_set_vae(s, vae) == LOUPE_OK);
  CHECK_ERR(loupe_session_set_vae(s, "/no/such/vae.safetensors"), LOUPE_ERROR_NOT_FOUND, "/no/such/vae.safetensors");
  CHECK(loupe_session_set_vae(s, NULL) == LOUPE_OK);
  { /* the session's bytes follow the VAE it holds (the tiny SDXL VAE is smaller than tiny SD 1.5's) */
    loupe_session_info before = LOUPE_SESSION_INFO_INIT, swapped = LOUPE_SESSION_INFO_INIT, back = LOUPE_SESSION_INFO_INIT;
    char small[1100];
    snprintf(small, sizeof small, "%s/sdxl/tiny-sdxl/vae", fixtures);
    CHECK(loupe_session_describe(s, &before) == LOUPE_OK);
    CHECK(loupe_session_set_vae(s, small) == LOUPE_OK);
    CHECK(loupe_session_describe(s, &swapped) == LOUPE_OK);
    CHECK(loupe_session_set_vae(s, NULL) == LOUPE_OK);
    CHECK(loupe_session_describe(s, &back) == LOUPE_OK);
    CHECK(swapped.bytes > 0 && swapped.bytes < before.bytes);
    CHECK(back.bytes == before.bytes);
  }
  CHECK(loupe_request_create(&rq, "txt2img") == LOUPE_OK);
  CHECK(loupe_request_set_string(rq, "prompt", "") == LOUPE_OK);
  CHECK(loupe_request_set_int(rq, "steps", 2) == LOUPE_OK);
  CHECK(loupe_session_submit(&job, s, rq, NULL, NULL) == LOUPE_OK);
  CHECK(loupe_job_wait(job, -1) == LOUPE_OK);
  CHECK(loupe_job_take_result(&res, job) == LOUPE_OK);
  CHECK(res && loupe_result_image_count(res) == 1);
  loupe_result_free(res);
  loupe_job_free(job);
  loupe_request_free(rq);
  loupe_session_close(s);
}

/* The task table: every task described, with typed parameters; a session's subset with its
 * defaults; the JSON form; the init functions. */
static void test_task_table(void) {
  size_t n = loupe_task_count(NULL), i, j, idx = 0, seen_params = 0;
  loupe_task_info t = LOUPE_TASK_INFO_INIT;
  loupe_param_info p = LOUPE_PARAM_INFO_INIT;
  char *json = NULL;
  int found_region_category = 0;
  CHECK(n >= 20);
  for (i = 0; i < n; ++i) {
    CHECK(loupe_task_describe(NULL, i, &t) == LOUPE_OK);
    CHECK(t.name && *t.name && t.label && *t.label && t.help && *t.help && t.group && *t.group);
    CHECK(t.outputs != 0);
    if (strcmp(t.name, "region_category") == 0)
      found_region_category = (t.required & LOUPE_INPUT_REGION) && (t.outputs & LOUPE_OUTPUT_TEXT);
    for (j = 0; j < t.param_count; ++j) {
      CHECK(loupe_task_param(NULL, i, j, &p) == LOUPE_OK);
      CHECK(p.name && *p.name && p.label && *p.label && p.help && p.unit && p.default_string);
      if (p.type == LOUPE_PARAM_INT || p.type == LOUPE_PARAM_FLOAT)
        CHECK(p.min <= p.default_number && p.default_number <= p.max);
      if (p.type == LOUPE_PARAM_CHOICE) CHECK(p.choice_count > 0 && p.choices[0] && *p.choices[0]);
      ++seen_params;
    }
    CHECK_ERR(loupe_task_param(NULL, i, t.param_count, &p), LOUPE_ERROR_NOT_FOUND, "out of range");
  }
  CHECK(found_region_category);
  CHECK(seen_params > 40);
  CHECK_ERR(loupe_task_describe(NULL, n, &t), LOUPE_ERROR_NOT_FOUND, "out of range");
  CHECK(loupe_task_find(NULL, "txt2img", &idx) == LOUPE_OK);
  CHECK(loupe_task_describe(NULL, idx, &t) == LOUPE_OK && strcmp(t.text_key, "prompt") == 0);
  CHECK((t.inputs & LOUPE_INPUT_TEXT) && !(t.required & LOUPE_INPUT_TEXT) && (t.outputs & LOUPE_OUTPUT_IMAGES));
  CHECK_ERR(loupe_task_find(NULL, "paint", &idx), LOUPE_ERROR_NOT_FOUND, "txt2img");
  CHECK(loupe_tasks_json(NULL, &json) == LOUPE_OK);
  CHECK(json && strstr(json, "\"region_category\"") && strstr(json, "\"choices\"") && strstr(json, "\"euler_a\""));
  loupe_string_free(json);
  /* an older, smaller info struct is filled only up to its struct_size */
  {
    struct {
      loupe_task_info head;
      char guard[8];
    } small;
    memset(&small, 0x5a, sizeof small);
    small.head.struct_size = (uint32_t)(offsetof(loupe_task_info, label));
    CHECK(loupe_task_describe(NULL, 0, &small.head) == LOUPE_OK);
    CHECK(small.head.name && *small.head.name);
    CHECK(((unsigned char *)&small.head)[offsetof(loupe_task_info, label)] == 0x5a);
  }
  /* the init functions give the INIT macros' values */
  {
    loupe_runtime_options a = LOUPE_RUNTIME_OPTIONS_INIT, b;
    loupe_box bx;
    memset(&b, 0x7f, sizeof b);
    CHECK(loupe_runtime_options_init(&b, (uint32_t)sizeof b) == LOUPE_OK);
    CHECK(b.struct_size == a.struct_size && b.device == NULL && b.log_level == a.log_level && b.num_threads == 0);
    CHECK(loupe_box_init(&bx, (uint32_t)sizeof bx) == LOUPE_OK && bx.kind == LOUPE_SHAPE_BOX && bx.struct_size == sizeof bx);
    CHECK_ERR(loupe_runtime_options_init(&b, (uint32_t)sizeof b + 8), LOUPE_ERROR_INVALID_ARGUMENT, "newer header");
    CHECK_ERR(loupe_param_info_init(NULL, 64), LOUPE_ERROR_INVALID_ARGUMENT, "NULL");
  }
}

/* A session's tasks: the Florence-2 fixture offers region_category, not txt2img; its generation
 * defaults come from its config. */
static void test_session_tasks(loupe_session *s) {
  size_t n = loupe_task_count(s), i, idx = 0;
  loupe_task_info t = LOUPE_TASK_INFO_INIT;
  loupe_param_info p = LOUPE_PARAM_INFO_INIT;
  int beams = 0;
  CHECK(n == 14);
  CHECK(loupe_task_find(s, "region_category", &idx) == LOUPE_OK);
  CHECK_ERR(loupe_task_find(s, "txt2img", &idx), LOUPE_ERROR_NOT_FOUND, "region_category");
  CHECK(loupe_task_find(s, "caption", &idx) == LOUPE_OK);
  CHECK(loupe_task_describe(s, idx, &t) == LOUPE_OK && strcmp(t.name, "caption") == 0 && t.text_key[0] == 0);
  for (i = 0; i < t.param_count; ++i) {
    CHECK(loupe_task_param(s, idx, i, &p) == LOUPE_OK);
    if (strcmp(p.name, "num_beams") == 0) beams = (int)p.default_number;
  }
  CHECK(beams >= 1);
}

/* A real session through the ABI: the tiny Florence-2 fixture (random weights, real layout). */
static void test_session(loupe_runtime *rt) {
  char path[1024];
  const char *fixtures = getenv("LOUPE_FIXTURES_DIR");
  loupe_session *s = NULL;
  loupe_session_info info = LOUPE_SESSION_INFO_INIT;
  loupe_request *rq = NULL;
  loupe_job *job = NULL;
  loupe_result *res = NULL;
  unsigned char px[40 * 30 * 4];
  loupe_image im;
  size_t i;
  if (!fixtures) {
    CHECK(!"LOUPE_FIXTURES_DIR is not set");
    return;
  }
  snprintf(path, sizeof path, "%s/florence2/tiny", fixtures);
  {
    /* inspect names the family's tasks without loading weights */
    char *ij = NULL;
    CHECK(loupe_model_inspect(rt, path, &ij) == LOUPE_OK);
    CHECK(ij && strstr(ij, "\"tasks\"") && strstr(ij, "\"region_category\""));
    loupe_string_free(ij);
  }
  CHECK(loupe_session_open(&s, rt, path, NULL) == LOUPE_OK);
  if (!s) return;
  CHECK(loupe_session_describe(s, &info) == LOUPE_OK);
  CHECK(strcmp(info.family, "florence2") == 0);
  CHECK(strstr(info.tasks, "detect") != NULL && strstr(info.tasks, "ocr_regions") != NULL);
  CHECK(strcmp(info.dtype, "float32") == 0 && info.bytes > 0 && info.resident == 1);
  for (i = 0; i < sizeof px; ++i) px[i] = (unsigned char)(i * 7);
  im.width = 40; im.height = 30; im.stride = 160; im.format = LOUPE_RGBA8; im.data = px;
  CHECK(loupe_request_create(&rq, "detect") == LOUPE_OK);
  CHECK(loupe_request_set_image(rq, &im) == LOUPE_OK);
  CHECK(loupe_request_set_int(rq, "max_new_tokens", 10) == LOUPE_OK);
  CHECK(loupe_session_submit(&job, s, rq, on_progress, NULL) == LOUPE_OK);
  CHECK(loupe_job_wait(job, -1) == LOUPE_OK);
  CHECK(loupe_job_take_result(&res, job) == LOUPE_OK);
  CHECK(res && strcmp(loupe_result_task(res), "detect") == 0);
  CHECK(res && strstr(loupe_result_json(res), "\"boxes\"") != NULL);
  loupe_result_free(res);
  loupe_job_free(job);
  loupe_request_free(rq);
  /* a task this model does not offer, and a grounding without its text */
  CHECK(loupe_request_create(&rq, "txt2img") == LOUPE_OK);
  CHECK_ERR(loupe_session_submit(&job, s, rq, NULL, NULL), LOUPE_ERROR_INVALID_ARGUMENT, "not offered");
  loupe_request_free(rq);
  CHECK(loupe_request_create(&rq, "ground") == LOUPE_OK);
  CHECK(loupe_request_set_image(rq, &im) == LOUPE_OK);
  CHECK_ERR(loupe_session_submit(&job, s, rq, NULL, NULL), LOUPE_ERROR_INVALID_ARGUMENT, "needs a caption");
  /* requests are checked against the session's description at submit */
  CHECK(loupe_request_set_string(rq, "text", "a cat") == LOUPE_OK);
  CHECK(loupe_request_set_int(rq, "num_beams", 99) == LOUPE_OK);
  CHECK_ERR(loupe_session_submit(&job, s, rq, NULL, NULL), LOUPE_ERROR_INVALID_ARGUMENT, "'num_beams' = 99 is out of range [1, 16]");
  CHECK(loupe_request_set_int(rq, "num_beams", 1) == LOUPE_OK);
  CHECK(loupe_request_set_int(rq, "num_beam", 1) == LOUPE_OK);
  CHECK_ERR(loupe_session_submit(&job, s, rq, NULL, NULL), LOUPE_ERROR_INVALID_ARGUMENT, "has no parameter 'num_beam'");
  loupe_request_free(rq);
  test_session_tasks(s);
  CHECK_ERR(loupe_session_set_vae(s, path), LOUPE_ERROR_UNSUPPORTED, "does not take an external VAE");
  CHECK_ERR(loupe_session_set_vae(NULL, path), LOUPE_ERROR_INVALID_ARGUMENT, "session is NULL");
  loupe_session_close(s);
  test_sd_session(rt, fixtures);
  test_text_progress(rt, fixtures);
  /* convert the original layout's pytorch_model.bin to safetensors, and refuse to overwrite */
  {
    char in[1100], out[256];
    snprintf(in, sizeof in, "%s/florence2/tiny-original/pytorch_model.bin", fixtures);
    snprintf(out, sizeof out, "/tmp/loupe-abi-convert-%ld.safetensors", (long)time(NULL));
    CHECK(loupe_checkpoint_convert(in, out) == LOUPE_OK);
    CHECK_ERR(loupe_checkpoint_convert(in, out), LOUPE_ERROR_INVALID_ARGUMENT, "already exists");
    remove(out);
    CHECK_ERR(loupe_checkpoint_convert("/no/such.bin", out), LOUPE_ERROR_NOT_FOUND, "/no/such.bin");
  }
}

static void test_free_runtime_with_jobs_in_flight(void) {
  loupe_runtime_options ro = LOUPE_RUNTIME_OPTIONS_INIT;
  loupe_runtime *rt = NULL;
  loupe_job *jobs[3];
  loupe_request *rq;
  int i;
  ro.device = "cpu";
  CHECK(loupe_runtime_create(&rt, &ro) == LOUPE_OK);
  rq = small_selftest(100000);
  for (i = 0; i < 3; ++i) CHECK(loupe_runtime_submit(&jobs[i], rt, rq, NULL, NULL) == LOUPE_OK);
  loupe_runtime_free(rt);
  for (i = 0; i < 3; ++i) {
    CHECK(loupe_job_wait(jobs[i], 0) == LOUPE_OK);
    CHECK(loupe_job_status(jobs[i]) == LOUPE_ERROR_CANCELLED);
    loupe_job_free(jobs[i]);
  }
  loupe_request_free(rq);
}

int main(void) {
  loupe_runtime_options ro = LOUPE_RUNTIME_OPTIONS_INIT;
  loupe_runtime *rt = NULL;
  ro.device = "cpu";
  ro.log_fn = on_log;
  ro.log_level = LOUPE_LOG_DEBUG;
  test_version_and_status();
  test_free_null();
  test_old_struct_size();
  test_task_table();
  CHECK(loupe_runtime_create(&rt, &ro) == LOUPE_OK);
  test_bad_arguments(rt);
  test_jobs(rt);
  test_diagnostics(rt);
  test_session(rt);
  loupe_runtime_free(rt);
  test_free_runtime_with_jobs_in_flight();
  printf("%d checks, %d failed\n", checks, failures);
  return failures == 0 ? 0 : 1;
}
