// The CPU as a device: cores, instruction sets, the BLAS libtorch calls, and the thread count.
// Loupe sets the thread count itself (physical cores by default) because libtorch's default can
// be one thread, and reports a reference BLAS or a single thread as a problem with its remedy.
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace loupe::cpu {

struct Blas {
  std::string library;  // the file that provides sgemm_ (symlinks resolved), "" if none
  std::string kind;     // "openblas", "mkl", "blis", "reference" (netlib), "unknown"
  std::string version;  // e.g. OpenBLAS' config string, "" if unknown
  std::string core;     // OpenBLAS: the kernels it chose for this processor (e.g. "SkylakeX", "Prescott")
};

struct Info {
  std::string model;                 // /proc/cpuinfo "model name"
  int logical = 1;                   // CPUs this process may run on (affinity)
  int physical = 1;                  // distinct cores among them
  std::vector<std::string> isa;      // of: sse4_2 avx avx2 fma avx512f avx512bw avx512vl avx512_vnni avx512_bf16 amx_tile amx_bf16 amx_int8
  bool has(const std::string& flag) const;
  // Native bf16 arithmetic (AVX512-BF16 or AMX): where bf16 beats fp32 on the CPU.
  bool fast_bf16() const { return has("avx512_bf16") || has("amx_bf16"); }
};

const Info& info();  // read once
Blas blas();
// The OpenBLAS kernels (OPENBLAS_CORETYPE) that would suit `in` better than `core`, or "" when `core`
// is right: generic kernels on AVX2/AVX-512 processors, AVX2 kernels on AVX-512 ones.
std::string better_openblas_core(const std::string& core, const Info& in);

// The thread count a runtime uses when asked for `requested` (0 = auto): LOUPE_NUM_THREADS if set,
// else the physical cores.
int resolve_threads(int requested);
// Applies the count to the calling thread's intra-op pool (OpenMP is per thread) and to OpenBLAS.
void apply_threads(int threads);
int current_threads();
// The threads that at::parallel_for reaches in the library's own code: it is a header template
// that expands to an OpenMP region in its caller, so a library compiled without OpenMP runs it on
// one thread whatever the count (reported by problems()).
int parallel_threads();

// {model, logical_cores, physical_cores, isa, fast_bf16, threads, parallel_threads, blas: {...}}
nlohmann::json to_json(int threads);
// Problems for diagnostics: [{id, severity, message, remedy}] (reference BLAS, one thread, serial
// parallel loops).
nlohmann::json problems(int threads);

}  // namespace loupe::cpu
