// The runtime: device and precision policy, VRAM budget over its sessions, the job worker
// (one thread: the device runs one job at a time, in submission order), log and diagnostics.
#pragma once
#include <condition_variable>
#include <deque>
#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include "core/job.h"
#include "core/log.h"
#include "core/model.h"

namespace loupe {

enum class Precision { Auto = 0, FP32 = 1, FP16 = 2, BF16 = 3 };

struct RuntimeOptions {
  std::string device = "auto";
  Precision precision = Precision::Auto;
  uint64_t vram_budget_bytes = 0;
  std::string models_dir;
  int num_threads = 0;  // CPU threads; 0 = LOUPE_NUM_THREADS, else the physical cores
};

// Parses "auto" / "cpu" / "cuda" / "cuda:N"; errors name the string and what is available.
torch::Device parse_device(const std::string& spec);
// The dtype a session gets. CUDA: the requested one (auto = fp16). CPU: fp32, except bf16 where the
// processor has native bf16 (AVX512-BF16 or AMX) and either bf16 was asked for or the precision is
// auto and the family runs well in bf16 (`bf16_family`: diffusion); fp16, or bf16 on a CPU without
// it, falls back to fp32 with a warning (recorded as a problem).
torch::ScalarType resolve_dtype(Precision p, const torch::Device& device, std::string* warning,
                                bool bf16_family = false);
const char* dtype_name(torch::ScalarType t);

// Resolves a model path (relative paths: models_dir first, then the working directory);
// NotFound with a hint when it is in neither.
std::string resolve_model_path(const std::string& path, const std::string& models_dir);
// Checks a model folder without loading it (loupe_model_inspect): family, variant, problems.
nlohmann::json inspect_model(const std::string& path, const std::string& models_dir);

class Runtime;

// An open model with its residency state. Created by Runtime::open_session.
class Session {
 public:
  Session(std::shared_ptr<Runtime> rt, std::shared_ptr<Model> model, std::string path,
          torch::Device device, torch::ScalarType dtype);
  Runtime& runtime() { return *runtime_; }
  std::shared_ptr<Model> model() const;
  const std::string& path() const { return path_; }
  torch::Device device() const { return device_; }
  torch::ScalarType dtype() const { return dtype_; }
  bool resident() const;
  bool closed() const;
  uint64_t bytes() const { return bytes_.load(); }
  // Counts the model's bytes again after its weights changed (an external VAE, a LoRA), so that
  // loupe_session_describe and the VRAM budget see what the session holds now.
  void recount_bytes();

  // Cancels and waits for this session's jobs, then drops the model. Idempotent.
  void close();

 private:
  friend class Runtime;
  std::shared_ptr<Runtime> runtime_;
  std::shared_ptr<Model> model_;
  std::string path_;
  torch::Device device_;
  torch::ScalarType dtype_;
  std::atomic<uint64_t> bytes_{0};
  // Guarded by Runtime::mu_.
  bool resident_ = true;
  bool closed_ = false;
  uint64_t last_used_ = 0;
  int active_jobs_ = 0;
  std::vector<std::weak_ptr<Job>> jobs_;
};

using Work = std::function<std::unique_ptr<Result>(JobContext&)>;

class Runtime : public std::enable_shared_from_this<Runtime> {
 public:
  static std::shared_ptr<Runtime> create(const RuntimeOptions& options, Log::Sink sink, LogLevel level);
  ~Runtime();

  const RuntimeOptions& options() const { return options_; }
  torch::Device device() const { return device_; }
  const std::string& device_name() const { return device_name_; }
  int threads() const { return threads_; }
  Log& log() { return log_; }
  bool closed() const;

