// Device facts for diagnostics, memory queries and cache release. The CUDA parts are compiled
// only against a CUDA build of libtorch (LOUPE_WITH_CUDA, set by CMake).
#include <fstream>
#include <sstream>
#include <thread>

#include <torch/version.h>

#include "core/cpu_cache.h"
#include "core/runtime.h"

#if LOUPE_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_runtime_api.h>
#endif

namespace loupe {

nlohmann::json build_info() {
  nlohmann::json b;
  b["loupe"] = LOUPE_VERSION_STRING;
  b["libtorch"] = TORCH_VERSION;
  b["compiler"] = __VERSION__;
#if LOUPE_WITH_CUDA
  int rt = 0;
  cudaRuntimeGetVersion(&rt);
  b["cuda_runtime"] = std::to_string(rt / 1000) + "." + std::to_string((rt % 1000) / 10);
  b["cuda"] = true;
#else
  b["cuda"] = false;
  b["cuda_runtime"] = nullptr;
#endif
  // Compiled GPU architectures and other build flags, as libtorch reports them.
  const std::string config = at::show_config();
  std::string archs;
  for (const std::string key : {"TORCH_CUDA_ARCH_LIST", "arch=compute_"}) {
    auto pos = config.find(key);
    if (pos != std::string::npos) {
      archs = config.substr(pos, config.find('\n', pos) - pos);
      break;
    }
  }
  b["gpu_archs"] = archs;
  b["threads"] = at::get_num_threads();
  return b;
}

static std::pair<uint64_t, uint64_t> host_memory() {
  std::ifstream f("/proc/meminfo");
  std::string key, unit;
  uint64_t value = 0, total = 0, avail = 0;
  while (f >> key >> value >> unit) {
    if (key == "MemTotal:") total = value * 1024;
    if (key == "MemAvailable:") avail = value * 1024;
  }
  return {avail, total};
}

std::pair<uint64_t, uint64_t> device_memory(const torch::Device& device) {
#if LOUPE_WITH_CUDA
  if (device.is_cuda()) {
    c10::cuda::CUDAGuard guard(device.index() < 0 ? 0 : device.index());
    size_t free_b = 0, total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess) return {free_b, total_b};
    cudaGetLastError();
    return {0, 0};
  }
#endif
  (void)device;
  return host_memory();
}

nlohmann::json device_info() {
  nlohmann::json devs = nlohmann::json::array();
  {
    auto [free_b, total_b] = host_memory();
    devs.push_back({{"name", "cpu"}, {"type", "cpu"}, {"threads", std::thread::hardware_concurrency()},
                    {"memory_total", total_b}, {"memory_free", free_b}});
  }
#if LOUPE_WITH_CUDA
  const int n = torch::cuda::is_available() ? static_cast<int>(torch::cuda::device_count()) : 0;
  int driver = 0;
  cudaDriverGetVersion(&driver);
  for (int i = 0; i < n; ++i) {
    const cudaDeviceProp* p = at::cuda::getDeviceProperties(i);
    auto [free_b, total_b] = device_memory(torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(i)));
    devs.push_back({{"name", p->name},
                    {"type", "cuda"},
                    {"index", i},
                    {"compute_capability", std::to_string(p->major) + "." + std::to_string(p->minor)},
                    {"memory_total", total_b},
                    {"memory_free", free_b},
                    {"driver", std::to_string(driver / 1000) + "." + std::to_string((driver % 1000) / 10)}});
  }
#endif
  return devs;
}

void release_cached_device_memory() {
  cpu::release_block_cache();
#if LOUPE_WITH_CUDA
  if (torch::cuda::is_available()) c10::cuda::CUDACachingAllocator::emptyCache();
#endif
}

}  // namespace loupe
