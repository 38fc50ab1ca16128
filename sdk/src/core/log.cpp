#include "core/log.h"

#include <chrono>
#include <nlohmann/json.hpp>

namespace loupe {

const char* log_level_name(LogLevel level) {
  switch (level) {
    case LogLevel::Debug: return "debug";
    case LogLevel::Info: return "info";
    case LogLevel::Warning: return "warning";
    case LogLevel::Error: return "error";
  }
  return "info";
}

void Log::set_sink(Sink sink, LogLevel min_level) {
  std::lock_guard<std::mutex> lock(mu_);
  sink_ = std::move(sink);
  min_level_ = min_level;
}

void Log::write(LogLevel level, const std::string& message) {
  Sink sink;
  {
    std::lock_guard<std::mutex> lock(mu_);
    const auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::system_clock::now().time_since_epoch()).count();
    records_.push_back({now, level, message});
    if (records_.size() > kKeep) records_.pop_front();
    if (level >= min_level_) sink = sink_;
  }
  if (sink) sink(level, message);  // outside the lock: the sink may log or read diagnostics
}

void Log::to_json(nlohmann::json& out) const {
  std::lock_guard<std::mutex> lock(mu_);
  out = nlohmann::json::array();
  for (const auto& r : records_)
    out.push_back({{"time_ms", r.time_ms}, {"level", log_level_name(r.level)}, {"message", r.message}});
}

}  // namespace loupe
