// What both benchmarks measure alike: median wall time after warm-up runs (synchronised on CUDA),
// and peak device memory sampled from the device's used memory every millisecond (the method the
// Python reference runs in bench/*_reference.py use too).
#pragma once
#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <thread>
#include <vector>

#include <torch/torch.h>

#include "core/runtime.h"

namespace loupe::bench {

inline void sync(const torch::Device& d) {
  if (d.is_cuda()) torch::cuda::synchronize(d.index() < 0 ? 0 : d.index());
}

// Median seconds of n runs after `warm` warm-up runs.
inline double timeit(const torch::Device& d, const std::function<void()>& fn, int warm, int n) {
  for (int i = 0; i < warm; ++i) fn();
  sync(d);
  std::vector<double> ts;
  for (int i = 0; i < n; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    sync(d);
    ts.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ts.begin(), ts.end());
  return ts[ts.size() / 2];
}

// Samples the device's used memory every millisecond while alive.
class PeakSampler {
 public:
  explicit PeakSampler(torch::Device d) : d_(d) {
    t_ = std::thread([this] {
      while (!stop_) {
        const auto [free, total] = device_memory(d_);
        if (total > free) peak_ = std::max<uint64_t>(peak_, total - free);
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
