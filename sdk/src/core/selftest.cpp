// The device self-test: allocate, run a matmul whose result is known exactly, verify it, and
// measure memory bandwidth and matmul throughput. It is the first real job and the troubleshooting
// panel's "Run self-test".
#include <chrono>

#include "core/runtime.h"

namespace loupe {

namespace {

void sync(const torch::Device& d) {
  if (d.is_cuda()) torch::cuda::synchronize(d.index() < 0 ? 0 : d.index());
}

template <class F>
double seconds_of(const torch::Device& d, F&& f) {
  sync(d);
  auto t0 = std::chrono::steady_clock::now();
  f();
  sync(d);
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

std::unique_ptr<Result> run_selftest(const torch::Device& device, const Request& request, JobContext& ctx) {
  const bool gpu = device.is_cuda();
  // Parameters (small defaults on the CPU so that the test suite stays quick).
  // 0 (the task table's default) = the device's default.
  auto param = [&](const char* key, int64_t gpu_def, int64_t cpu_def, int64_t lo, int64_t hi) {
    const int64_t v = request.get_int(key, 0, 0, hi);
    return v == 0 ? (gpu ? gpu_def : cpu_def) : request.get_int(key, 0, lo, hi);
  };
  const int64_t mib = param("alloc_mib", 1024, 64, 1, int64_t(1) << 30);
  const int64_t n = param("matmul_size", 8192, 512, 64, 16384);
  const int64_t iterations = param("iterations", 20, 3, 1, 100000);
  const int total = static_cast<int>(3 + iterations);
  int step = 0;
  auto result = std::make_unique<Result>();
  result->task = "selftest";
  result->strings["device"] = device.str();
  auto [free0, total_mem] = device_memory(device);
  result->numbers["memory_total_bytes"] = static_cast<double>(total_mem);
  result->numbers["memory_free_bytes"] = static_cast<double>(free0);

  // 1. Allocation: the whole block must be writable and read back.
  ctx.progress(step, total, "allocate");
  {
    auto block = torch::empty({mib * (1 << 20) / 4}, torch::dtype(torch::kFloat32).device(device));
    block.fill_(1.0f);
    const double sum = block.sum(torch::kFloat64).item<double>();
    result->numbers["alloc_ok"] = sum == static_cast<double>(block.numel()) ? 1 : 0;
    result->numbers["alloc_bytes"] = static_cast<double>(block.numel() * 4);
    // 2. Bandwidth: a device-to-device copy reads and writes every byte once.
    auto dst = torch::empty_like(block);
    dst.copy_(block);  // warm-up
    const double t = seconds_of(device, [&] {
      for (int i = 0; i < 3; ++i) dst.copy_(block);
    });
    result->numbers["bandwidth_gbps"] = 3.0 * 2.0 * static_cast<double>(block.numel() * 4) / t / 1e9;
  }
  ctx.progress(++step, total, "bandwidth");

  // 3. Correctness: A (k x k) of small integers times a permutation matrix is A with its columns
  //    permuted: exactly representable in fp32 and fp16, so any difference is a device fault.
  {
    const int64_t k = 256;
    auto a = torch::arange(k * k, torch::kFloat32).remainder(17).reshape({k, k}) - 8;
    auto perm = torch::randperm(k, torch::TensorOptions().dtype(torch::kLong));
    auto p = torch::zeros({k, k}, torch::kFloat32);
    p.index_put_({perm, torch::arange(k)}, 1.0f);
    // p[perm[j], j] = 1, so (a @ p)[:, j] = a[:, perm[j]]
    auto expected = a.index_select(1, perm);
    auto got = torch::matmul(a.to(device), p.to(device)).cpu();
    const double err = (got - expected).abs().max().item<double>();
    result->numbers["matmul_max_abs_error"] = err;
    if (gpu) {
      auto got16 = torch::matmul(a.to(device, torch::kFloat16), p.to(device, torch::kFloat16)).cpu().to(torch::kFloat32);
      result->numbers["matmul_fp16_max_abs_error"] = (got16 - expected).abs().max().item<double>();
    }
    result->numbers["matmul_ok"] = err == 0.0 ? 1 : 0;
  }
  ctx.progress(++step, total, "verify");

  // 4. Throughput: n x n matmuls in the device's working precision.
  {
    const auto dt = gpu ? torch::kFloat16 : torch::kFloat32;
    auto x = torch::randn({n, n}, torch::dtype(torch::kFloat32)).to(device, dt);
    auto y = torch::randn({n, n}, torch::dtype(torch::kFloat32)).to(device, dt);
    auto z = torch::matmul(x, y);  // warm-up (kernel selection)
    double best = 1e30;
    for (int64_t i = 0; i < iterations; ++i) {
      best = std::min(best, seconds_of(device, [&] { z = torch::matmul(x, y); }));
      ctx.progress(++step, total, "matmul");
    }
    result->numbers["matmul_size"] = static_cast<double>(n);
    result->numbers["matmul_tflops"] = 2.0 * n * n * n / best / 1e12;
    result->strings["matmul_dtype"] = gpu ? "float16" : "float32";
  }
  result->numbers["memory_free_after_bytes"] = static_cast<double>(device_memory(device).first);
  ctx.progress(++step, total, "done");

  const bool ok = result->numbers["alloc_ok"] == 1 && result->numbers["matmul_ok"] == 1;
  result->numbers["ok"] = ok ? 1 : 0;
  std::ostringstream os;
  os.precision(3);
  os << (ok ? "self-test passed" : "self-test FAILED") << " on " << device.str() << ": bandwidth "
     << result->numbers["bandwidth_gbps"] << " GB/s, matmul " << result->numbers["matmul_tflops"] << " TFLOP/s ("
     << result->strings["matmul_dtype"] << ", " << n << "^3), max error " << result->numbers["matmul_max_abs_error"];
  result->text = os.str();
  return result;
}

}  // namespace loupe
