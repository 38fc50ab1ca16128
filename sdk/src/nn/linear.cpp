#include "nn/linear.h"

#include <ATen/record_function.h>

#include <ATen/Parallel.h>

#include <atomic>

#include "nn/onednn.h"

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#endif

namespace loupe::nn {

namespace {

// Below this many rows (a decoding step: one token per sequence) the product is a matrix-vector
// one, bound by reading the weight: oneDNN re-packs the whole weight on every call and took 2-2.4x
// longer than the BLAS here (257216 x 2048 weight, 1 row: 6.1 s vs 2.9 s).
constexpr int64_t kMinRowsForOneDnn = 16;

#if LOUPE_WITH_DNNL
// y = x w^T + b through oneDNN's matmul on the caller's plain tensors: no conversion to and from
// libtorch's "mkldnn" tensors per call. Here 1.1-1.7x the throughput of at::mkldnn_linear in fp32
// (SD's projections, 8192 x 320 x 320: 92 -> 161 GFLOP/s) and 1.0-1.25x in bf16.
torch::Tensor matmul(const torch::Tensor& x2, const torch::Tensor& w, const torch::Tensor& bias) {
  RECORD_FUNCTION("loupe::linear", std::vector<c10::IValue>({x2}));  // seen by profilers
  using md = dnnl::memory::desc;
  const int64_t M = x2.size(0), K = x2.size(1), N = w.size(0);
  const auto t = onednn::data_type(x2.scalar_type());
  const auto& eng = onednn::cpu();
  const md a({M, K}, t, {K, 1}), b({K, N}, t, {1, K}), c({M, N}, t, {N, 1});
  const md bias_md = bias.defined() ? md({1, N}, onednn::data_type(bias.scalar_type()), {N, 1}) : md();
  const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a, b, bias_md, c), onednn::user_scratchpad(), eng);
  auto y = torch::empty({M, N}, x2.options());
  const auto scratch = onednn::buffer(pd.scratchpad_desc().get_size());
  std::unordered_map<int, dnnl::memory> args{{DNNL_ARG_SRC, {a, eng, x2.data_ptr()}},
                                             {DNNL_ARG_WEIGHTS, {b, eng, w.data_ptr()}},
                                             {DNNL_ARG_DST, {c, eng, y.data_ptr()}},
                                             {DNNL_ARG_SCRATCHPAD, {pd.scratchpad_desc(), eng, scratch.data_ptr()}}};
  if (bias.defined()) args.emplace(DNNL_ARG_BIAS, dnnl::memory(bias_md, eng, bias.data_ptr()));
  dnnl::stream s(eng);
  dnnl::matmul(pd).execute(s, args);
  s.wait();
  return y;
}
#endif

// ---- a few rows (decoding: one token per sequence) ---------------------------------------------
// y = x w^T + b for fewer than kMinRowsForOneDnn rows is a matrix-vector product per row, bound by
// reading the weight. libtorch sends it to the BLAS as a gemm of one row, which re-packs the whole
// weight on every call (OpenBLAS 0.3.21: 51289 x 768 fp32, 1 row: 20 ms, 7.8 GB/s); sgemv per row
// reads it once per row (7.3 ms), so the Mth row costs as much as the first. These kernels read each
// weight row once for up to kRowsPerPass rows of x (in L1) and keep a block of weight rows in L2
// while further row groups pass over it: fp32 accumulation, bf16 inputs and weights widened exactly
// (a shift), the result rounded once to the model's dtype. x86-64 with AVX2+FMA or AVX-512 (picked at run
// time); elsewhere torch's path.
#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
#define LOUPE_ROW_KERNELS 1
#define LOUPE_AVX512 __attribute__((target("avx512f")))
#define LOUPE_AVX2 __attribute__((target("avx2,fma")))
// loops over the accumulators unrolled in full, so that they live in registers (-O2 keeps them on
// the stack otherwise: 3x slower)
#define LOUPE_UNROLL _Pragma("GCC unroll 16")

constexpr int kRowsPerPass = 8;
constexpr int64_t kWeightRowsPerBlock = 64;  // 64 x 768 fp32 = 192 KiB: stays in L2 between row groups

