/*
 * Loupe: vision-language and image-generation models for editors, hosts and engines.
 *
 * This is the only public header of libloupe. It is plain C99 (and valid C++); no C++ type,
 * exception or STL object crosses it.
 *
 * Conventions (read these once):
 *  - Every function returns a loupe_status (0 = LOUPE_OK, negative = error class) unless it is an
 *    accessor documented otherwise. On error, out-parameters are left untouched and a message that
 *    names the file, tensor, argument or shape involved, with a hint, can be read with
 *    loupe_last_error() on the same thread.
 *  - Handles are opaque. Each has a create/open and a free/close; every free/close accepts NULL.
 *  - Inputs are borrowed for the duration of the call (the SDK copies what it keeps). Results are
 *    owned by the caller and freed with the matching free. Pointers read from a result (strings,
 *    pixel data, point arrays) live as long as that result.
 *  - Option and info structs start with `uint32_t struct_size` and are initialised with their
 *    LOUPE_*_INIT macro or, from languages without C macros (bindings), their loupe_*_init function.
 *    The SDK reads or writes only the first struct_size bytes, so a program compiled against an
 *    older header keeps working: fields are only ever appended.
 *  - Tasks and their parameters are described by the library (loupe_task_count, loupe_task_describe,
 *    loupe_task_param, loupe_tasks_json): build forms, command lines and bindings from them.
 *
 * Threading:
 *  - loupe_runtime: thread-safe. Create and free it on any thread; free it once, after you are done
 *    with every other call on it. Freeing cancels jobs still queued or running, waits for the
 *    running one to stop (between steps), and makes handles still open report LOUPE_ERROR_INVALID_STATE.
 *  - loupe_session: thread-safe; jobs on one runtime run one at a time in submission order on the
 *    runtime's worker thread (the GPU is used by one job at a time).
 *  - loupe_request: not thread-safe; build it on one thread. submit copies it, so it may be
 *    changed or freed right after submit returns.
 *  - loupe_job: thread-safe. loupe_job_cancel may be called from any thread, also from a progress
 *    callback. Callbacks (progress, log) run on the runtime's worker thread: keep them short and do
 *    not call loupe_job_wait/loupe_job_free/loupe_runtime_free from inside them.
 *  - loupe_result: immutable, may be read from any thread.
 *  - loupe_last_error(): per thread.
 */
#ifndef LOUPE_LOUPE_H
#define LOUPE_LOUPE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#  if defined(LOUPE_BUILDING_SHARED)
#    define LOUPE_API __declspec(dllexport)
#  else
#    define LOUPE_API __declspec(dllimport)
#  endif
#else
#  define LOUPE_API __attribute__((visibility("default")))
#endif

/* ---------------------------------------------------------------- handles */
typedef struct loupe_runtime loupe_runtime; /* devices, memory budget, job worker, log */
typedef struct loupe_session loupe_session; /* one loaded model */
typedef struct loupe_request loupe_request; /* a task with its inputs and parameters */
typedef struct loupe_job loupe_job;         /* a submitted request: progress, cancel, result */
typedef struct loupe_result loupe_result;   /* what a finished job produced */

/* ---------------------------------------------------------------- version */
#define LOUPE_VERSION_MAJOR 0
#define LOUPE_VERSION_MINOR 3
#define LOUPE_VERSION_PATCH 0
#define LOUPE_VERSION_NUMBER (LOUPE_VERSION_MAJOR * 10000 + LOUPE_VERSION_MINOR * 100 + LOUPE_VERSION_PATCH)

/** "MAJOR.MINOR.PATCH" of the library actually loaded (may differ from the header's macros). */
LOUPE_API const char *loupe_version(void);
/** MAJOR*10000 + MINOR*100 + PATCH of the library actually loaded. */
LOUPE_API uint32_t loupe_version_number(void);

/* ---------------------------------------------------------------- status */
typedef enum loupe_status {
  LOUPE_OK = 0,
  LOUPE_ERROR_INVALID_ARGUMENT = -1, /* NULL handle, bad size, unknown task or parameter value */
  LOUPE_ERROR_NOT_FOUND = -2,        /* a file, folder, tensor or result item that is not there */
  LOUPE_ERROR_BAD_MODEL = -3,        /* a model file that is malformed or inconsistent */
  LOUPE_ERROR_UNSUPPORTED = -4,      /* valid, but not supported by this build or device */
  LOUPE_ERROR_OUT_OF_MEMORY = -5,    /* device or host memory exhausted; the runtime stays usable */
  LOUPE_ERROR_CANCELLED = -6,        /* the job was cancelled (loupe_job_cancel or progress returned 0) */
  LOUPE_ERROR_TIMEOUT = -7,          /* loupe_job_wait: the job has not finished yet */
  LOUPE_ERROR_INVALID_STATE = -8,    /* e.g. result already taken, runtime already freed */
  LOUPE_ERROR_INTERNAL = -9          /* a bug: please report with loupe_runtime_diagnostics() */
} loupe_status;

