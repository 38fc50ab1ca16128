#include "nn/conv.h"

#include "core/torch_compat.h"

namespace loupe::nn {

torch::Tensor Conv2dImpl::forward(const torch::Tensor& x) {
  const auto* pad = compat::variant_get_if<torch::ExpandingArray<2>>(options.padding());
  const auto dt = x.scalar_type();
  if (pad && x.is_cpu() && x.dim() == 4 && (dt == torch::kFloat32 || dt == torch::kBFloat16) &&
      weight.scalar_type() == dt && at::hasMKLDNN() && compat::variant_get_if<torch::enumtype::kZeros>(options.padding_mode()) &&
      !(at::GradMode::is_enabled() && (x.requires_grad() || weight.requires_grad())))
    return at::mkldnn_convolution(x.contiguous(), weight, bias.defined() ? c10::optional<at::Tensor>(bias) : c10::nullopt,
                                  *pad, *options.stride(), *options.dilation(), options.groups());
  return torch::nn::Conv2dImpl::forward(x);
}

}  // namespace loupe::nn