  // Opens a model folder or file (relative to models_dir first). Throws loupe::Error.
  std::shared_ptr<Session> open_session(const std::string& path, const std::string& device_spec,
                                        Precision precision);
  // Queues work. The job is returned at once.
  // `session` (and `second`, for a job that uses two: task "edit") count as busy while the job runs
  // (never offloaded then), and closing either cancels the job.
  std::shared_ptr<Job> submit(Work work, ProgressFn progress, bool wants_preview,
                              std::shared_ptr<Session> session = nullptr, std::shared_ptr<Session> second = nullptr);
  // Runtime-level tasks ("selftest"; "download", which runs through submit_background).
  std::shared_ptr<Job> submit_request(const Request& request, ProgressFn progress, bool wants_preview);
  // Work that does not use the device (downloads) runs on a thread of its own, so that it neither
  // waits for inference nor holds it up. shutdown() cancels it and joins the thread.
  std::shared_ptr<Job> submit_background(Work work, ProgressFn progress);
  std::shared_ptr<Job> submit_session(std::shared_ptr<Session> session, const Request& request,
                                      ProgressFn progress, bool wants_preview);
  // Task "edit": find with `finder`, paint with `painter` (either may be null where the request
  // does not need it: a mask given, paint = 0). Checked at submit (core/edit.h).
  std::shared_ptr<Job> submit_edit(std::shared_ptr<Session> finder, std::shared_ptr<Session> painter,
                                   const Request& request, ProgressFn progress, bool wants_preview);

  // Cancels all jobs, joins the worker, releases every session's weights. Idempotent.
  void shutdown();

  nlohmann::json diagnostics();
  // Inspects a model folder without loading it (loupe_model_inspect).
  nlohmann::json inspect(const std::string& path) const;
  std::string resolve_path(const std::string& path) const;

  // Records a detected problem for diagnostics (deduplicated by id).
  void add_problem(const std::string& id, const std::string& severity, const std::string& message,
                   const std::string& remedy);

 private:
  explicit Runtime(const RuntimeOptions& options);
  void worker_loop();
  void run_job(const std::shared_ptr<Job>& job, const Work& work, const std::shared_ptr<Session>& session,
               bool wants_preview);
  // Makes room under the VRAM budget for `bytes` more, offloading idle sessions (LRU).
  void make_room(uint64_t bytes, const Session* keep);
  void make_resident(Session& s);
  void session_job_done(Session& s);
  friend class Session;

  RuntimeOptions options_;
  torch::Device device_{torch::kCPU};
  std::string device_name_;
  int threads_ = 1;  // CPU threads of the worker (and of threads that open sessions)
  Log log_;

  mutable std::mutex mu_;
  std::mutex residency_mu_;  // serialises moving weights between host and device
  std::condition_variable queue_cv_;
  struct Queued {
    std::shared_ptr<Job> job;
    Work work;
    std::shared_ptr<Session> session;
    bool wants_preview;
    std::shared_ptr<Session> second;  // a job's second session (task "edit"), or null
  };
  std::deque<Queued> queue_;
  std::shared_ptr<Job> running_;
  bool stopping_ = false;
  bool closed_ = false;
  std::thread worker_;
  // Raised when the runtime is destroyed on its own worker thread (worker_loop then returns at once).
  std::shared_ptr<std::atomic<bool>> worker_gone_ = std::make_shared<std::atomic<bool>>(false);
  std::vector<std::pair<std::shared_ptr<Job>, std::thread>> background_;  // submit_background's
  std::vector<std::weak_ptr<Session>> sessions_;
  uint64_t use_clock_ = 0;
  nlohmann::json problems_ = nlohmann::json::array();
};

// Device facts for diagnostics and the self-test (CUDA parts compiled only with CUDA).
nlohmann::json build_info();
nlohmann::json device_info();
// Frees cached device memory after an out-of-memory error.
void release_cached_device_memory();
// Bytes free / total on a device (host memory for CPU).
std::pair<uint64_t, uint64_t> device_memory(const torch::Device& device);

std::unique_ptr<Result> run_selftest(const torch::Device& device, const Request& request, JobContext& ctx);

}  // namespace loupe
