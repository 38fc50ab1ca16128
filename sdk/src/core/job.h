// Jobs: a submitted request with its state, progress, cancel flag and result.
// A Job is shared between the caller's handle and the runtime's worker (shared_ptr).
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "core/error.h"
#include "core/types.h"

namespace loupe {

struct Progress {
  int step = 0;
  int total = 0;
  std::string stage;
  const Image* preview = nullptr;  // valid only during the callback
  const std::string* text = nullptr;  // text generation: the output text so far; valid only during the callback
};

// Returns false to stop the job.
using ProgressFn = std::function<bool(const Progress&)>;

enum class JobState { Queued = 0, Running = 1, Done = 2 };

class Job {
 public:
  explicit Job(ProgressFn progress) : progress_fn_(std::move(progress)) {}

  JobState state() const { return state_.load(); }
  float fraction() const { return fraction_.load(); }
  void cancel() { cancel_requested_.store(true); }
  bool cancel_requested() const { return cancel_requested_.load(); }

  // Waits up to timeout (negative: forever); true when done.
  bool wait(int64_t timeout_ms);
  // Final status and message (valid once done).
  Status status() const;
  std::string message() const;
  // Moves the result out (once). Throws InvalidState if not done, taken, or the job failed.
  std::unique_ptr<Result> take_result();

  // Worker side.
  void mark_running() { state_.store(JobState::Running); }
  void finish(Status status, const std::string& message, std::unique_ptr<Result> result);
  bool report(const Progress& p);  // calls the callback; false if the job must stop

 private:
  ProgressFn progress_fn_;
  std::atomic<JobState> state_{JobState::Queued};
  std::atomic<bool> cancel_requested_{false};
  std::atomic<float> fraction_{0.0f};
  mutable std::mutex mu_;
  std::condition_variable done_cv_;
  Status status_ = Status::Ok;
  std::string message_;
  std::unique_ptr<Result> result_;
  bool result_taken_ = false;
};

// What running code sees of its job: progress and cancellation.
class JobContext {
 public:
  explicit JobContext(Job* job) : job_(job) {}
  bool cancelled() const { return job_ && job_->cancel_requested(); }
  // Throws Error(Cancelled) if cancellation was asked for; call between steps.
  void check_cancelled() const {
    if (cancelled()) throw Error(Status::Cancelled, "the job was cancelled");
  }
  // Reports progress; if the callback returns false the job is cancelled (and this throws).
  void progress(int step, int total, const std::string& stage, const Image* preview = nullptr);
  // The same for text generation, with the output text so far (the partial answer, caption, ...).
  void progress_text(int step, int total, const std::string& stage, const std::string& text);
  // True when the caller's callback is interested in previews (set by the ABI layer).
  bool wants_preview() const { return wants_preview_; }
  void set_wants_preview(bool v) { wants_preview_ = v; }

 private:
  Job* job_;
  bool wants_preview_ = false;
};

}  // namespace loupe
