#include "core/job.h"

namespace loupe {

bool Job::wait(int64_t timeout_ms) {
  std::unique_lock<std::mutex> lock(mu_);
  auto done = [&] { return state_.load() == JobState::Done; };
  if (timeout_ms < 0) {
    done_cv_.wait(lock, done);
    return true;
  }
  return done_cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms), done);
}

Status Job::status() const {
  std::lock_guard<std::mutex> lock(mu_);
  return state_.load() == JobState::Done ? status_ : Status::Timeout;
}

std::string Job::message() const {
  std::lock_guard<std::mutex> lock(mu_);
  return message_;
}

std::unique_ptr<Result> Job::take_result() {
  std::lock_guard<std::mutex> lock(mu_);
  if (state_.load() != JobState::Done)
    throw Error(Status::InvalidState, "the job has not finished yet: wait for it with loupe_job_wait first");
  if (status_ != Status::Ok) throw Error(status_, message_);
  if (result_taken_) throw Error(Status::InvalidState, "the job's result was already taken");
  result_taken_ = true;
  return std::move(result_);
}

void Job::finish(Status status, const std::string& message, std::unique_ptr<Result> result) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    status_ = status;
    message_ = message;
    result_ = std::move(result);
    if (status == Status::Ok) fraction_.store(1.0f);
    state_.store(JobState::Done);
  }
  done_cv_.notify_all();
}

bool Job::report(const Progress& p) {
  if (p.total > 0) fraction_.store(static_cast<float>(p.step) / static_cast<float>(p.total));
  if (progress_fn_ && !progress_fn_(p)) cancel();
  return !cancel_requested();
}

void JobContext::progress(int step, int total, const std::string& stage, const Image* preview) {
  if (!job_) return;
  Progress p;
  p.step = step;
  p.total = total;
  p.stage = stage;
  p.preview = wants_preview_ ? preview : nullptr;
  job_->report(p);
  check_cancelled();
}

void JobContext::progress_text(int step, int total, const std::string& stage, const std::string& text) {
  if (!job_) return;
  Progress p;
  p.step = step;
  p.total = total;
  p.stage = stage;
  p.text = &text;
  job_->report(p);
  check_cancelled();
}

}  // namespace loupe
