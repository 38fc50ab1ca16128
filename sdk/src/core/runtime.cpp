#include "core/runtime.h"

#include "core/tasks.h"

#include <filesystem>
#include <optional>
#include <sstream>

#include "core/edit.h"
#include "core/hub.h"
#include "core/tasks.h"
#include "core/cpu.h"
#include "core/cpu_cache.h"
#include "core/torch_compat.h"

namespace fs = std::filesystem;

namespace loupe {

// ------------------------------------------------------------------ device and dtype policy

torch::Device parse_device(const std::string& spec_in) {
  const std::string spec = spec_in.empty() ? "auto" : spec_in;
  const bool cuda_ok = torch::cuda::is_available();
  if (spec == "auto") return cuda_ok ? torch::Device(torch::kCUDA, 0) : torch::Device(torch::kCPU);
  if (spec == "cpu") return torch::kCPU;
  if (spec.rfind("cuda", 0) == 0) {
    int index = 0;
    if (spec.size() > 4) {
      if (spec[4] != ':' || spec.size() == 5 ||
          spec.find_first_not_of("0123456789", 5) != std::string::npos)
        LOUPE_THROW(InvalidArgument, "device '" << spec << "' is not valid: use auto, cpu, cuda or cuda:N");
      index = std::stoi(spec.substr(5));
    }
    if (!cuda_ok)
      LOUPE_THROW(Unsupported, "device '" << spec << "': no CUDA device is available to this build ("
                                          << (torch::cuda::device_count() == 0 ? "none found" : "driver problem")
                                          << "); hint: use device \"auto\" or \"cpu\", or check the driver with nvidia-smi");
    const int count = static_cast<int>(torch::cuda::device_count());
    if (index >= count)
      LOUPE_THROW(NotFound, "device '" << spec << "': only " << count << " CUDA device(s) (cuda:0.."
                                       << count - 1 << ")");
    return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index));
  }
  LOUPE_THROW(InvalidArgument, "device '" << spec << "' is not valid: use auto, cpu, cuda or cuda:N");
}

torch::ScalarType resolve_dtype(Precision p, const torch::Device& device, std::string* warning, bool bf16_family) {
  if (device.is_cpu()) {
    const bool fast_bf16 = cpu::info().fast_bf16();
    if (p == Precision::BF16 && fast_bf16) return torch::kBFloat16;
    if (p == Precision::Auto) return bf16_family && fast_bf16 ? torch::kBFloat16 : torch::kFloat32;
    if ((p == Precision::FP16 || p == Precision::BF16) && warning)
      *warning = p == Precision::FP16
                     ? "fp16 was requested on the CPU, where it is slow or unsupported; using fp32"
                     : "bf16 was requested on a CPU without native bf16 (AVX512-BF16 or AMX), where it is slow; "
                       "using fp32";
    return torch::kFloat32;
  }
  switch (p) {
    case Precision::FP32: return torch::kFloat32;
    case Precision::BF16: return torch::kBFloat16;
    case Precision::FP16:
    case Precision::Auto: return torch::kFloat16;
  }
  return torch::kFloat16;
}

const char* dtype_name(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat32: return "float32";
    case torch::kFloat16: return "float16";
    case torch::kBFloat16: return "bfloat16";
    default: return "other";
  }
}

static std::string format_bytes(uint64_t b) {
  std::ostringstream os;
  os.precision(3);
  if (b >= (1ull << 30)) os << static_cast<double>(b) / (1ull << 30) << " GiB";
  else os << static_cast<double>(b) / (1ull << 20) << " MiB";
  return os.str();
}

// ------------------------------------------------------------------ session

Session::Session(std::shared_ptr<Runtime> rt, std::shared_ptr<Model> model, std::string path,
                 torch::Device device, torch::ScalarType dtype)
    : runtime_(std::move(rt)), model_(std::move(model)), path_(std::move(path)), device_(device), dtype_(dtype) {
  bytes_ = model_->bytes();
}

void Session::recount_bytes() {
  if (auto m = model()) bytes_ = m->bytes();
}

std::shared_ptr<Model> Session::model() const {
  std::lock_guard<std::mutex> lock(runtime_->mu_);
  return model_;
}

bool Session::resident() const {
  std::lock_guard<std::mutex> lock(runtime_->mu_);
  return resident_;
}

