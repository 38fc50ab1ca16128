// Group and layer normalisation as every model declares them: torch::nn::GroupNorm's and
// torch::nn::LayerNorm's parameters and names (checkpoints bind as before), with a forward that
// computes bf16 inputs on the CPU in fp32 and rounds the result to bf16 once. libtorch 1.13's CPU
// kernels for bf16 norms are scalar: 56 ms for a group norm of SD's [2, 320, 64, 64] against 3 ms in
// fp32 here, 1.6 s of a 9 s bf16 UNet step. fp32 statistics are also what fused kernels use (the
// bf16 kernel's result is up to 0.09 off fp32's on that input). Other dtypes and devices: torch's.
#pragma once
#include <torch/torch.h>

namespace loupe::nn {

class GroupNormImpl : public torch::nn::GroupNormImpl {
 public:
  using torch::nn::GroupNormImpl::GroupNormImpl;
  torch::Tensor forward(const torch::Tensor& x);
};
TORCH_MODULE(GroupNorm);

class LayerNormImpl : public torch::nn::LayerNormImpl {
 public:
  using torch::nn::LayerNormImpl::LayerNormImpl;
  torch::Tensor forward(const torch::Tensor& x);
};
TORCH_MODULE(LayerNorm);

}  // namespace loupe::nn
