// The C entry points: argument checks, exception -> status, handle tables. Nothing below this
// file knows about C; nothing above it sees torch.
#include <cmath>
#include <cstring>
#include <string>
#include <type_traits>

#include "loupe/loupe.h"
#include "core/discovery.h"
#include "core/runtime.h"
#include "core/tasks.h"
#include "core/torch_compat.h"
#include "io/convert.h"

using loupe::Error;
using loupe::Status;

// The handles. The public structs stay incomplete types (also in the debug info that the ABI
// baseline is made from): each is a reinterpret_cast of one of these.
namespace {
struct RuntimeH {
  std::shared_ptr<loupe::Runtime> rt;
};
// Task descriptions as the C structs read them: the tasks, and per parameter its choices as a
// const char* array. Immutable once built.
struct TaskTableC {
  std::vector<loupe::tasks::Task> tasks;
  std::vector<std::vector<std::vector<const char*>>> choices;  // [task][param][choice]
  explicit TaskTableC(std::vector<loupe::tasks::Task> t) : tasks(std::move(t)) {
    for (const auto& task : tasks) {
      choices.emplace_back();
      for (const auto& p : task.params) {
        choices.back().emplace_back();
        for (const auto& c : p.choices) choices.back().back().push_back(c.c_str());
      }
    }
  }
};
struct SessionH {
  std::shared_ptr<loupe::Session> s;
  std::string family, variant, tasks, device, dtype, path;  // storage for loupe_session_info
  std::shared_ptr<const TaskTableC> task_table;             // the tasks it offers (set at open)
};
struct RequestH {
  loupe::Request r;
};
struct JobH {
  std::shared_ptr<loupe::Job> j;
};
struct ResultH {
  std::unique_ptr<loupe::Result> r;
  std::string json;
};
RuntimeH* H(loupe_runtime* p) { return reinterpret_cast<RuntimeH*>(p); }
const RuntimeH* H(const loupe_runtime* p) { return reinterpret_cast<const RuntimeH*>(p); }
SessionH* H(loupe_session* p) { return reinterpret_cast<SessionH*>(p); }
RequestH* H(loupe_request* p) { return reinterpret_cast<RequestH*>(p); }
const RequestH* H(const loupe_request* p) { return reinterpret_cast<const RequestH*>(p); }
JobH* H(loupe_job* p) { return reinterpret_cast<JobH*>(p); }
const ResultH* H(const loupe_result* p) { return reinterpret_cast<const ResultH*>(p); }
ResultH* H(loupe_result* p) { return reinterpret_cast<ResultH*>(p); }
template <class C, class T>
C* to_c(T* p) { return reinterpret_cast<C*>(p); }
}  // namespace

static_assert(LOUPE_ERROR_INVALID_ARGUMENT == static_cast<int>(Status::InvalidArgument), "status mismatch");
static_assert(LOUPE_ERROR_NOT_FOUND == static_cast<int>(Status::NotFound), "status mismatch");
static_assert(LOUPE_ERROR_BAD_MODEL == static_cast<int>(Status::BadModel), "status mismatch");
static_assert(LOUPE_ERROR_UNSUPPORTED == static_cast<int>(Status::Unsupported), "status mismatch");
static_assert(LOUPE_ERROR_OUT_OF_MEMORY == static_cast<int>(Status::OutOfMemory), "status mismatch");
static_assert(LOUPE_ERROR_CANCELLED == static_cast<int>(Status::Cancelled), "status mismatch");
static_assert(LOUPE_ERROR_TIMEOUT == static_cast<int>(Status::Timeout), "status mismatch");
static_assert(LOUPE_ERROR_INVALID_STATE == static_cast<int>(Status::InvalidState), "status mismatch");
static_assert(LOUPE_ERROR_INTERNAL == static_cast<int>(Status::Internal), "status mismatch");
namespace lt = loupe::tasks;
static_assert(LOUPE_PARAM_INT == static_cast<int>(lt::ParamType::Int) && LOUPE_PARAM_FLOAT == static_cast<int>(lt::ParamType::Float) &&
                  LOUPE_PARAM_STRING == static_cast<int>(lt::ParamType::String) &&
                  LOUPE_PARAM_BOOL == static_cast<int>(lt::ParamType::Bool) &&
                  LOUPE_PARAM_CHOICE == static_cast<int>(lt::ParamType::Choice),
              "parameter type mismatch");
static_assert(LOUPE_INPUT_IMAGE == lt::kImage && LOUPE_INPUT_MASK == lt::kMask && LOUPE_INPUT_TEXT == lt::kText &&
                  LOUPE_INPUT_REGION == lt::kRegion && LOUPE_INPUT_QUESTION == lt::kQuestion,
              "input bits mismatch");
static_assert(LOUPE_OUTPUT_TEXT == lt::kTextOut && LOUPE_OUTPUT_BOXES == lt::kBoxes && LOUPE_OUTPUT_POLYGONS == lt::kPolygons &&
                  LOUPE_OUTPUT_MASKS == lt::kMasks && LOUPE_OUTPUT_IMAGES == lt::kImages && LOUPE_OUTPUT_NUMBERS == lt::kNumbers,
              "output bits mismatch");