bool Session::closed() const {
  std::lock_guard<std::mutex> lock(runtime_->mu_);
  return closed_;
}

void Session::close() {
  std::vector<std::shared_ptr<Job>> jobs;
  {
    std::lock_guard<std::mutex> lock(runtime_->mu_);
    if (closed_) return;
    closed_ = true;
    for (auto& w : jobs_)
      if (auto j = w.lock()) jobs.push_back(j);
  }
  for (auto& j : jobs) j->cancel();
  for (auto& j : jobs) j->wait(-1);
  std::shared_ptr<Model> dropped;
  {
    std::lock_guard<std::mutex> lock(runtime_->mu_);
    dropped = std::move(model_);
    resident_ = false;
  }
  dropped.reset();  // frees the weights outside the lock
  release_cached_device_memory();
}

// ------------------------------------------------------------------ runtime

Runtime::Runtime(const RuntimeOptions& options) : options_(options) {}

std::shared_ptr<Runtime> Runtime::create(const RuntimeOptions& options, Log::Sink sink, LogLevel level) {
  std::shared_ptr<Runtime> rt(new Runtime(options));
  rt->log_.set_sink(std::move(sink), level);
  rt->device_ = parse_device(options.device);
  rt->device_name_ = rt->device_.str();
  rt->threads_ = cpu::resolve_threads(options.num_threads);
  cpu::apply_threads(rt->threads_);
  if (rt->device_.is_cpu()) cpu::install_block_cache();
  for (const auto& p : cpu::problems(rt->threads_))
    rt->add_problem(p["id"], p["severity"], p["message"], p["remedy"]);
  if (options.device == "auto" && rt->device_.is_cpu())
    rt->add_problem("no_cuda_device", "warning",
                    "no CUDA device was found: models run on the CPU, which is much slower",
                    "install the NVIDIA driver and a CUDA build of Loupe, or choose small variants");
  std::string warning;
  resolve_dtype(options.precision, rt->device_, &warning);
  if (!warning.empty())
    rt->add_problem("half_precision_on_cpu", "info", warning, "choose precision fp32 (or auto) on the CPU");
  if (!options.models_dir.empty() && !fs::is_directory(options.models_dir))
    rt->add_problem("models_dir_missing", "warning",
                    "the models folder '" + options.models_dir + "' does not exist",
                    "create it and put model folders in it, or point the runtime at the right folder");
  rt->log_.info("runtime created on " + rt->device_name_ + " (Loupe " LOUPE_VERSION_STRING ", libtorch " +
                std::string(TORCH_VERSION) + ", " + std::to_string(rt->threads_) + " CPU threads, BLAS: " +
                cpu::blas().kind + ")");
  rt->worker_ = std::thread([raw = rt.get()] { raw->worker_loop(); });
  return rt;
}

Runtime::~Runtime() { shutdown(); }

bool Runtime::closed() const {
  std::lock_guard<std::mutex> lock(mu_);
  return closed_;
}

void Runtime::add_problem(const std::string& id, const std::string& severity, const std::string& message,
                          const std::string& remedy) {
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& p : problems_)
    if (p["id"] == id) return;
  problems_.push_back({{"id", id}, {"severity", severity}, {"message", message}, {"remedy", remedy}});
}

std::string Runtime::resolve_path(const std::string& path) const { return resolve_model_path(path, options_.models_dir); }

std::string resolve_model_path(const std::string& path, const std::string& models_dir) {
  if (path.empty()) LOUPE_THROW(InvalidArgument, "the model path is empty");
  fs::path p(path);
  if (p.is_relative() && !models_dir.empty()) {
    fs::path in_models = fs::path(models_dir) / p;
    if (fs::exists(in_models)) return in_models.string();
  }
  if (!fs::exists(p)) {
    std::ostringstream os;
    os << "model path '" << path << "' does not exist";
    if (p.is_relative() && !models_dir.empty())
      os << " (looked in the models folder '" << models_dir << "' and the working directory)";
    os << "; hint: see resources/models/catalog.json for where to get each model";
    throw Error(Status::NotFound, os.str());
  }
  return p.string();
}