// The vector operations the kernel body needs, per instruction set (each compiled for its own).
// Vectors pass by reference: the body is compiled for no particular instruction set until it is
// inlined, and vectors by value across such a call would change the calling convention (an error
// with clang).
struct Avx512 {
  using V = __m512;
  static constexpr int kLanes = 16;
  LOUPE_AVX512 static void zero(V& v) { v = _mm512_setzero_ps(); }
  LOUPE_AVX512 static void load(V& v, const float* p) { v = _mm512_loadu_ps(p); }
  LOUPE_AVX512 static void load(V& v, const c10::BFloat16* p) {  // bf16 -> fp32 exactly: a 16-bit shift
    v = _mm512_castsi512_ps(
        _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))), 16));
  }
  LOUPE_AVX512 static void fma(V& acc, const V& a, const V& b) { acc = _mm512_fmadd_ps(a, b, acc); }
  LOUPE_AVX512 static float sum(const V& v) { return _mm512_reduce_add_ps(v); }
};
struct Avx2 {
  using V = __m256;
  static constexpr int kLanes = 8;
  LOUPE_AVX2 static void zero(V& v) { v = _mm256_setzero_ps(); }
  LOUPE_AVX2 static void load(V& v, const float* p) { v = _mm256_loadu_ps(p); }
  LOUPE_AVX2 static void load(V& v, const c10::BFloat16* p) {
    v = _mm256_castsi256_ps(
        _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))), 16));
  }
  LOUPE_AVX2 static void fma(V& acc, const V& a, const V& b) { acc = _mm256_fmadd_ps(a, b, acc); }
  LOUPE_AVX2 static float sum(const V& v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)));
  }
};

// out[r * N + n] = sum_k x[r * K + k] w[n * K + k] + b[n] for r < R, n in [n0, n1), all of type T,
// accumulated in fp32 and rounded once: NB weight rows at a time (NB streams from memory, NB * R
// independent accumulators), the last n1 - n0 mod NB one by one. Inlined into rows<Isa>, which is
// compiled for the instruction set Isa's operations need.
template <class Isa, int R, int NB, class T>
__attribute__((always_inline)) inline void rows_body(const T* x, const T* w, const T* b, T* out, int64_t K, int64_t N,
                                                     int64_t n0, int64_t n1) {
  using V = typename Isa::V;
  constexpr int L = Isa::kLanes;
  int64_t n = n0;
  for (; n + NB <= n1; n += NB) {
    V acc[NB][R];
    LOUPE_UNROLL
    for (int i = 0; i < NB; ++i)
      LOUPE_UNROLL
      for (int r = 0; r < R; ++r) Isa::zero(acc[i][r]);
    int64_t k = 0;
    for (; k + L <= K; k += L) {
      V xv[R];
      LOUPE_UNROLL
      for (int r = 0; r < R; ++r) Isa::load(xv[r], x + r * K + k);
      LOUPE_UNROLL
      for (int i = 0; i < NB; ++i) {
        V wv;
        Isa::load(wv, w + (n + i) * K + k);
        LOUPE_UNROLL
        for (int r = 0; r < R; ++r) Isa::fma(acc[i][r], wv, xv[r]);
      }
    }
    LOUPE_UNROLL
    for (int i = 0; i < NB; ++i)
      LOUPE_UNROLL
      for (int r = 0; r < R; ++r) {
        float s = Isa::sum(acc[i][r]);
        for (int64_t j = k; j < K; ++j) s += static_cast<float>(x[r * K + j]) * static_cast<float>(w[(n + i) * K + j]);
        out[r * N + n + i] = static_cast<T>(b ? s + static_cast<float>(b[n + i]) : s);
      }
  }
  if constexpr (NB > 1)
    if (n < n1) rows_body<Isa, R, 1>(x, w, b, out, K, N, n, n1);
}

// weight rows per pass: 4 streams, at most 16 accumulators (AVX2 has 16 registers in all: 8)
template <int R, class T>
LOUPE_AVX512 void rows_avx512(const T* x, const T* w, const T* b, T* out, int64_t K, int64_t N, int64_t n0, int64_t n1) {
  rows_body<Avx512, R, R <= 4 ? 4 : 2>(x, w, b, out, K, N, n0, n1);
}
template <int R, class T>
LOUPE_AVX2 void rows_avx2(const T* x, const T* w, const T* b, T* out, int64_t K, int64_t N, int64_t n0, int64_t n1) {
  rows_body<Avx2, R, R <= 2 ? 4 : R <= 4 ? 2 : 1>(x, w, b, out, K, N, n0, n1);
}

using RowsKernel = void (*)(const void*, const void*, const void*, void*, int64_t, int64_t, int64_t, int64_t);

template <bool Avx512, class T, int R>
void rows_kernel(const void* xv, const void* wv, const void* bv, void* outv, int64_t K, int64_t N, int64_t n0,
                 int64_t n1) {
  const T *x = static_cast<const T*>(xv), *w = static_cast<const T*>(wv), *b = static_cast<const T*>(bv);
  T* out = static_cast<T*>(outv);
  if constexpr (Avx512)
    rows_avx512<R>(x, w, b, out, K, N, n0, n1);
  else
    rows_avx2<R>(x, w, b, out, K, N, n0, n1);
}