/** The message of the last error on this thread ("" if none). Valid until the next failing call
 *  on this thread. */
LOUPE_API const char *loupe_last_error(void);
/** A constant name for a status, e.g. "LOUPE_ERROR_BAD_MODEL". */
LOUPE_API const char *loupe_status_name(loupe_status status);
/** Frees a string the SDK handed over (loupe_runtime_diagnostics, loupe_model_inspect). NULL is ok. */
LOUPE_API void loupe_string_free(char *s);

/* ---------------------------------------------------------------- images */
typedef enum loupe_pixel_format {
  LOUPE_RGBA8 = 1, /* 4 bytes per pixel, R G B A */
  LOUPE_RGB8 = 2,  /* 3 bytes per pixel */
  LOUPE_GRAY8 = 3  /* 1 byte per pixel; masks: 255 = repaint / selected */
} loupe_pixel_format;

/** A borrowed or result-owned image. stride = bytes from one row to the next (>= width * bpp). */
typedef struct loupe_image {
  int32_t width;
  int32_t height;
  int32_t stride;
  loupe_pixel_format format;
  const uint8_t *data;
} loupe_image;

/* ---------------------------------------------------------------- logging */
typedef enum loupe_log_level {
  LOUPE_LOG_DEBUG = 0,
  LOUPE_LOG_INFO = 1,
  LOUPE_LOG_WARNING = 2,
  LOUPE_LOG_ERROR = 3
} loupe_log_level;

/** Called for each log record at or above the runtime's level, from the thread that logs. */
typedef void (*loupe_log_fn)(void *user, loupe_log_level level, const char *message);

/* ---------------------------------------------------------------- runtime */
typedef enum loupe_precision {
  LOUPE_PRECISION_AUTO = 0, /* CUDA: fp16 (bf16 where the model needs it). CPU: bf16 for diffusion models where the
                               * processor has AVX512-BF16 or AMX, else fp32 */
  LOUPE_PRECISION_FP32 = 1,
  LOUPE_PRECISION_FP16 = 2,
  LOUPE_PRECISION_BF16 = 3
} loupe_precision;

typedef struct loupe_runtime_options {
  uint32_t struct_size;
  const char *device;          /* "auto" (CUDA if present, else CPU), "cpu", "cuda", "cuda:N". NULL = auto */
  loupe_precision precision;   /* default precision of sessions */
  uint64_t vram_budget_bytes;  /* weights kept on the device at most; 0 = the device's memory */
  const char *models_dir;      /* relative session paths are resolved against it; NULL = none */
  loupe_log_fn log_fn;         /* NULL = no callback (records are still kept for diagnostics) */
  void *log_user;
  loupe_log_level log_level;   /* minimum level passed to log_fn */
  /* Appended field (programs built against an older header get 0): CPU threads for inference (the process-wide intra-op pool and the BLAS).
   * 0 = the environment variable LOUPE_NUM_THREADS if set, else every physical core. */
  int32_t num_threads;
} loupe_runtime_options;

#define LOUPE_RUNTIME_OPTIONS_INIT \
  { (uint32_t)sizeof(loupe_runtime_options), NULL, LOUPE_PRECISION_AUTO, 0, NULL, NULL, NULL, LOUPE_LOG_INFO, 0 }

/** Creates a runtime. options may be NULL (defaults). */
LOUPE_API loupe_status loupe_runtime_create(loupe_runtime **out, const loupe_runtime_options *options);
/** Cancels the runtime's jobs, waits for the running one to stop, releases all device memory. */
LOUPE_API void loupe_runtime_free(loupe_runtime *runtime);
/** The device jobs run on, e.g. "cpu" or "cuda:0". Lives as long as the runtime. */
LOUPE_API const char *loupe_runtime_device(const loupe_runtime *runtime);
/** JSON: build (versions, CUDA archs), devices (name, capability, memory, driver), cpu (model,
 *  logical/physical cores, instruction sets incl. AVX2/AVX-512/AVX512-BF16/AMX, the BLAS library in
 *  use, threads), sessions and
 *  their memory, recent log records, and problems (each {id, severity, message, remedy}).
 *  Free *out_json with loupe_string_free. */
LOUPE_API loupe_status loupe_runtime_diagnostics(loupe_runtime *runtime, char **out_json);
/** Adds a log record (used by hosts to put their own events into the same log). */
LOUPE_API loupe_status loupe_runtime_log(loupe_runtime *runtime, loupe_log_level level, const char *message);

