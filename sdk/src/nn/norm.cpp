#include "nn/norm.h"

namespace loupe::nn {

namespace {
bool in_fp32(const torch::Tensor& x, const torch::Tensor& weight) {
  return x.is_cpu() && x.scalar_type() == torch::kBFloat16 &&
         !(at::GradMode::is_enabled() && (x.requires_grad() || (weight.defined() && weight.requires_grad())));
}
torch::Tensor fp32(const torch::Tensor& t) { return t.defined() ? t.to(torch::kFloat32) : t; }
}  // namespace

torch::Tensor GroupNormImpl::forward(const torch::Tensor& x) {
  if (!in_fp32(x, weight)) return torch::nn::GroupNormImpl::forward(x);
  return torch::group_norm(x.to(torch::kFloat32), options.num_groups(), fp32(weight), fp32(bias), options.eps())
      .to(x.scalar_type());
}

torch::Tensor LayerNormImpl::forward(const torch::Tensor& x) {
  if (!in_fp32(x, weight)) return torch::nn::LayerNormImpl::forward(x);
  return torch::layer_norm(x.to(torch::kFloat32), options.normalized_shape(), fp32(weight), fp32(bias), options.eps())
      .to(x.scalar_type());
}

}  // namespace loupe::nn
