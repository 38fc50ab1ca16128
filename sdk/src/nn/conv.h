// 2-D convolutions as every model declares them: torch::nn::Conv2d's parameters and names, with a
// forward that sends fp32/bf16 convolutions on the CPU to oneDNN always. libtorch 1.13 decides per
// call and sends some (1 x 1 kernels at small batches on one thread) to its im2col + BLAS path,
// several times slower here; the result is the same convolution up to floating-point rounding.
// Where the build has oneDNN's own API (LOUPE_WITH_DNNL), fp32 3 x 3 stride-1 convolutions with
// outputs of 32 x 32 pixels or more go to its Winograd kernels (1.1-4x faster per convolution here,
// SD's VAE and the UNet's two larger levels; rounding ~1e-6 relative), computed in bands of rows so
// that its blocked copies and transformed tiles stay a few tens of MB; LOUPE_CONV_WINOGRAD=0 turns
// that off.
#pragma once
#include <torch/torch.h>

namespace loupe::nn {

class Conv2dImpl : public torch::nn::Conv2dImpl {
 public:
  using torch::nn::Conv2dImpl::Conv2dImpl;
  torch::Tensor forward(const torch::Tensor& x);
};
TORCH_MODULE(Conv2d);

}  // namespace loupe::nn
