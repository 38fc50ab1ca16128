// The runtime's log: records go to the host's callback (if any) and into a ring buffer that
// diagnostics reports. Thread-safe.
#pragma once
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>

#include <nlohmann/json_fwd.hpp>

namespace loupe {

enum class LogLevel { Debug = 0, Info = 1, Warning = 2, Error = 3 };

class Log {
 public:
  using Sink = std::function<void(LogLevel, const std::string&)>;
  void set_sink(Sink sink, LogLevel min_level);
  void write(LogLevel level, const std::string& message);
  void debug(const std::string& m) { write(LogLevel::Debug, m); }
  void info(const std::string& m) { write(LogLevel::Info, m); }
  void warn(const std::string& m) { write(LogLevel::Warning, m); }
  void error(const std::string& m) { write(LogLevel::Error, m); }
  // The most recent records, oldest first: [{time_ms, level, message}].
  void to_json(nlohmann::json& out) const;

 private:
  struct Record {
    int64_t time_ms;
    LogLevel level;
    std::string message;
  };
  static constexpr size_t kKeep = 200;
  mutable std::mutex mu_;
  std::deque<Record> records_;
  Sink sink_;
  LogLevel min_level_ = LogLevel::Info;
};

const char* log_level_name(LogLevel level);

}  // namespace loupe