namespace {

thread_local std::string g_last_error;

loupe_status fail(Status s, const std::string& message) {
  g_last_error = message;
  return static_cast<loupe_status>(s);
}

// Runs f; any exception becomes a status and the thread's last error.
template <class F>
loupe_status guarded(const char* fn, F&& f) {
  try {
    f();
    return LOUPE_OK;
  } catch (const Error& e) {
    // LOUPE_ARG and check_index inside the entry point's lambda see __func__ as "operator()".
    std::string m = e.what();
    if (m.rfind("operator(): ", 0) == 0) m = std::string(fn) + m.substr(10);
    return fail(e.status(), m);
  } catch (const std::bad_alloc&) {
    return fail(Status::OutOfMemory, std::string(fn) + ": out of host memory");
  } catch (const std::exception& e) {
    if (loupe::compat::is_out_of_memory(e)) {
      loupe::release_cached_device_memory();
      return fail(Status::OutOfMemory, std::string(fn) + ": out of device memory; hint: lower the resolution, "
                                                       "use fp16 or a smaller variant (" + e.what() + ")");
    }
    return fail(Status::Internal, std::string(fn) + ": internal error: " + e.what());
  } catch (...) {
    return fail(Status::Internal, std::string(fn) + ": internal error");
  }
}

#define LOUPE_ARG(cond, msg) \
  do { if (!(cond)) throw Error(Status::InvalidArgument, std::string(__func__) + ": " + (msg)); } while (0)

// Reads an option struct of any older (smaller) size: fields past struct_size keep their defaults.
template <class T>
T read_options(const T* in, const T& defaults, const char* fn) {
  T out = defaults;
  if (!in) return out;
  if (in->struct_size <= sizeof(uint32_t))
    throw Error(Status::InvalidArgument, std::string(fn) + ": options.struct_size = " +
                                             std::to_string(in->struct_size) +
                                             " is too small: initialise the struct with its LOUPE_*_INIT macro");
  const size_t n = std::min<size_t>(in->struct_size, sizeof(T));
  std::memcpy(static_cast<void*>(&out), in, n);
  out.struct_size = sizeof(T);
  return out;
}

// An info struct the SDK fills: its struct_size (set by the caller's INIT) must hold at least the
// struct_size field itself.
template <class T>
void check_out_struct(const T* out, const char* fn, const char* init) {
  if (!out) throw Error(Status::InvalidArgument, std::string(fn) + ": out is NULL");
  if (out->struct_size < sizeof(uint32_t))
    throw Error(Status::InvalidArgument, std::string(fn) + ": out->struct_size = " + std::to_string(out->struct_size) +
                                             " is too small: initialise the struct with " + init);
}

// Writes the first out->struct_size bytes of full (a caller built against an older header has a
// smaller struct); struct_size stays the caller's.
template <class T>
void write_out(T full, T* out) {
  const uint32_t n = std::min<uint32_t>(out->struct_size, sizeof(T));
  full.struct_size = out->struct_size;
  std::memcpy(static_cast<void*>(out), &full, n);
}

// loupe_*_init: the defaults of the INIT macro, for the first struct_size bytes.
template <class T>
loupe_status init_struct(T* out, uint32_t struct_size, const T& defaults, const char* fn) {
  if (!out) return fail(Status::InvalidArgument, std::string(fn) + ": out is NULL");
  if (struct_size <= sizeof(uint32_t) || struct_size > sizeof(T))
    return fail(Status::InvalidArgument, std::string(fn) + ": struct_size " + std::to_string(struct_size) +
                                             " is not a size of this struct (this library's is " + std::to_string(sizeof(T)) +
                                             "; a larger one comes from a newer header than the library's)");
  std::memcpy(static_cast<void*>(out), &defaults, struct_size);
  out->struct_size = struct_size;
  return LOUPE_OK;
}

// A C enum the caller passed, as the int it is: a C host may store any int there (issue 19: the
// fuzzer's finding), and reading a value outside the enum as the C++ enum type is undefined
// behaviour (UBSan: "load of value 9, which is not a valid value for type loupe_pixel_format").
template <class E>
int c_enum(const E& e) {
  static_assert(std::is_enum_v<E> && sizeof(E) == sizeof(int32_t), "a C enum (int-sized)");
  int32_t v;
  std::memcpy(&v, &e, sizeof v);
  return v;
}
int format_value(const loupe_image* im) { return c_enum(im->format); }

int bytes_per_pixel(int f) {
  switch (f) {
    case LOUPE_RGBA8: return 4;
    case LOUPE_RGB8: return 3;
    case LOUPE_GRAY8: return 1;
  }
  return 0;
}

loupe::Image copy_image(const loupe_image* im, const char* what) {
  const std::string w(what);
  if (!im) throw Error(Status::InvalidArgument, w + " is NULL");
  const int bpp = bytes_per_pixel(format_value(im));
  if (bpp == 0)
    throw Error(Status::InvalidArgument, w + ": unknown pixel format " + std::to_string(format_value(im)) +
                                             " (use LOUPE_RGBA8, LOUPE_RGB8 or LOUPE_GRAY8)");
  if (im->width <= 0 || im->height <= 0)
    throw Error(Status::InvalidArgument, w + ": size " + std::to_string(im->width) + "x" +
                                             std::to_string(im->height) + " is empty");
  if (im->width > 32768 || im->height > 32768)
    throw Error(Status::InvalidArgument, w + ": size " + std::to_string(im->width) + "x" +
                                             std::to_string(im->height) + " is larger than 32768 pixels a side");
  if (im->stride < im->width * bpp)
    throw Error(Status::InvalidArgument, w + ": stride " + std::to_string(im->stride) + " is smaller than width x " +
                                             std::to_string(bpp) + " bytes = " + std::to_string(im->width * bpp));
  if (!im->data) throw Error(Status::InvalidArgument, w + ": data is NULL");
  loupe::Image out;
  out.width = im->width;
  out.height = im->height;
  out.channels = bpp;
  out.pixels.resize(out.bytes());
  const size_t row = static_cast<size_t>(im->width) * bpp;
  for (int y = 0; y < im->height; ++y)
    std::memcpy(out.row(y), im->data + static_cast<size_t>(y) * im->stride, row);
  return out;
}

loupe_image view_image(const loupe::Image& im) {
  loupe_image v;
  v.width = im.width;
  v.height = im.height;
  v.stride = im.width * im.channels;
  v.format = im.channels == 4 ? LOUPE_RGBA8 : im.channels == 1 ? LOUPE_GRAY8 : LOUPE_RGB8;
  v.data = im.pixels.data();
  return v;
}

loupe::ProgressFn wrap_progress(loupe_progress_fn fn, void* user) {
  if (!fn) return {};
  return [fn, user](const loupe::Progress& p) {
    loupe_progress cp;
    cp.struct_size = sizeof(cp);
    cp.step = p.step;
    cp.total = p.total;
    cp.stage = p.stage.c_str();
    loupe_image preview;
    if (p.preview) preview = view_image(*p.preview);
    cp.preview = p.preview ? &preview : nullptr;
    cp.text = p.text ? p.text->c_str() : nullptr;
    return fn(user, &cp) != 0;
  };
}

loupe::Precision to_precision(int p, const char* fn) {
  if (p < LOUPE_PRECISION_AUTO || p > LOUPE_PRECISION_BF16)
    throw Error(Status::InvalidArgument, std::string(fn) + ": unknown precision " + std::to_string(p));
  return static_cast<loupe::Precision>(p);
}

void check_runtime_open(const loupe::Runtime& rt, const char* fn) {
  if (rt.closed()) throw Error(Status::InvalidState, std::string(fn) + ": the runtime was freed");
}

}  // namespace