/** Checks a model folder without loading it: JSON {path, family, variant, tasks, files, bytes,
 *  problems: [{severity, message, remedy}]}. Works for missing or broken folders (problems say why).
 *  runtime may be NULL. Free *out_json with loupe_string_free. */
LOUPE_API loupe_status loupe_model_inspect(loupe_runtime *runtime, const char *path, char **out_json);

/** Converts a checkpoint (pytorch_model.bin, sharded or single .safetensors, or a folder holding
 *  one) into one .safetensors file, tensors and dtypes unchanged. The pickle reader runs no code.
 *  Fails (and writes nothing) if out_path exists. */
LOUPE_API loupe_status loupe_checkpoint_convert(const char *in_path, const char *out_path);

/* ---------------------------------------------------------------- sessions */
typedef struct loupe_session_options {
  uint32_t struct_size;
  const char *device;        /* NULL = the runtime's device */
  loupe_precision precision; /* AUTO = the runtime's precision */
} loupe_session_options;

#define LOUPE_SESSION_OPTIONS_INIT { (uint32_t)sizeof(loupe_session_options), NULL, LOUPE_PRECISION_AUTO }

typedef struct loupe_session_info {
  uint32_t struct_size;     /* set by the caller (LOUPE_SESSION_INFO_INIT) */
  const char *family;       /* "florence2", "stable-diffusion", ... */
  const char *variant;      /* e.g. "sd15", "sd15-inpainting", "florence2-base" */
  const char *tasks;        /* comma-separated task names, e.g. "caption,detect,ocr" */
  const char *device;       /* where the weights live when resident, e.g. "cuda:0" */
  const char *dtype;        /* "float32", "float16", "bfloat16" */
  const char *path;         /* the model folder or file */
  uint64_t bytes;           /* size of the weights */
  int32_t resident;         /* 1 = weights on the device now, 0 = offloaded to host memory */
} loupe_session_info;

#define LOUPE_SESSION_INFO_INIT { (uint32_t)sizeof(loupe_session_info), NULL, NULL, NULL, NULL, NULL, NULL, 0, 0 }

/* The INIT macros as functions (as libgit2's *_options_init), for bindings: fill the first
 * struct_size bytes of *out with the defaults and set out->struct_size. struct_size is the size the
 * caller's layout has (sizeof in C); LOUPE_ERROR_INVALID_ARGUMENT if it is larger than this
 * library's struct (a layout from a newer header) or too small to hold struct_size. */
LOUPE_API loupe_status loupe_runtime_options_init(loupe_runtime_options *out, uint32_t struct_size);
LOUPE_API loupe_status loupe_session_options_init(loupe_session_options *out, uint32_t struct_size);
LOUPE_API loupe_status loupe_session_info_init(loupe_session_info *out, uint32_t struct_size);

/** Opens a model folder (Hugging Face layout) or single-file checkpoint. Relative paths are
 *  resolved against the runtime's models_dir, then the working directory. options may be NULL.
 *  If the weights would exceed the VRAM budget, idle sessions used least recently are moved to
 *  host memory first. */
LOUPE_API loupe_status loupe_session_open(loupe_session **out, loupe_runtime *runtime, const char *path,
                                          const loupe_session_options *options);
/** Waits for this session's jobs to stop (cancelling them) and frees its memory. */
LOUPE_API void loupe_session_close(loupe_session *session);
/** Fills *info (strings live as long as the session). */
LOUPE_API loupe_status loupe_session_describe(loupe_session *session, loupe_session_info *info);
/** Applies a LoRA file with a weight (0 = remove), without reloading the base model. */
LOUPE_API loupe_status loupe_session_set_lora(loupe_session *session, const char *path, float weight);
/** Uses an external VAE for this (Stable Diffusion) session: one .safetensors/.ckpt file holding
 *  only the VAE in the original layout ("encoder.*", "decoder.*", "quant_conv.*",
 *  "post_quant_conv.*", as web UIs keep them in models/VAE) or in diffusers' names, or a diffusers
 *  vae/ folder. path NULL (or "") restores the checkpoint's own VAE. path is borrowed for the call
 *  and used as given (not resolved against models_dir). Thread-safe: a running job of the session
 *  finishes first; later jobs use the new VAE. On error (NOT_FOUND, BAD_MODEL naming the file,
 *  tensor and shapes; UNSUPPORTED for families without a VAE) the session keeps its VAE. */
LOUPE_API loupe_status loupe_session_set_vae(loupe_session *session, const char *path);

/* ---------------------------------------------------------------- requests */
/** A request for a task of the library's table (see "task descriptions": loupe_task_count(NULL)
 *  and loupe_task_describe list them, with their parameters). Which ones a session offers:
 *  loupe_task_count(session) and loupe_task_describe, or loupe_session_info.tasks. An unknown task
 *  is LOUPE_ERROR_INVALID_ARGUMENT listing the known ones. */
