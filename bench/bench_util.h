// What both benchmarks measure alike: median wall time after warm-up runs (synchronised on CUDA),
// and peak device memory sampled every millisecond: the device's used memory on a GPU, the process's
// resident set on the CPU (the method the Python reference runs in bench/*_reference.py use too).
#pragma once
#include <algorithm>
#include <atomic>
#include <chrono>
#include <ctime>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include <torch/torch.h>

#include "core/runtime.h"

namespace loupe::bench {

inline void sync(const torch::Device& d) {
  if (d.is_cuda()) torch::cuda::synchronize(d.index() < 0 ? 0 : d.index());
}

// Median seconds of n runs after `warm` warm-up runs. cpu_s (optional): the median process CPU time
// of the same runs (all threads), which other programs on the machine disturb less than wall time.
inline double timeit(const torch::Device& d, const std::function<void()>& fn, int warm, int n,
                     double* cpu_s = nullptr) {
  for (int i = 0; i < warm; ++i) fn();
  sync(d);
  std::vector<double> ts, cs;
  for (int i = 0; i < n; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    const std::clock_t c0 = std::clock();
    fn();
    sync(d);
    ts.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    cs.push_back(static_cast<double>(std::clock() - c0) / CLOCKS_PER_SEC);
  }
  std::sort(ts.begin(), ts.end());
  std::sort(cs.begin(), cs.end());
  if (cpu_s) *cpu_s = cs[cs.size() / 2];
  return ts[ts.size() / 2];
}

// The process's resident set now (VmRSS), or its peak so far (VmHWM), in bytes (Linux).
inline uint64_t rss_bytes(bool peak = false) {
  std::ifstream f("/proc/self/status");
  const std::string key = peak ? "VmHWM:" : "VmRSS:";
  for (std::string line; std::getline(f, line);)
    if (line.rfind(key, 0) == 0) return std::stoull(line.substr(key.size())) * 1024;
  return 0;
}

// Samples the device's used memory (on the CPU: the process's resident set) every millisecond
// while alive.
class PeakSampler {
 public:
  explicit PeakSampler(torch::Device d) : d_(d) {
    t_ = std::thread([this] {
      while (!stop_) {
        if (d_.is_cpu()) {
          peak_ = std::max<uint64_t>(peak_, rss_bytes());
        } else {
          const auto [free, total] = device_memory(d_);
          if (total > free) peak_ = std::max<uint64_t>(peak_, total - free);
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
    });
  }
  ~PeakSampler() { stop(); }
  uint64_t stop() {
    if (t_.joinable()) {
      stop_ = true;
      t_.join();
    }
    return peak_;
  }

 private:
  torch::Device d_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> peak_{0};
  std::thread t_;
};

}  // namespace loupe::bench
