#include "nn/linear.h"

namespace loupe::nn {

torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias) {
  if (x.is_cpu() && x.scalar_type() == torch::kFloat32 && weight.scalar_type() == torch::kFloat32 && at::hasMKLDNN() &&
      x.numel() > 0 && x.dim() >= 1 && !(at::GradMode::is_enabled() && (x.requires_grad() || weight.requires_grad()))) {
    const int64_t in = x.size(-1);
    auto shape = x.sizes().vec();
    shape.back() = weight.size(0);
    const auto x2 = x.reshape({-1, in}).contiguous();
    const auto w = weight.contiguous();
    auto y = at::mkldnn_linear(x2.to_mkldnn(), w, bias.defined() ? c10::optional<at::Tensor>(bias.contiguous())
                                                                   : c10::nullopt);
    return y.to_dense().view(shape);
  }
  return torch::linear(x, weight, bias);
}

}  // namespace loupe::nn