LOUPE_API loupe_status loupe_request_create(loupe_request **out, const char *task);
LOUPE_API void loupe_request_free(loupe_request *request);
/** Sets the (first) input image; replaces all images set before. The pixels are copied. */
LOUPE_API loupe_status loupe_request_set_image(loupe_request *request, const loupe_image *image);
/** Appends one more input image (a batch of images in one job). */
LOUPE_API loupe_status loupe_request_add_image(loupe_request *request, const loupe_image *image);
/** Sets the mask (GRAY8, same size as the image, 255 = repaint). Copied. */
LOUPE_API loupe_status loupe_request_set_mask(loupe_request *request, const loupe_image *mask);
/** Parameters, named and typed as the task's description says (loupe_task_param). The text input:
 *  its text_key ("prompt", "text", "question"; "text" and "prompt" are accepted for one another).
 *  String and choice parameters: "negative_prompt", "sampler", ... value NULL removes it. */
LOUPE_API loupe_status loupe_request_set_string(loupe_request *request, const char *key, const char *value);
/** Integer parameters: "seed", "steps", "width", "height", "max_new_tokens", "num_beams", ... */
LOUPE_API loupe_status loupe_request_set_int(loupe_request *request, const char *key, int64_t value);
/** Real parameters: "guidance_scale", "strength", "mask_blur", ... */
LOUPE_API loupe_status loupe_request_set_float(loupe_request *request, const char *key, double value);
/** A region input in image pixels (region tasks). */
LOUPE_API loupe_status loupe_request_set_region(loupe_request *request, float x0, float y0, float x1, float y1);

/* ---------------------------------------------------------------- task descriptions */
/* One table inside libloupe describes every task: its inputs, its parameters (type, default, range
 * or choices, unit, one-line help) and its outputs. A session offers some of the tasks, with
 * defaults fitted to its model (e.g. its native image size, its generation settings). Hosts build
 * their task lists and forms from this description, so a task or parameter added to the library
 * appears in them without host code. Requests are checked against it at submit: unknown
 * parameters, wrong types, values out of range or not among the choices, and missing required
 * inputs are LOUPE_ERROR_INVALID_ARGUMENT naming the task, the key and what is accepted; parameters
 * not set take the session's defaults. "text" and "prompt" both name a task's text input.
 *
 * In the functions below, session NULL means the whole table with the library's generic defaults
 * (also the runtime tasks "selftest" and "download"); otherwise the tasks the session offers.
 * Strings read from the structs live as long as the session (session NULL: as long as the library
 * is loaded). Thread-safe. */
typedef enum loupe_param_type {
  LOUPE_PARAM_INT = 1,    /* loupe_request_set_int; min, max, step */
  LOUPE_PARAM_FLOAT = 2,  /* loupe_request_set_float; min, max, step (0 = any) */
  LOUPE_PARAM_STRING = 3, /* loupe_request_set_string */
  LOUPE_PARAM_BOOL = 4,   /* loupe_request_set_int with 0 or 1 */
  LOUPE_PARAM_CHOICE = 5  /* loupe_request_set_string with one of choices */
} loupe_param_type;

/* Inputs (bits of loupe_task_info.inputs and .required). */
#define LOUPE_INPUT_IMAGE 0x1u    /* loupe_request_set_image */
#define LOUPE_INPUT_MASK 0x2u     /* loupe_request_set_mask */
#define LOUPE_INPUT_TEXT 0x4u     /* a text: the string parameter text_key */
#define LOUPE_INPUT_REGION 0x8u   /* loupe_request_set_region */
#define LOUPE_INPUT_QUESTION 0x10u /* a question about the image: the string parameter text_key */
/* Outputs (bits of loupe_task_info.outputs). */
#define LOUPE_OUTPUT_TEXT 0x1u     /* loupe_result_text */
#define LOUPE_OUTPUT_BOXES 0x2u    /* loupe_result_get_box */
#define LOUPE_OUTPUT_POLYGONS 0x4u /* loupe_result_get_polygon */
#define LOUPE_OUTPUT_MASKS 0x8u    /* loupe_result_image: GRAY8 masks */
#define LOUPE_OUTPUT_IMAGES 0x10u  /* loupe_result_image */
#define LOUPE_OUTPUT_NUMBERS 0x20u /* loupe_result_number */

