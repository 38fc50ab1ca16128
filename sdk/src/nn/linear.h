// Linear layers as every model declares them: torch::nn::Linear's parameters and names (so
// checkpoints bind as before), with a forward that runs fp32 products on the CPU through oneDNN
// (libtorch's mkldnn_linear) instead of the BLAS. Here (Debian's OpenBLAS on an AVX-512 Xeon)
// oneDNN's fp32 inner product is 3-4x faster than sgemm for the shapes of SD and Florence-2; the
// result is the same product up to floating-point rounding. bf16/fp16 and GPU tensors take
// torch::linear (libtorch already sends bf16 on the CPU to oneDNN).
#pragma once
#include <torch/torch.h>

namespace loupe::nn {

torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias = {});

class LinearImpl : public torch::nn::LinearImpl {
 public:
  using torch::nn::LinearImpl::LinearImpl;
  torch::Tensor forward(const torch::Tensor& x) { return linear(x, weight, bias); }
};
TORCH_MODULE(Linear);

}  // namespace loupe::nn