std::shared_ptr<Session> Runtime::open_session(const std::string& path_in, const std::string& device_spec,
                                               Precision precision) {
  if (closed()) LOUPE_THROW(InvalidState, "the runtime was freed");
  const std::string path = resolve_path(path_in);
  cpu::apply_threads(threads_);  // loading runs on the caller's thread (OpenMP's count is per thread)
  const torch::Device device = device_spec.empty() ? device_ : parse_device(device_spec);

  const auto families = model_families();
  const ModelFamily* family = nullptr;
  std::string variant;
  for (const auto& f : families) {
    variant = f.detect(path);
    if (!variant.empty()) {
      family = &f;
      break;
    }
  }
  if (!family) {
    std::ostringstream os;
    os << "'" << path << "' is not a model Loupe recognises (families:";
    for (const auto& f : families) os << " " << f.name;
    os << "); hint: point at the folder that holds config.json (or model_index.json), "
          "or run loupe-cli inspect on it to see what is missing";
    throw Error(Status::BadModel, os.str());
  }
  std::string warning;
  const torch::ScalarType dtype = resolve_dtype(precision == Precision::Auto ? options_.precision : precision, device,
                                                &warning, family->bf16_on_fast_cpu);
  if (!warning.empty()) {
    log_.warn(warning);
    add_problem("half_precision_on_cpu", "info", warning, "choose precision fp32 (or auto) on the CPU");
  }
  log_.info("opening " + path + " as " + family->name + " (" + variant + ") on " + device.str() + ", " +
            dtype_name(dtype));

  // Weights are first loaded to the host, then moved once there is room under the budget.
  // The load's temporaries (converted copies) go back to the system when it ends, however it ends.
  struct ReleaseCpuCache {
    ~ReleaseCpuCache() { cpu::release_block_cache(); }
  } release_cpu_cache;
  ModelOptions mo;
  mo.device = torch::kCPU;
  mo.dtype = dtype;
  mo.models_dir = options_.models_dir;
  mo.device_budget_bytes = options_.vram_budget_bytes;
  std::shared_ptr<Model> model;
  try {
    model = family->load(path, mo);
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    LOUPE_THROW(BadModel, "loading '" << path << "' failed: " << e.what());
  }
  auto session = std::make_shared<Session>(shared_from_this(), model, path, device, dtype);
  session->resident_ = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    sessions_.push_back(session);
    session->last_used_ = ++use_clock_;
  }
  make_resident(*session);
  log_.info("opened " + path + ": " + format_bytes(session->bytes()));
  return session;
}

void Runtime::make_room(uint64_t bytes, const Session* keep) {
  const uint64_t budget = options_.vram_budget_bytes;
  if (budget == 0) return;
  while (true) {
    std::shared_ptr<Session> victim;
    uint64_t used = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto& w : sessions_) {
        auto s = w.lock();
        if (!s || s->closed_ || !s->resident_) continue;
        used += s->bytes_;
        if (s.get() != keep && s->active_jobs_ == 0 && (!victim || s->last_used_ < victim->last_used_))
          victim = s;
      }
      if (used + bytes <= budget) return;
      if (!victim) {
        log_.warn("VRAM budget of " + format_bytes(budget) + " exceeded: " + format_bytes(used + bytes) +
                  " needed and no idle session can be offloaded");
        return;  // the device may still have room: the budget is a preference, OOM is the hard limit
      }
      victim->resident_ = false;  // claimed: no job starts on it until make_resident runs
    }
    log_.info("offloading " + victim->path_ + " to host memory (VRAM budget " + format_bytes(budget) + ")");
    if (auto m = victim->model_) m->to(torch::kCPU);
    release_cached_device_memory();
  }
}

void Runtime::make_resident(Session& s) {
  std::lock_guard<std::mutex> residency(residency_mu_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    s.last_used_ = ++use_clock_;
    if (s.resident_) return;
  }
  make_room(s.bytes_, &s);
  std::shared_ptr<Model> m;
  {
    std::lock_guard<std::mutex> lock(mu_);
    m = s.model_;
  }
  if (!m) LOUPE_THROW(InvalidState, "session '" << s.path_ << "' was closed");
  m->to(s.device_);
  std::lock_guard<std::mutex> lock(mu_);
  s.resident_ = true;
}