typedef struct loupe_task_info {
  uint32_t struct_size;
  const char *name;       /* the name for loupe_request_create, e.g. "caption" */
  const char *label;      /* for a menu: "Caption" */
  const char *help;       /* one line */
  const char *group;      /* "describe", "find", "read", "generate", "edit", "runtime" */
  uint32_t inputs;        /* LOUPE_INPUT_* bits it uses */
  uint32_t required;      /* LOUPE_INPUT_* bits it cannot run without */
  uint32_t outputs;       /* LOUPE_OUTPUT_* bits */
  const char *text_key;   /* the string parameter of its text input ("prompt", "text", "question"); "" = none */
  const char *text_label; /* e.g. "prompt", "caption", "question" */
  const char *text_help;
  int32_t runtime;        /* 1 = run with loupe_runtime_submit, not by a session */
  size_t param_count;     /* parameters, read with loupe_task_param (the text input is not one) */
} loupe_task_info;

#define LOUPE_TASK_INFO_INIT { (uint32_t)sizeof(loupe_task_info), NULL, NULL, NULL, NULL, 0, 0, 0, NULL, NULL, NULL, 0, 0 }

typedef struct loupe_param_info {
  uint32_t struct_size;
  const char *name;            /* the request key, e.g. "steps" */
  loupe_param_type type;
  const char *label;           /* for a form: "Steps" */
  const char *help;            /* one line */
  const char *unit;            /* "px", "steps", "tokens", ... or "" */
  double default_number;       /* INT, FLOAT, BOOL (0 or 1) */
  const char *default_string;  /* STRING, CHOICE; "" otherwise */
  double min, max, step;       /* INT, FLOAT */
  size_t choice_count;         /* CHOICE: the values allowed; INT: suggested values a host may offer as
                                  presets (any value in range is accepted); on "width" of an image
                                  task, sizes "WIDTHxHEIGHT" that set "height" too (e.g. SDXL's
                                  1024x1024, 1152x896, ...); 0 = none */
  const char *const *choices;  /* choice_count strings */
  int32_t advanced;            /* 1 = a host may fold it away */
} loupe_param_info;

#define LOUPE_PARAM_INFO_INIT { (uint32_t)sizeof(loupe_param_info), NULL, LOUPE_PARAM_INT, NULL, NULL, NULL, 0, NULL, 0, 0, 0, 0, NULL, 0 }

LOUPE_API loupe_status loupe_task_info_init(loupe_task_info *out, uint32_t struct_size);
LOUPE_API loupe_status loupe_param_info_init(loupe_param_info *out, uint32_t struct_size);

/** How many tasks the session offers (session NULL: the whole table). 0 for a closed session. */
LOUPE_API size_t loupe_task_count(loupe_session *session);
/** The task at index (0 .. loupe_task_count - 1). */
LOUPE_API loupe_status loupe_task_describe(loupe_session *session, size_t index, loupe_task_info *out);
/** The index of a task by name; LOUPE_ERROR_NOT_FOUND (naming the tasks offered) if not offered. */
LOUPE_API loupe_status loupe_task_find(loupe_session *session, const char *name, size_t *out_index);
/** The parameter at param_index (0 .. param_count - 1) of the task at task_index. */
LOUPE_API loupe_status loupe_task_param(loupe_session *session, size_t task_index, size_t param_index,
                                        loupe_param_info *out);
/** The same description as JSON: [{name, label, help, group, runtime, inputs: ["image", ...],
 *  required: [...], outputs: [...], text: {key, label, help} (when it takes a text), params: [{name,
 *  type ("int", "float", "string", "bool", "choice"), label, help, unit, advanced, default, min, max,
 *  step, choices}]}]. Free *out_json with loupe_string_free. */
LOUPE_API loupe_status loupe_tasks_json(loupe_session *session, char **out_json);

/* ---------------------------------------------------------------- jobs */
typedef enum loupe_job_state {
  LOUPE_JOB_QUEUED = 0,
  LOUPE_JOB_RUNNING = 1,
  LOUPE_JOB_DONE = 2 /* finished: succeeded, failed or cancelled (see loupe_job_status) */
} loupe_job_state;

typedef struct loupe_progress {
  uint32_t struct_size;
  int32_t step;               /* steps done so far */
  int32_t total;              /* total steps (0 = unknown) */
  const char *stage;          /* e.g. "load", "encode", "denoise", "decode", "generate" */
  const loupe_image *preview; /* optional live preview (RGB8); valid only during the callback */
  /* Appended in 0.3: text-generating tasks (caption, vqa, ocr, ... of PaliGemma): the output text so
   * far (UTF-8), NULL for other tasks and stages; valid only during the callback. The library sets
   * struct_size; read this field only when struct_size > offsetof(loupe_progress, text). */
  const char *text;
} loupe_progress;

/** Progress callback: return nonzero to go on, 0 to stop the job (like loupe_job_cancel). */
typedef int (*loupe_progress_fn)(void *user, const loupe_progress *progress);

/** Queues a job and returns at once. The request is copied. progress may be NULL. */
LOUPE_API loupe_status loupe_session_submit(loupe_job **out, loupe_session *session, const loupe_request *request,
                                            loupe_progress_fn progress, void *user);