extern "C" {

const char* loupe_version(void) { return LOUPE_VERSION_STRING; }
uint32_t loupe_version_number(void) { return LOUPE_VERSION_NUMBER; }
const char* loupe_last_error(void) { return g_last_error.c_str(); }
void loupe_string_free(char* s) { std::free(s); }

const char* loupe_status_name(loupe_status s) {
  switch (c_enum(s)) {
    case LOUPE_OK: return "LOUPE_OK";
    case LOUPE_ERROR_INVALID_ARGUMENT: return "LOUPE_ERROR_INVALID_ARGUMENT";
    case LOUPE_ERROR_NOT_FOUND: return "LOUPE_ERROR_NOT_FOUND";
    case LOUPE_ERROR_BAD_MODEL: return "LOUPE_ERROR_BAD_MODEL";
    case LOUPE_ERROR_UNSUPPORTED: return "LOUPE_ERROR_UNSUPPORTED";
    case LOUPE_ERROR_OUT_OF_MEMORY: return "LOUPE_ERROR_OUT_OF_MEMORY";
    case LOUPE_ERROR_CANCELLED: return "LOUPE_ERROR_CANCELLED";
    case LOUPE_ERROR_TIMEOUT: return "LOUPE_ERROR_TIMEOUT";
    case LOUPE_ERROR_INVALID_STATE: return "LOUPE_ERROR_INVALID_STATE";
    case LOUPE_ERROR_INTERNAL: return "LOUPE_ERROR_INTERNAL";
  }
  return "LOUPE_ERROR_UNKNOWN";
}

static char* dup_string(const std::string& s) {
  char* out = static_cast<char*>(std::malloc(s.size() + 1));
  if (!out) throw std::bad_alloc();
  std::memcpy(out, s.c_str(), s.size() + 1);
  return out;
}

// ------------------------------------------------------------------ runtime

loupe_status loupe_runtime_create(loupe_runtime** out, const loupe_runtime_options* options) {
  return guarded(__func__, [&] {
    LOUPE_ARG(out, "out is NULL");
    const loupe_runtime_options defaults = LOUPE_RUNTIME_OPTIONS_INIT;
    const loupe_runtime_options o = read_options(options, defaults, __func__);
    loupe::RuntimeOptions ro;
    ro.device = o.device ? o.device : "auto";
    ro.precision = to_precision(c_enum(o.precision), __func__);
    ro.vram_budget_bytes = o.vram_budget_bytes;
    if (o.num_threads < 0)
      throw Error(Status::InvalidArgument, std::string(__func__) + ": options.num_threads = " +
                                               std::to_string(o.num_threads) + " (use 0 for all physical cores)");
    ro.num_threads = o.num_threads;
    ro.models_dir = o.models_dir ? o.models_dir : "";
    if (c_enum(o.log_level) < LOUPE_LOG_DEBUG || c_enum(o.log_level) > LOUPE_LOG_ERROR)
      throw Error(Status::InvalidArgument, std::string(__func__) + ": unknown log level " + std::to_string(c_enum(o.log_level)));
    loupe::Log::Sink sink;
    if (o.log_fn) {
      auto fn = o.log_fn;
      void* user = o.log_user;
      sink = [fn, user](loupe::LogLevel l, const std::string& m) {
        fn(user, static_cast<loupe_log_level>(l), m.c_str());
      };
    }
    auto rt = loupe::Runtime::create(ro, std::move(sink), static_cast<loupe::LogLevel>(o.log_level));
    *out = to_c<loupe_runtime>(new RuntimeH{std::move(rt)});
  });
}

void loupe_runtime_free(loupe_runtime* runtime) {
  if (!runtime) return;
  try {
    H(runtime)->rt->shutdown();
  } catch (...) {
  }
  delete H(runtime);
}

const char* loupe_runtime_device(const loupe_runtime* runtime) {
  return runtime ? H(runtime)->rt->device_name().c_str() : "";
}

loupe_status loupe_runtime_diagnostics(loupe_runtime* runtime, char** out_json) {
  return guarded(__func__, [&] {
    LOUPE_ARG(runtime, "runtime is NULL");
    LOUPE_ARG(out_json, "out_json is NULL");
    *out_json = dup_string(H(runtime)->rt->diagnostics().dump(2));
  });
}

loupe_status loupe_runtime_log(loupe_runtime* runtime, loupe_log_level level, const char* message) {
  return guarded(__func__, [&] {
    LOUPE_ARG(runtime, "runtime is NULL");
    LOUPE_ARG(message, "message is NULL");
    LOUPE_ARG(c_enum(level) >= LOUPE_LOG_DEBUG && c_enum(level) <= LOUPE_LOG_ERROR,
              "unknown log level " + std::to_string(c_enum(level)));
    H(runtime)->rt->log().write(static_cast<loupe::LogLevel>(level), message);
  });
}

loupe_status loupe_model_inspect(loupe_runtime* runtime, const char* path, char** out_json) {
  return guarded(__func__, [&] {
    LOUPE_ARG(path, "path is NULL");
    LOUPE_ARG(out_json, "out_json is NULL");
    const std::string models_dir = runtime ? H(runtime)->rt->options().models_dir : std::string();
    *out_json = dup_string(loupe::inspect_model(path, models_dir).dump(2));
  });
}

loupe_status loupe_checkpoint_convert(const char* in_path, const char* out_path) {
  return guarded(__func__, [&] {
    LOUPE_ARG(in_path && *in_path, "in_path is NULL or empty");
    LOUPE_ARG(out_path && *out_path, "out_path is NULL or empty");
    loupe::convert_checkpoint(in_path, out_path);
  });
}

// ------------------------------------------------------------------ sessions

loupe_status loupe_session_open(loupe_session** out, loupe_runtime* runtime, const char* path,
                                const loupe_session_options* options) {
  return guarded(__func__, [&] {
    LOUPE_ARG(out, "out is NULL");
    LOUPE_ARG(runtime, "runtime is NULL");
    LOUPE_ARG(path, "path is NULL");
    check_runtime_open(*H(runtime)->rt, __func__);
    const loupe_session_options defaults = LOUPE_SESSION_OPTIONS_INIT;
    const loupe_session_options o = read_options(options, defaults, __func__);
    auto s = H(runtime)->rt->open_session(path, o.device ? o.device : "", to_precision(c_enum(o.precision), __func__));
    auto table = std::make_shared<const TaskTableC>(s->model()->tasks());
    *out = to_c<loupe_session>(new SessionH{std::move(s), {}, {}, {}, {}, {}, {}, std::move(table)});
  });
}

void loupe_session_close(loupe_session* session) {
  if (!session) return;
  try {
    H(session)->s->close();
  } catch (...) {
  }
  delete H(session);
}

loupe_status loupe_session_describe(loupe_session* session, loupe_session_info* info) {
  return guarded(__func__, [&] {
    LOUPE_ARG(session, "session is NULL");
    check_out_struct(info, __func__, "LOUPE_SESSION_INFO_INIT");
    auto m = H(session)->s->model();
    if (!m || H(session)->s->runtime().closed())
      throw Error(Status::InvalidState, std::string(__func__) + ": the session or its runtime was closed");
    H(session)->family = m->family();
    H(session)->variant = m->variant();
    H(session)->tasks.clear();
    for (const auto& t : H(session)->task_table->tasks) H(session)->tasks += (H(session)->tasks.empty() ? "" : ",") + t.name;
    H(session)->device = H(session)->s->device().str();
    H(session)->dtype = loupe::dtype_name(H(session)->s->dtype());
    H(session)->path = H(session)->s->path();
    loupe_session_info full = LOUPE_SESSION_INFO_INIT;
    full.family = H(session)->family.c_str();
    full.variant = H(session)->variant.c_str();
    full.tasks = H(session)->tasks.c_str();
    full.device = H(session)->device.c_str();
    full.dtype = H(session)->dtype.c_str();
    full.path = H(session)->path.c_str();
    full.bytes = H(session)->s->bytes();
    full.resident = H(session)->s->resident() ? 1 : 0;
    write_out(full, info);
  });
}

loupe_status loupe_session_set_lora(loupe_session* session, const char* path, float weight) {
  return guarded(__func__, [&] {
    LOUPE_ARG(session, "session is NULL");
    LOUPE_ARG(path, "path is NULL");
    auto m = H(session)->s->model();
    if (!m) throw Error(Status::InvalidState, std::string(__func__) + ": the session was closed");
    m->set_lora(path, weight);
    H(session)->s->recount_bytes();
  });
}

loupe_status loupe_session_set_vae(loupe_session* session, const char* path) {
  return guarded(__func__, [&] {
    LOUPE_ARG(session, "session is NULL");
    auto m = H(session)->s->model();
    if (!m) throw Error(Status::InvalidState, std::string(__func__) + ": the session was closed");
    m->set_vae(path ? path : "");
    H(session)->s->recount_bytes();
  });
}

// ------------------------------------------------------------------ requests

loupe_status loupe_request_create(loupe_request** out, const char* task) {
  return guarded(__func__, [&] {
    LOUPE_ARG(out, "out is NULL");
    LOUPE_ARG(task && *task, "task is NULL or empty");
    if (!loupe::tasks::find(task))
      throw Error(Status::InvalidArgument, std::string(__func__) + ": unknown task '" + task + "'; tasks: " + loupe::tasks::names());
    auto r = new RequestH;
    r->r.task = task;
    *out = to_c<loupe_request>(r);
  });
}

void loupe_request_free(loupe_request* request) { delete H(request); }

loupe_status loupe_request_set_image(loupe_request* request, const loupe_image* image) {
  return guarded(__func__, [&] {
    LOUPE_ARG(request, "request is NULL");
    auto im = copy_image(image, "loupe_request_set_image: image");
    H(request)->r.images.clear();
    H(request)->r.images.push_back(std::move(im));
  });
}

loupe_status loupe_request_add_image(loupe_request* request, const loupe_image* image) {
  return guarded(__func__, [&] {
    LOUPE_ARG(request, "request is NULL");
    H(request)->r.images.push_back(copy_image(image, "loupe_request_add_image: image"));
  });
}

loupe_status loupe_request_set_mask(loupe_request* request, const loupe_image* mask) {
  return guarded(__func__, [&] {
    LOUPE_ARG(request, "request is NULL");
    if (mask && format_value(mask) != LOUPE_GRAY8)
      throw Error(Status::InvalidArgument, "loupe_request_set_mask: the mask must be LOUPE_GRAY8 (255 = repaint), got format " +
                                               std::to_string(format_value(mask)));
    H(request)->r.mask = copy_image(mask, "loupe_request_set_mask: mask");
  });
}

loupe_status loupe_request_set_string(loupe_request* request, const char* key, const char* value) {
  return guarded(__func__, [&] {
    LOUPE_ARG(request, "request is NULL");
    LOUPE_ARG(key && *key, "key is NULL or empty");
    if (value) H(request)->r.strings[key] = value;
    else H(request)->r.strings.erase(key);
  });
}

loupe_status loupe_request_set_int(loupe_request* request, const char* key, int64_t value) {
  return guarded(__func__, [&] {
    LOUPE_ARG(request, "request is NULL");
    LOUPE_ARG(key && *key, "key is NULL or empty");
    H(request)->r.floats.erase(key);
    H(request)->r.ints[key] = value;
  });
}

loupe_status loupe_request_set_float(loupe_request* request, const char* key, double value) {
  return guarded(__func__, [&] {
    LOUPE_ARG(request, "request is NULL");
    LOUPE_ARG(key && *key, "key is NULL or empty");
    LOUPE_ARG(std::isfinite(value), std::string("value of '") + key + "' is not finite");
    H(request)->r.ints.erase(key);
    H(request)->r.floats[key] = value;
  });
}

loupe_status loupe_request_set_region(loupe_request* request, float x0, float y0, float x1, float y1) {
  return guarded(__func__, [&] {
    LOUPE_ARG(request, "request is NULL");
    LOUPE_ARG(std::isfinite(x0) && std::isfinite(y0) && std::isfinite(x1) && std::isfinite(y1),
              "region coordinates must be finite");
    LOUPE_ARG(x1 > x0 && y1 > y0, "region must have x1 > x0 and y1 > y0 (got " + std::to_string(x0) + "," +
                                      std::to_string(y0) + " - " + std::to_string(x1) + "," + std::to_string(y1) + ")");
    H(request)->r.region = std::array<float, 4>{x0, y0, x1, y1};
  });
}

// ------------------------------------------------------------------ jobs

loupe_status loupe_session_submit(loupe_job** out, loupe_session* session, const loupe_request* request,
                                  loupe_progress_fn progress, void* user) {
  return guarded(__func__, [&] {
    LOUPE_ARG(out, "out is NULL");
    LOUPE_ARG(session, "session is NULL");
    LOUPE_ARG(request, "request is NULL");
    check_runtime_open(H(session)->s->runtime(), __func__);
    auto job = H(session)->s->runtime().submit_session(H(session)->s, H(request)->r, wrap_progress(progress, user),
                                                    progress != nullptr);
    *out = to_c<loupe_job>(new JobH{std::move(job)});
  });
}

loupe_status loupe_runtime_submit(loupe_job** out, loupe_runtime* runtime, const loupe_request* request,
                                  loupe_progress_fn progress, void* user) {
  return guarded(__func__, [&] {
    LOUPE_ARG(out, "out is NULL");
    LOUPE_ARG(runtime, "runtime is NULL");
    LOUPE_ARG(request, "request is NULL");
    check_runtime_open(*H(runtime)->rt, __func__);
    auto job = H(runtime)->rt->submit_request(H(request)->r, wrap_progress(progress, user), progress != nullptr);
    *out = to_c<loupe_job>(new JobH{std::move(job)});
  });
}

loupe_status loupe_edit_submit(loupe_job** out, loupe_runtime* runtime, loupe_session* finder, loupe_session* painter,
                               const loupe_request* request, loupe_progress_fn progress, void* user) {
  return guarded(__func__, [&] {
    LOUPE_ARG(out, "out is NULL");
    LOUPE_ARG(runtime, "runtime is NULL");
    LOUPE_ARG(request, "request is NULL");
    check_runtime_open(*H(runtime)->rt, __func__);
    // NULL sessions are judged by the request (a mask given needs no finder, paint = 0 no painter)
    auto job = H(runtime)->rt->submit_edit(finder ? H(finder)->s : nullptr, painter ? H(painter)->s : nullptr,
                                          H(request)->r, wrap_progress(progress, user), progress != nullptr);
    *out = to_c<loupe_job>(new JobH{std::move(job)});
  });
}

loupe_status loupe_job_wait(loupe_job* job, int64_t timeout_ms) {
  loupe_status st = LOUPE_OK;
  loupe_status g = guarded(__func__, [&] {
    LOUPE_ARG(job, "job is NULL");
    if (!H(job)->j->wait(timeout_ms)) st = fail(Status::Timeout, "loupe_job_wait: the job is still running after " +
                                                                  std::to_string(timeout_ms) + " ms");
  });
  return g != LOUPE_OK ? g : st;
}

loupe_status loupe_job_poll(loupe_job* job, loupe_job_state* state, float* fraction) {
  return guarded(__func__, [&] {
    LOUPE_ARG(job, "job is NULL");
    if (state) *state = static_cast<loupe_job_state>(H(job)->j->state());
    if (fraction) *fraction = H(job)->j->fraction();
  });
}

loupe_status loupe_job_cancel(loupe_job* job) {
  return guarded(__func__, [&] {
    LOUPE_ARG(job, "job is NULL");
    H(job)->j->cancel();
  });
}

loupe_status loupe_job_status(loupe_job* job) {
  if (!job) return fail(Status::InvalidArgument, "loupe_job_status: job is NULL");
  const Status s = H(job)->j->status();
  if (s == Status::Timeout) return fail(s, "loupe_job_status: the job has not finished yet");
  if (s != Status::Ok) return fail(s, H(job)->j->message());
  return LOUPE_OK;
}

loupe_status loupe_job_take_result(loupe_result** out, loupe_job* job) {
  return guarded(__func__, [&] {
    LOUPE_ARG(out, "out is NULL");
    LOUPE_ARG(job, "job is NULL");
    auto r = H(job)->j->take_result();
    auto res = new ResultH{std::move(r), {}};
    res->json = res->r->to_json();
    *out = to_c<loupe_result>(res);
  });
}

void loupe_job_free(loupe_job* job) {
  if (!job) return;
  H(job)->j->cancel();
  H(job)->j->wait(-1);
  delete H(job);
}

// ------------------------------------------------------------------ results

void loupe_result_free(loupe_result* result) { delete H(result); }
const char* loupe_result_task(const loupe_result* r) { return r ? H(r)->r->task.c_str() : ""; }
const char* loupe_result_json(const loupe_result* r) { return r ? H(r)->json.c_str() : "{}"; }
const char* loupe_result_text(const loupe_result* r) { return r ? H(r)->r->text.c_str() : ""; }
size_t loupe_result_box_count(const loupe_result* r) { return r ? H(r)->r->boxes.size() : 0; }
size_t loupe_result_polygon_count(const loupe_result* r) { return r ? H(r)->r->polygons.size() : 0; }
size_t loupe_result_image_count(const loupe_result* r) { return r ? H(r)->r->images.size() : 0; }

static void check_index(const char* fn, size_t index, size_t count, const char* what) {
  if (index >= count)
    throw Error(Status::NotFound, std::string(fn) + ": " + what + " index " + std::to_string(index) +
                                      " is out of range (the result has " + std::to_string(count) + ")");
}

loupe_status loupe_result_get_box(const loupe_result* result, size_t index, loupe_box* out) {
  return guarded(__func__, [&] {
    LOUPE_ARG(result, "result is NULL");
    check_out_struct(out, __func__, "LOUPE_BOX_INIT");
    check_index(__func__, index, H(result)->r->boxes.size(), "box");
    const auto& b = H(result)->r->boxes[index];
    write_out(loupe_box{sizeof(loupe_box), LOUPE_SHAPE_BOX, b.x0, b.y0, b.x1, b.y1, b.score, b.label.c_str()}, out);
  });
}

loupe_status loupe_result_get_polygon(const loupe_result* result, size_t index, loupe_polygon* out) {
  return guarded(__func__, [&] {
    LOUPE_ARG(result, "result is NULL");
    check_out_struct(out, __func__, "LOUPE_POLYGON_INIT");
    check_index(__func__, index, H(result)->r->polygons.size(), "polygon");
    const auto& p = H(result)->r->polygons[index];
    const loupe_shape_kind kind = p.kind == "quad" ? LOUPE_SHAPE_QUAD : LOUPE_SHAPE_POLYGON;
    write_out(loupe_polygon{sizeof(loupe_polygon), kind, p.points.data(), p.points.size() / 2, p.label.c_str(), p.group}, out);
  });
}

loupe_status loupe_result_box(const loupe_result* result, size_t index, loupe_box_v0* out) {
  return guarded(__func__, [&] {
    LOUPE_ARG(result, "result is NULL");
    LOUPE_ARG(out, "out is NULL");
    check_index(__func__, index, H(result)->r->boxes.size(), "box");
    const auto& b = H(result)->r->boxes[index];
    *out = loupe_box_v0{b.x0, b.y0, b.x1, b.y1, b.score, b.label.c_str()};
  });
}

loupe_status loupe_result_polygon(const loupe_result* result, size_t index, loupe_polygon_v0* out) {
  return guarded(__func__, [&] {
    LOUPE_ARG(result, "result is NULL");
    LOUPE_ARG(out, "out is NULL");
    check_index(__func__, index, H(result)->r->polygons.size(), "polygon");
    const auto& p = H(result)->r->polygons[index];
    *out = loupe_polygon_v0{p.points.data(), p.points.size() / 2, p.label.c_str(), p.group};
  });
}

loupe_status loupe_result_image(const loupe_result* result, size_t index, loupe_image* out) {
  return guarded(__func__, [&] {
    LOUPE_ARG(result, "result is NULL");
    LOUPE_ARG(out, "out is NULL");
    check_index(__func__, index, H(result)->r->images.size(), "image");
    *out = view_image(H(result)->r->images[index]);
  });
}

loupe_status loupe_result_number(const loupe_result* result, const char* key, double* out) {
  return guarded(__func__, [&] {
    LOUPE_ARG(result, "result is NULL");
    LOUPE_ARG(key, "key is NULL");
    LOUPE_ARG(out, "out is NULL");
    auto it = H(result)->r->numbers.find(key);
    if (it == H(result)->r->numbers.end())
      throw Error(Status::NotFound, std::string(__func__) + ": the result has no number '" + key + "'");
    *out = it->second;
  });
}

// ------------------------------------------------------------------ discovery

loupe_status loupe_models_scan(loupe_runtime* runtime, const loupe_scan_options* options, char** out_json) {
  return guarded(__func__, [&] {
    LOUPE_ARG(out_json, "out_json is NULL");
    const loupe_scan_options defaults = LOUPE_SCAN_OPTIONS_INIT;
    const loupe_scan_options o = read_options(options, defaults, __func__);
    LOUPE_ARG(o.dir_count == 0 || o.dirs, "options.dirs is NULL but options.dir_count is " + std::to_string(o.dir_count));
    LOUPE_ARG(o.dir_count <= 4096, "options.dir_count " + std::to_string(o.dir_count) + " is too large (at most 4096)");
    loupe::ScanOptions so;
    for (size_t i = 0; i < o.dir_count; ++i) {
      LOUPE_ARG(o.dirs[i] && *o.dirs[i], "options.dirs[" + std::to_string(i) + "] is NULL or empty");
      so.dirs.push_back(o.dirs[i]);
    }
    so.default_locations = o.skip_default_locations == 0;
    if (runtime) {
      check_runtime_open(*H(runtime)->rt, __func__);
      so.models_dir = H(runtime)->rt->options().models_dir;
    }
    if (o.models_dir) so.models_dir = o.models_dir;
    loupe::Catalog catalog;
    if (o.catalog_path) {
      catalog = loupe::Catalog::load(o.catalog_path);
      so.catalog = &catalog;
    }
    // File names need not be UTF-8: dump replaces invalid bytes instead of throwing.
    *out_json = dup_string(loupe::scan_models(so).dump(2, ' ', false, nlohmann::json::error_handler_t::replace));
  });
}

// ------------------------------------------------------------------ struct init functions

#define LOUPE_INIT_FN(T, INIT)                                 \
  loupe_status T##_init(T* out, uint32_t struct_size) {        \
    static const T defaults = INIT;                            \
    return init_struct(out, struct_size, defaults, #T "_init"); \
  }
LOUPE_INIT_FN(loupe_runtime_options, LOUPE_RUNTIME_OPTIONS_INIT)
LOUPE_INIT_FN(loupe_session_options, LOUPE_SESSION_OPTIONS_INIT)
LOUPE_INIT_FN(loupe_session_info, LOUPE_SESSION_INFO_INIT)
LOUPE_INIT_FN(loupe_scan_options, LOUPE_SCAN_OPTIONS_INIT)
LOUPE_INIT_FN(loupe_task_info, LOUPE_TASK_INFO_INIT)
LOUPE_INIT_FN(loupe_param_info, LOUPE_PARAM_INFO_INIT)
LOUPE_INIT_FN(loupe_box, LOUPE_BOX_INIT)
LOUPE_INIT_FN(loupe_polygon, LOUPE_POLYGON_INIT)
#undef LOUPE_INIT_FN

// ------------------------------------------------------------------ task descriptions

static std::shared_ptr<const TaskTableC> task_table_of(loupe_session* session, const char* fn) {
  if (!session) {
    static const auto all = std::make_shared<const TaskTableC>(loupe::tasks::table());
    return all;
  }
  if (!H(session)->s->model())
    throw Error(Status::InvalidState, std::string(fn) + ": the session was closed");
  return H(session)->task_table;
}

size_t loupe_task_count(loupe_session* session) {
  try {
    return task_table_of(session, __func__)->tasks.size();
  } catch (...) {
    return 0;
  }
}

loupe_status loupe_task_describe(loupe_session* session, size_t index, loupe_task_info* out) {
  return guarded(__func__, [&] {
    check_out_struct(out, __func__, "LOUPE_TASK_INFO_INIT");
    const auto table = task_table_of(session, __func__);
    check_index(__func__, index, table->tasks.size(), "task");
    const auto& t = table->tasks[index];
    write_out(loupe_task_info{sizeof(loupe_task_info), t.name.c_str(), t.label.c_str(), t.help.c_str(), t.group.c_str(),
                              t.inputs, t.required, t.outputs, t.text_key.c_str(), t.text_label.c_str(),
                              t.text_help.c_str(), t.runtime ? 1 : 0, t.params.size()},
              out);
  });
}

loupe_status loupe_task_find(loupe_session* session, const char* name, size_t* out_index) {
  return guarded(__func__, [&] {
    LOUPE_ARG(name, "name is NULL");
    LOUPE_ARG(out_index, "out_index is NULL");
    const auto table = task_table_of(session, __func__);
    std::string offered;
    for (size_t i = 0; i < table->tasks.size(); ++i) {
      if (table->tasks[i].name == name) {
        *out_index = i;
        return;
      }
      offered += (offered.empty() ? "" : ", ") + table->tasks[i].name;
    }
    throw Error(Status::NotFound, std::string(__func__) + ": task '" + name + "' is not " +
                                      (session ? "offered by this session" : "known") + "; " +
                                      (session ? "it offers: " : "tasks: ") + offered);
  });
}

loupe_status loupe_task_param(loupe_session* session, size_t task_index, size_t param_index, loupe_param_info* out) {
  return guarded(__func__, [&] {
    check_out_struct(out, __func__, "LOUPE_PARAM_INFO_INIT");
    const auto table = task_table_of(session, __func__);
    check_index(__func__, task_index, table->tasks.size(), "task");
    const auto& t = table->tasks[task_index];
    check_index(__func__, param_index, t.params.size(), "parameter");
    const auto& p = t.params[param_index];
    const auto& ch = table->choices[task_index][param_index];
    static const char* const no_choices[] = {nullptr};
    write_out(loupe_param_info{sizeof(loupe_param_info), p.name.c_str(), static_cast<loupe_param_type>(p.type), p.label.c_str(),
                               p.help.c_str(), p.unit.c_str(), p.def, p.def_string.c_str(), p.min, p.max, p.step, ch.size(),
                               ch.empty() ? no_choices : ch.data(), p.advanced ? 1 : 0},
              out);
  });
}

loupe_status loupe_tasks_json(loupe_session* session, char** out_json) {
  return guarded(__func__, [&] {
    LOUPE_ARG(out_json, "out_json is NULL");
    const auto table = task_table_of(session, __func__);
    nlohmann::json j = nlohmann::json::array();
    for (const auto& t : table->tasks) j.push_back(loupe::tasks::to_json(t));
    *out_json = dup_string(j.dump(2));
  });
}

}  // extern "C"