template <bool Avx512, class T>
RowsKernel rows_kernel(int rows) {
  switch (rows) {
    case 1: return rows_kernel<Avx512, T, 1>;
    case 2: return rows_kernel<Avx512, T, 2>;
    case 3: return rows_kernel<Avx512, T, 3>;
    case 4: return rows_kernel<Avx512, T, 4>;
    case 5: return rows_kernel<Avx512, T, 5>;
    case 6: return rows_kernel<Avx512, T, 6>;
    case 7: return rows_kernel<Avx512, T, 7>;
    default: return rows_kernel<Avx512, T, 8>;
  }
}

// 2: AVX-512, 1: AVX2 + FMA, 0: neither (the compiler's cpu checks include the OS's register state),
// at most the tests' limit
std::atomic<int> row_kernel_limit{2};
int row_kernel_isa() {
  static const int isa = [] {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return 2;
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? 1 : 0;
  }();
  return std::min(isa, row_kernel_limit.load());
}

// x2 [M, K] contiguous (M < kMinRowsForOneDnn), w [N, K] and bias [N] contiguous, all of one dtype
// (fp32 or bf16)
torch::Tensor few_rows(const torch::Tensor& x2, const torch::Tensor& w, const torch::Tensor& bias) {
  RECORD_FUNCTION("loupe::linear_rows", std::vector<c10::IValue>({x2}));
  const int64_t M = x2.size(0), K = x2.size(1), N = w.size(0);
  const bool avx512 = row_kernel_isa() == 2, bf16 = w.scalar_type() == torch::kBFloat16;
  auto out = torch::empty({M, N}, x2.options());
  const auto elem = static_cast<int64_t>(x2.element_size());
  const char* xp = static_cast<const char*>(x2.data_ptr());
  const void* bp = bias.defined() ? bias.data_ptr() : nullptr;
  char* op = static_cast<char*>(out.data_ptr());
  const void* wp = w.data_ptr();
  const auto pick = [&](int64_t rows) {
    const int r = static_cast<int>(std::min<int64_t>(kRowsPerPass, rows));
    return avx512 ? (bf16 ? rows_kernel<true, c10::BFloat16>(r) : rows_kernel<true, float>(r))
                  : (bf16 ? rows_kernel<false, c10::BFloat16>(r) : rows_kernel<false, float>(r));
  };
  const RowsKernel full = pick(kRowsPerPass), last = pick(M - (M - 1) / kRowsPerPass * kRowsPerPass);
  // a task: at least ~64K weight elements
  at::parallel_for(0, N, std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(K, 1)), [&](int64_t n0, int64_t n1) {
    for (int64_t nb = n0; nb < n1; nb += kWeightRowsPerBlock) {
      const int64_t ne = std::min(n1, nb + kWeightRowsPerBlock);
      for (int64_t r0 = 0; r0 < M; r0 += kRowsPerPass)
        (r0 + kRowsPerPass < M ? full : last)(xp + r0 * K * elem, wp, bp, op + r0 * N * elem, K, N, nb, ne);
    }
  });
  return out;
}
#endif

}  // namespace

int testing_limit_row_kernels(int isa) {
#if LOUPE_ROW_KERNELS
  return row_kernel_limit.exchange(isa);
#else
  (void)isa;
  return 0;
#endif
}

torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias) {
  const auto dt = x.scalar_type();
  if (x.is_cpu() && (dt == torch::kFloat32 || dt == torch::kBFloat16) && weight.scalar_type() == dt &&
      (!bias.defined() || bias.scalar_type() == dt) && x.numel() > 0 && x.dim() >= 1 && weight.dim() == 2 &&
      !(at::GradMode::is_enabled() && (x.requires_grad() || weight.requires_grad()))) {
    const int64_t in = x.size(-1), rows = x.numel() / in;
    auto shape = x.sizes().vec();
    shape.back() = weight.size(0);
    const auto x2 = x.reshape({-1, in}).contiguous();
    if (rows < kMinRowsForOneDnn) {
#if LOUPE_ROW_KERNELS
      if (weight.size(1) == in && row_kernel_isa() > 0)
        return few_rows(x2, weight.contiguous(), bias.defined() ? bias.contiguous() : bias).view(shape);
#endif
      return torch::linear(x, weight, bias);
    }
#if LOUPE_WITH_DNNL
    if (weight.size(1) == in) return matmul(x2, weight.contiguous(), bias.defined() ? bias.contiguous() : bias).view(shape);
#else
    if (dt == torch::kFloat32 && at::hasMKLDNN()) {
      auto y = at::mkldnn_linear(x2.to_mkldnn(), weight.contiguous(),
                                 bias.defined() ? c10::optional<at::Tensor>(bias.contiguous()) : c10::nullopt);
      return y.to_dense().view(shape);
    }
#endif
  }
  return torch::linear(x, weight, bias);
}

}  // namespace loupe::nn