/** Queues a runtime-level job (task "selftest": allocate, known matmul, verify, measure; task
 *  "download": see "discovery and downloads" below). */
LOUPE_API loupe_status loupe_runtime_submit(loupe_job **out, loupe_runtime *runtime, const loupe_request *request,
                                            loupe_progress_fn progress, void *user);
/** Edit by words: queues a job of task "edit" that takes two sessions of `runtime`: `finder`
 *  finds the target (a session offering "segment", else "open_vocabulary_detect" or "ground":
 *  Florence-2) and `painter` repaints it (a session offering "inpaint": Stable Diffusion).
 *  The request (loupe_request_create(&rq, "edit")): the image; "target" (string, required): what to
 *  change, e.g. "the red car"; "prompt": what it becomes, e.g. "a blue bicycle", or "" (the default)
 *  to remove it (the area is filled from its surroundings); the other parameters are in the task's
 *  description (grow, feather, steps, strength, seed, ...; loupe_task_find(NULL, "edit", ...)).
 *  The chain:
 *   1. find: the finder runs "segment" with the target (find_with "auto"; "boxes": its boxes);
 *   2. mask: a pixel is in the found mask when its centre (x + 0.5, y + 0.5) lies inside an outline
 *      found (even-odd rule) or a box found (x0 <= cx < x1, y0 <= cy < y1); the mask is then grown
 *      by "grow" px (every pixel whose centre is at most grow px from a found pixel's centre);
 *      nothing found is LOUPE_ERROR_NOT_FOUND: "no 'the red car' found in the image ...";
 *   3. paint: the painter inpaints the image under that mask with the inpaint task's settings; the
 *      result is blended inwards over "feather" px from the mask's edge, and every pixel outside the
 *      mask keeps its exact value.
 *  A mask set on the request (GRAY8, 255 = repaint; e.g. the found mask adjusted by hand) replaces
 *  steps 1-2 (it is used as given, not grown; finder may then be NULL). paint = 0 stops after step 2
 *  (painter may then be NULL): check or adjust the mask, then submit again with it.
 *  Result: images: the edited image (RGB8; RGBA8 when the input was RGBA8, its alpha kept) unless
 *  paint = 0, then the mask (GRAY8, 0 or 255) as the last image; boxes: a box around each object found
 *  (label = the target); polygons: the outlines found (segmentation); numbers "regions",
 *  "mask_pixels" and the painter's ("seed", "steps"); strings "found_by" (the finder's task, or
 *  "mask") and "mode" ("replace" or "remove").
 *  Progress: stages "find", "find: <the finder's stage>", "mask", "paint", "paint: <the painter's
 *  stage>"; step and total count within the stage. loupe_job_cancel stops it in any stage.
 *  Errors at submit: LOUPE_ERROR_INVALID_ARGUMENT for a NULL finder (without a mask) or painter (with
 *  paint = 1), a finder that can neither segment nor ground, a painter that cannot inpaint (each
 *  naming the session and the tasks it offers), sessions of another runtime, a request of another
 *  task or with a bad parameter. */
LOUPE_API loupe_status loupe_edit_submit(loupe_job **out, loupe_runtime *runtime, loupe_session *finder,
                                         loupe_session *painter, const loupe_request *request,
                                         loupe_progress_fn progress, void *user);
/** Waits until the job is done. timeout_ms < 0 waits forever. LOUPE_OK when done,
 *  LOUPE_ERROR_TIMEOUT if it is still queued or running. */
LOUPE_API loupe_status loupe_job_wait(loupe_job *job, int64_t timeout_ms);
/** State and progress fraction (0..1) without waiting; either out-pointer may be NULL. */
LOUPE_API loupe_status loupe_job_poll(loupe_job *job, loupe_job_state *state, float *fraction);
/** Asks the job to stop; takes effect between steps. Any thread. Idempotent. */
LOUPE_API loupe_status loupe_job_cancel(loupe_job *job);
/** The job's final status (LOUPE_ERROR_TIMEOUT while not done); on error also sets loupe_last_error()
 *  to the job's message. */
LOUPE_API loupe_status loupe_job_status(loupe_job *job);
/** Moves the result out of a finished job (once). Returns the job's status if it failed. */
LOUPE_API loupe_status loupe_job_take_result(loupe_result **out, loupe_job *job);
/** Frees the job; a job still running is cancelled and waited for. */
LOUPE_API void loupe_job_free(loupe_job *job);

