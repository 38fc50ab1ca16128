// Loupe internal error type. Everything below abi/ throws loupe::Error; the ABI layer turns it
// into a loupe_status and the thread-local message read by loupe_last_error().
#pragma once
#include <stdexcept>
#include <string>

namespace loupe {

// Mirrors loupe_status in loupe.h (kept numerically identical; checked by a static_assert in abi/).
enum class Status : int {
  Ok = 0,
  InvalidArgument = -1,
  NotFound = -2,
  BadModel = -3,
  Unsupported = -4,
  OutOfMemory = -5,
  Cancelled = -6,
  Timeout = -7,
  InvalidState = -8,
  Internal = -9,
};

class Error : public std::runtime_error {
 public:
  Error(Status s, const std::string& msg) : std::runtime_error(msg), status_(s) {}
  Status status() const { return status_; }
 private:
  Status status_;
};

// Helpers: LOUPE_THROW(BadModel, "file " << path << ": ...")
}  // namespace loupe

#include <sstream>
#define LOUPE_THROW(code, stream_expr)                                        \
  do {                                                                        \
    std::ostringstream loupe_os_;                                             \
    loupe_os_ << stream_expr;                                                 \
    throw ::loupe::Error(::loupe::Status::code, loupe_os_.str());             \
  } while (0)
#define LOUPE_CHECK(cond, code, stream_expr) \
  do { if (!(cond)) LOUPE_THROW(code, stream_expr); } while (0)