std::shared_ptr<Job> Runtime::submit(Work work, ProgressFn progress, bool wants_preview,
                                     std::shared_ptr<Session> session, std::shared_ptr<Session> second) {
  auto job = std::make_shared<Job>(std::move(progress));
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_ || stopping_) throw Error(Status::InvalidState, "the runtime was freed");
    for (const auto* s : {&session, &second})
      if (*s && (*s)->closed_) throw Error(Status::InvalidState, "the session '" + (*s)->path_ + "' was closed");
    for (const auto* s : {&session, &second}) {
      if (!*s) continue;
      (*s)->jobs_.push_back(job);
      // forget finished jobs so the list stays short
      auto& js = (*s)->jobs_;
      js.erase(std::remove_if(js.begin(), js.end(), [](const std::weak_ptr<Job>& w) { return w.expired(); }),
               js.end());
    }
    queue_.push_back({job, std::move(work), std::move(session), wants_preview, std::move(second)});
  }
  queue_cv_.notify_one();
  return job;
}

std::shared_ptr<Job> Runtime::submit_request(const Request& unresolved, ProgressFn progress, bool wants_preview) {
  const tasks::Task* spec = tasks::find(unresolved.task);
  Request request = unresolved;
  if (spec && spec->runtime) tasks::resolve(*spec, request);
  if (request.task == "download") {
    const hub::DownloadSpec spec = hub::download_spec(request, options_.models_dir);
    return submit_background([spec](JobContext& ctx) { return hub::download(spec, ctx); }, std::move(progress));
  }
  if (request.task == "edit")
    LOUPE_THROW(InvalidArgument, "task 'edit' takes two sessions, a finder and a painter: submit it with "
                                 "loupe_edit_submit(&job, runtime, finder, painter, request, progress, user)");
  if (request.task != "selftest")
    LOUPE_THROW(InvalidArgument, "task '" << request.task
                                          << "' needs a model session: open one with loupe_session_open and "
                                             "use loupe_session_submit (the runtime itself runs only \"selftest\" "
                                             "and \"download\")");
  const torch::Device device = device_;
  return submit([device, request](JobContext& ctx) { return run_selftest(device, request, ctx); },
                std::move(progress), wants_preview);
}

std::shared_ptr<Job> Runtime::submit_background(Work work, ProgressFn progress) {
  auto job = std::make_shared<Job>(std::move(progress));
  std::vector<std::thread> finished;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_ || stopping_) throw Error(Status::InvalidState, "the runtime was freed");
    // Forget the threads of jobs that are done (joined outside the lock).
    for (auto it = background_.begin(); it != background_.end();) {
      if (it->first->state() == JobState::Done) {
        finished.push_back(std::move(it->second));
        it = background_.erase(it);
      } else {
        ++it;
      }
    }
    background_.emplace_back(job, std::thread([this, job, work = std::move(work)] { run_job(job, work, nullptr, false); }));
  }
  for (auto& t : finished) t.join();
  return job;
}

std::shared_ptr<Job> Runtime::submit_session(std::shared_ptr<Session> session, const Request& unresolved,
                                             ProgressFn progress, bool wants_preview) {
  auto model = session->model();
  if (!model) LOUPE_THROW(InvalidState, "the session '" << session->path() << "' was closed");
  const auto offered = model->tasks();
  const tasks::Task* spec = nullptr;
  for (const auto& t : offered)
    if (t.name == unresolved.task) spec = &t;
  if (!spec) {
    std::ostringstream os;
    os << "task '" << unresolved.task << "' is not offered by " << model->variant() << " (" << session->path()
       << "); it offers:";
    for (const auto& t : offered) os << " " << t.name;
    throw Error(Status::InvalidArgument, os.str());
  }
  // Defaults filled in, values checked: the model reads parameters that are always there.
  Request request = unresolved;
  tasks::resolve(*spec, request);
  Session* raw = session.get();
  return submit(
      [this, raw, request](JobContext& ctx) {
        make_resident(*raw);
        auto m = raw->model();
        if (!m) LOUPE_THROW(InvalidState, "the session '" << raw->path() << "' was closed");
        return std::make_unique<Result>(m->run(request, ctx));
      },
      std::move(progress), wants_preview, std::move(session));
}