/* ---------------------------------------------------------------- results */
/* What a box or polygon of a result is. */
typedef enum loupe_shape_kind {
  LOUPE_SHAPE_BOX = 1,     /* an axis-aligned box */
  LOUPE_SHAPE_QUAD = 2,    /* four corners, clockwise from top-left (OCR lines) */
  LOUPE_SHAPE_POLYGON = 3  /* an outline of any number of points (segmentation) */
} loupe_shape_kind;

typedef struct loupe_box {
  uint32_t struct_size;  /* set by the caller (LOUPE_BOX_INIT / loupe_box_init) */
  loupe_shape_kind kind; /* LOUPE_SHAPE_BOX */
  float x0, y0, x1, y1;  /* image pixels, x1/y1 exclusive */
  float score;           /* 1 when the model gives none */
  const char *label;     /* "" when none */
} loupe_box;

#define LOUPE_BOX_INIT { (uint32_t)sizeof(loupe_box), LOUPE_SHAPE_BOX, 0, 0, 0, 0, 0, NULL }

typedef struct loupe_polygon {
  uint32_t struct_size;  /* set by the caller (LOUPE_POLYGON_INIT / loupe_polygon_init) */
  loupe_shape_kind kind; /* LOUPE_SHAPE_QUAD or LOUPE_SHAPE_POLYGON */
  const float *points;   /* x0, y0, x1, y1, ... in image pixels */
  size_t point_count;    /* number of points (the array has 2 * point_count floats) */
  const char *label;     /* "" when none; OCR regions: the text */
  int32_t group;         /* polygons of one object (segmentation) share a group index */
} loupe_polygon;

#define LOUPE_POLYGON_INIT { (uint32_t)sizeof(loupe_polygon), LOUPE_SHAPE_POLYGON, NULL, 0, NULL, 0 }

LOUPE_API loupe_status loupe_box_init(loupe_box *out, uint32_t struct_size);
LOUPE_API loupe_status loupe_polygon_init(loupe_polygon *out, uint32_t struct_size);

LOUPE_API void loupe_result_free(loupe_result *result);
/** The task that made it. */
LOUPE_API const char *loupe_result_task(const loupe_result *result);
/** The whole result as JSON (boxes, polygons, text, numbers; images as their sizes). */
LOUPE_API const char *loupe_result_json(const loupe_result *result);
/** The text output ("" if none): captions, OCR text, VQA answers. */
LOUPE_API const char *loupe_result_text(const loupe_result *result);
LOUPE_API size_t loupe_result_box_count(const loupe_result *result);
/** Box index; out->struct_size says how much of *out to fill. */
LOUPE_API loupe_status loupe_result_get_box(const loupe_result *result, size_t index, loupe_box *out);
LOUPE_API size_t loupe_result_polygon_count(const loupe_result *result);
/** Polygon index; out->struct_size says how much of *out to fill. */
LOUPE_API loupe_status loupe_result_get_polygon(const loupe_result *result, size_t index, loupe_polygon *out);
LOUPE_API size_t loupe_result_image_count(const loupe_result *result);
LOUPE_API loupe_status loupe_result_image(const loupe_result *result, size_t index, loupe_image *out);
/** A named number of the result (e.g. selftest "matmul_tflops"); LOUPE_ERROR_NOT_FOUND if absent. */
LOUPE_API loupe_status loupe_result_number(const loupe_result *result, const char *key, double *out);

/* The 0.1 forms of boxes and polygons (fixed layouts, no kind), kept so that programs built against
 * libloupe 0.1 run unchanged. New code: loupe_result_get_box / loupe_result_get_polygon. */
typedef struct loupe_box_v0 {
  float x0, y0, x1, y1;
  float score;
  const char *label;
} loupe_box_v0;
typedef struct loupe_polygon_v0 {
  const float *points;
  size_t point_count;
  const char *label;
  int32_t group;
} loupe_polygon_v0;
LOUPE_API loupe_status loupe_result_box(const loupe_result *result, size_t index, loupe_box_v0 *out);
LOUPE_API loupe_status loupe_result_polygon(const loupe_result *result, size_t index, loupe_polygon_v0 *out);

/* ---------------------------------------------------------------- discovery and downloads */
/* Models people already have are found without loading weights (safetensors headers and config
 * files only), and catalog models are downloaded from a Hugging Face-style hub.
 *
 * Where discovery looks: the Hugging Face cache (HF_HUB_CACHE, else HF_HOME/hub, else
 * ~/.cache/huggingface/hub: models--ORG--NAME/snapshots/REV), the runtime's models_dir, web UIs in
 * the home folder (~/stable-diffusion-webui, ~/stable-diffusion-webui-forge, ~/ComfyUI), and the
 * folders given. A folder given may be a web UI's folder or its models folder (A1111/Forge:
 * Stable-diffusion, Lora, VAE; ComfyUI: checkpoints, diffusion_models, unet, loras, vae,
 * text_encoders, clip) or any folder of model folders and files. */
