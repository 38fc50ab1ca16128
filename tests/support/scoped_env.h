// Environment variables set (or unset) for a scope and put back after, in reverse order; shared by
// the C++ test binaries.
#pragma once
#include <cstdlib>
#include <optional>
#include <string>
#include <utility>
#include <vector>

struct EnvGuard {
  EnvGuard() = default;
  EnvGuard(const EnvGuard&) = delete;
  EnvGuard& operator=(const EnvGuard&) = delete;
  void set(const std::string& name, const std::optional<std::string>& value) {
    const char* old = std::getenv(name.c_str());
    saved.emplace_back(name, old ? std::optional<std::string>(old) : std::nullopt);
    if (value) ::setenv(name.c_str(), value->c_str(), 1);
    else ::unsetenv(name.c_str());
  }
  ~EnvGuard() {
    for (auto it = saved.rbegin(); it != saved.rend(); ++it) {
      if (it->second) ::setenv(it->first.c_str(), it->second->c_str(), 1);
      else ::unsetenv(it->first.c_str());
    }
  }
  std::vector<std::pair<std::string, std::optional<std::string>>> saved;
};

// One variable: Env e("HF_TOKEN", "abc"); Env e("HF_HOME", nullptr) unsets it.
struct Env : EnvGuard {
  Env(const char* name, const char* value) { set(name, value ? std::optional<std::string>(value) : std::nullopt); }
};