std::shared_ptr<Job> Runtime::submit_edit(std::shared_ptr<Session> finder, std::shared_ptr<Session> painter,
                                          const Request& unresolved, ProgressFn progress, bool wants_preview) {
  if (unresolved.task != "edit")
    LOUPE_THROW(InvalidArgument, "loupe_edit_submit runs task 'edit', not '" << unresolved.task
                                 << "' (create the request with loupe_request_create(&request, \"edit\"))");
  Request request = unresolved;
  tasks::resolve(tasks::get("edit"), request);
  // A session as the chain sees it: its name, its model, and a way to make it resident.
  auto part = [this](const std::shared_ptr<Session>& s, const char* role) -> std::optional<edit::Part> {
    if (!s) return std::nullopt;
    if (&s->runtime() != this)
      LOUPE_THROW(InvalidArgument, "task 'edit': the " << role << " session '" << s->path()
                                   << "' belongs to another runtime; open both sessions on the runtime the job is submitted to");
    auto m = s->model();
    if (!m) LOUPE_THROW(InvalidState, "task 'edit': the " << role << " session '" << s->path() << "' was closed");
    edit::Part p;
    p.name = m->variant() + " (" + s->path() + ")";
    p.model = m;
    Session* raw = s.get();
    p.resident = [this, raw] {
      make_resident(*raw);
      auto model = raw->model();
      if (!model) LOUPE_THROW(InvalidState, "the session '" << raw->path() << "' was closed");
      return model;
    };
    return p;
  };
  auto f = part(finder, "finder"), p = part(painter, "painter");
  edit::check(request, f ? &*f : nullptr, p ? &*p : nullptr);
  // only the sessions the job uses
  if (request.mask) f.reset(), finder.reset();
  if (!request.flag("paint")) p.reset(), painter.reset();
  if (f) f->model.reset();  // the job holds sessions, not models (a closed session frees its weights)
  if (p) p->model.reset();
  return submit(
      [request, f, p](JobContext& ctx) { return edit::run(request, f ? &*f : nullptr, p ? &*p : nullptr, ctx); },
      std::move(progress), wants_preview, finder ? finder : painter, finder ? painter : nullptr);
}

void Runtime::worker_loop() {
  cpu::apply_threads(threads_);  // OpenMP's thread count is per thread: set it on the worker too
  while (true) {
    Queued q;
    {
      std::unique_lock<std::mutex> lock(mu_);
      queue_cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping and nothing left
      q = std::move(queue_.front());
      queue_.pop_front();
      running_ = q.job;
      if (q.session) q.session->active_jobs_++;
      if (q.second) q.second->active_jobs_++;
    }
    run_job(q.job, q.work, q.session, q.wants_preview);
    {
      std::lock_guard<std::mutex> lock(mu_);
      running_.reset();
      if (q.session) q.session->active_jobs_--;
      if (q.second) q.second->active_jobs_--;
    }
    // The job's session may hold the last reference to this runtime (the host let go of both
    // while the job finished): then ~Runtime runs right here, on this thread, detaches it and
    // raises the flag; nothing of `this` may be touched after that.
    const auto gone = worker_gone_;
    q = Queued{};
    if (*gone) return;
  }
}

void Runtime::run_job(const std::shared_ptr<Job>& job, const Work& work, const std::shared_ptr<Session>& session,
                      bool wants_preview) {
  if (job->cancel_requested()) {
    job->finish(Status::Cancelled, "the job was cancelled before it started", nullptr);
    return;
  }
  job->mark_running();
  // The job's temporaries go back to the system before it is reported finished, however it ends
  // (the CPU block cache is not kept between jobs).
  auto finish = [&job](Status status, const std::string& message, std::unique_ptr<Result> result) {
    cpu::release_block_cache();
    job->finish(status, message, std::move(result));
  };
  JobContext ctx(job.get());
  ctx.set_wants_preview(wants_preview);
  try {
    torch::NoGradGuard no_grad;
    auto result = work(ctx);
    finish(Status::Ok, "", std::move(result));
  } catch (const Error& e) {
    if (e.status() != Status::Cancelled) log_.error(e.what());
    finish(e.status(), e.what(), nullptr);
  } catch (const std::exception& e) {
    if (compat::is_out_of_memory(e)) {
      release_cached_device_memory();
      std::string where = session ? session->path() : std::string("the self-test");
      std::string msg = "out of device memory while running " + where +
                        "; hint: lower the resolution or batch size, use fp16, choose a smaller variant, "
                        "or close other sessions (" + std::string(e.what()).substr(0, 300) + ")";
      add_problem("out_of_memory_seen", "error", "a job ran out of device memory",
                  "lower the resolution or batch size, use fp16, choose a smaller variant, or set a lower "
                  "VRAM budget so idle models are offloaded");
      log_.error(msg);
      finish(Status::OutOfMemory, msg, nullptr);
    } else {
      std::string msg = std::string("internal error: ") + e.what();
      log_.error(msg);
      finish(Status::Internal, msg, nullptr);
    }
  } catch (...) {
    log_.error("internal error: unknown exception");
    finish(Status::Internal, "internal error: unknown exception", nullptr);
  }
}

