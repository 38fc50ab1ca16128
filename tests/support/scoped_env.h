// Sets (or with nullptr unsets) an environment variable for a scope and restores it after; shared
// by the C++ test binaries.
#pragma once
#include <cstdlib>
#include <string>

class Env {
 public:
  Env(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old, had_ = true;
    if (value) setenv(name, value, 1);
    else unsetenv(name);
  }
  ~Env() {
    if (had_) setenv(name_.c_str(), old_.c_str(), 1);
    else unsetenv(name_.c_str());
  }
  Env(const Env&) = delete;
  Env& operator=(const Env&) = delete;

 private:
  std::string name_, old_;
  bool had_ = false;
};
