#include "nn/linear.h"

#include <ATen/record_function.h>

#include "nn/onednn.h"

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

}  // namespace

torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias) {
  const auto dt = x.scalar_type();
  if (x.is_cpu() && (dt == torch::kFloat32 || dt == torch::kBFloat16) && weight.scalar_type() == dt &&
      (!bias.defined() || bias.scalar_type() == dt) && x.numel() > 0 && x.dim() >= 1 && weight.dim() == 2 &&
      x.numel() / x.size(-1) >= kMinRowsForOneDnn &&
      !(at::GradMode::is_enabled() && (x.requires_grad() || weight.requires_grad()))) {
    const int64_t in = x.size(-1);
    auto shape = x.sizes().vec();
    shape.back() = weight.size(0);
    const auto x2 = x.reshape({-1, in}).contiguous();
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