void Runtime::shutdown() {
  std::deque<Queued> dropped;
  std::vector<std::shared_ptr<Session>> sessions;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return;
    stopping_ = true;
    dropped.swap(queue_);
    if (running_) running_->cancel();
  }
  queue_cv_.notify_all();
  for (auto& q : dropped) q.job->finish(Status::Cancelled, "the runtime was freed before the job ran", nullptr);
  if (worker_.joinable()) {
    if (worker_.get_id() == std::this_thread::get_id()) {
      // The worker dropped the last reference (see worker_loop): it cannot join itself.
      *worker_gone_ = true;
      worker_.detach();
    } else {
      worker_.join();
    }
  }
  std::vector<std::pair<std::shared_ptr<Job>, std::thread>> background;
  {
    std::lock_guard<std::mutex> lock(mu_);
    background.swap(background_);
  }
  for (auto& b : background) b.first->cancel();
  for (auto& b : background) b.second.join();
  {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
    for (auto& w : sessions_)
      if (auto s = w.lock()) sessions.push_back(s);
    sessions_.clear();
  }
  for (auto& s : sessions) s->close();
  dropped.clear();
}

nlohmann::json Runtime::diagnostics() {
  nlohmann::json j;
  j["build"] = build_info();
  j["devices"] = device_info();
  j["cpu"] = cpu::to_json(threads_);
  j["cpu"]["block_cache"] = cpu::to_json(cpu::block_cache_stats());
  j["runtime"] = {{"device", device_name_},
                  {"vram_budget_bytes", options_.vram_budget_bytes},
                  {"models_dir", options_.models_dir}};
  auto& js = j["sessions"] = nlohmann::json::array();
  std::vector<std::shared_ptr<Session>> sessions;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& w : sessions_)
      if (auto s = w.lock(); s && !s->closed_) sessions.push_back(s);
    j["queued_jobs"] = queue_.size();
    j["job_running"] = static_cast<bool>(running_);
    j["problems"] = problems_;
  }
  for (auto& s : sessions) {
    auto m = s->model();
    if (!m) continue;
    js.push_back({{"path", s->path()}, {"family", m->family()}, {"variant", m->variant()},
                  {"device", s->device().str()}, {"dtype", dtype_name(s->dtype())}, {"bytes", s->bytes()},
                  {"resident", s->resident()}});
  }
  log_.to_json(j["log"]);
  return j;
}

nlohmann::json Runtime::inspect(const std::string& path) const { return inspect_model(path, options_.models_dir); }

nlohmann::json inspect_model(const std::string& path, const std::string& models_dir) {
  nlohmann::json report;
  report["path"] = path;
  report["problems"] = nlohmann::json::array();
  std::string resolved;
  try {
    resolved = resolve_model_path(path, models_dir);
  } catch (const Error& e) {
    report["problems"].push_back({{"severity", "error"}, {"message", e.what()},
                                  {"remedy", "download the model into the models folder (see the catalog)"}});
    return report;
  }
  report["path"] = resolved;
  for (const auto& f : model_families()) {
    std::string variant;
    try {
      variant = f.detect(resolved);
    } catch (const std::exception& e) {
      report["problems"].push_back({{"severity", "error"}, {"message", e.what()}, {"remedy", ""}});
    }
    if (variant.empty()) continue;
    report["family"] = f.name;
    report["variant"] = variant;
    report["tasks"] = f.tasks;
    if (f.inspect) f.inspect(resolved, report);
    return report;
  }
  report["problems"].push_back(
      {{"severity", "error"},
       {"message", "no model family recognises '" + resolved + "'"},
       {"remedy", "point at the folder holding config.json or model_index.json of a supported model"}});
  return report;
}

}  // namespace loupe