typedef struct loupe_scan_options {
  uint32_t struct_size;
  const char *const *dirs;        /* extra folders to scan (dir_count of them); borrowed for the call */
  size_t dir_count;
  int32_t skip_default_locations; /* 1 = not the Hugging Face cache and not the web UIs in the home folder */
  const char *catalog_path;       /* a catalog file to match against; NULL = the catalog built into libloupe */
  /* 0.3: the models folder to scan and to judge catalog entries against (state, path); NULL = the
   * runtime's models_dir (none without a runtime). Lets a host list a folder the person is choosing. */
  const char *models_dir;
} loupe_scan_options;

#define LOUPE_SCAN_OPTIONS_INIT { (uint32_t)sizeof(loupe_scan_options), NULL, 0, 0, NULL, NULL }

LOUPE_API loupe_status loupe_scan_options_init(loupe_scan_options *out, uint32_t struct_size);

/** Finds models on disk without loading them. JSON:
 *  {roots: [{path, source, exists}],
 *   models: [{path, name, source ("hf-cache", "a1111", "comfyui", "models_dir", "folder"),
 *             kind ("model", "lora", "vae", "text_encoder", "unet", "embedding", "partial", "unknown"),
 *             family, variant, base ("sd15", "sd2", "sd", "sdxl", "flux", "sd3" or ""), tasks: [..],
 *             format ("folder", "safetensors", "ckpt", ...), bytes, precision ("fp16", "fp32", "bf16",
 *             ...; the dtype holding most bytes), dtypes: {precision: bytes}, supported (Loupe can use
 *             it), repo + revision (Hugging Face cache), catalog_id (when it is a catalog entry),
 *             problems: [{severity, message, remedy}]}],
 *   catalog: [{id, name, family, family_name, repo, folder, license, size_bytes,
 *              vram_bytes: {fp32, fp16, bf16: memory to run it}, tasks: [..], files: [..],
 *              found: [path], state ("installed", "incomplete", "missing"), path (where it is, or
 *              where the runtime's models_dir would hold it), missing_files: [..]}]}.
 *  A catalog entry is "installed" when its folder in the runtime's models_dir holds every file it
 *  needs, or when a whole copy was found elsewhere (path then names it).
 *  Problems name missing files (links into the cache's blobs that are gone), unfinished downloads,
 *  damaged files, and LoRAs, VAEs or checkpoints made for a model Loupe does not run (e.g. an SDXL
 *  LoRA). runtime may be NULL (then its models_dir is not scanned); options may be NULL (defaults).
 *  Unreadable files are reported as problems, not errors. Thread-safe. Free *out_json with
 *  loupe_string_free. */
LOUPE_API loupe_status loupe_models_scan(loupe_runtime *runtime, const loupe_scan_options *options, char **out_json);

/* Downloads: loupe_runtime_submit with a request of task "download" and string parameters
 *   "catalog_id"  an entry of the catalog (e.g. "florence2-base"): its repo, revision, files, sha256;
 *   or "repo" + "files": a repo id ("ORG/NAME") and comma-separated paths in it;
 *   "revision"    branch, tag or commit (default: the catalog's, else "main");
 *   "dest"        the folder to download into (default: the runtime's models_dir / the entry's
 *                 folder, or / the repo's name);
 *   "endpoint"    the hub's URL (default HF_ENDPOINT, else https://huggingface.co); files come from
 *                 {endpoint}/{repo}/resolve/{revision}/{file};
 *   "catalog"     a catalog file instead of the built-in one.
 * The token for gated or private repos is HF_TOKEN, else the token file (HF_TOKEN_PATH, else
 * HF_HOME/token), sent as "Authorization: Bearer". HF_HUB_OFFLINE=1 or LOUPE_OFFLINE=1 makes
 * submit fail with LOUPE_ERROR_UNSUPPORTED. Each file is written to "<file>.part", resumed from
 * there (HTTP Range) after a dropped connection or a cancelled job, checked against the catalog's
 * sha256 (else the LFS sha256 the hub sends as X-Linked-Etag / ETag), and renamed to its name only
 * when complete; a checksum mismatch deletes the .part (LOUPE_ERROR_BAD_MODEL). Files already in
 * dest are kept. 404, 401/403 and network failures are LOUPE_ERROR_NOT_FOUND with the URL and what
 * to do. Progress: step/total in KiB, stage "resolve" then "download <file>"; loupe_job_cancel
 * stops it between chunks. Downloads run on a thread of their own, not in the device's job queue.
 * Result: text = the destination folder; numbers "files", "fetched", "verified", "bytes",
 * "bytes_downloaded"; JSON strings path, repo, revision. */

#ifdef __cplusplus
}
#endif
#endif /* LOUPE_LOUPE_H */
