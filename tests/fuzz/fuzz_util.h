// Shared by the libFuzzer targets of tests/fuzz (issue 19): each target's LLVMFuzzerTestOneInput
// hands the input to one of the SDK's readers. A loupe::Error (the documented way a reader refuses
// bad input) is the expected outcome; any other exception escaping a reader, a crash or a sanitizer
// report is a finding. The same sources, built with replay_main.cpp instead of libFuzzer, run the
// committed corpus and regression inputs as ordinary CTest tests (tests/fuzz/CMakeLists.txt).
#pragma once
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <string>

#include "core/error.h"

namespace loupe::fuzz {

// A scratch folder of this process (removed at exit).
inline const std::filesystem::path& scratch() {
  static const std::filesystem::path dir = [] {
    auto d = std::filesystem::temp_directory_path() / ("loupe-fuzz-" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(std::filesystem::temp_directory_path() / ("loupe-fuzz-" + std::to_string(::getpid())), ec);
    });
    return d;
  }();
  return dir;
}

// Writes bytes to scratch()/name and returns the path.
inline std::string write_file(const std::string& name, const uint8_t* data, size_t size) {
  const auto path = (scratch() / name).string();
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  return path;
}

// Runs fn; a loupe::Error is fine, anything else aborts with the message (a finding).
template <class F>
void expect_only_loupe_errors(const char* what, F&& fn) {
  try {
    fn();
  } catch (const loupe::Error&) {
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: an exception other than loupe::Error escaped: %s\n", what, e.what());
    std::abort();
  }
}

}  // namespace loupe::fuzz
