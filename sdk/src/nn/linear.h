// Linear layers as every model declares them: torch::nn::Linear's parameters and names (so
// checkpoints bind as before), with a forward that runs fp32 and bf16 products of 16 rows or more on
// the CPU through oneDNN's matmul, on the caller's tensors, where the build has oneDNN's API
// (LOUPE_WITH_DNNL; else fp32 through libtorch's mkldnn_linear). Here (Debian's OpenBLAS on an
// AVX-512 Xeon) that is 3-5x faster than sgemm for the shapes of SD and Florence-2; the result is
// the same product up to floating-point rounding. Fewer rows (a decoding step) take the few-row
// kernels of linear.cpp on x86-64 CPUs with AVX2 or AVX-512 (the weight read once for all rows, 2.5-3x
// the BLAS's one-row gemm). Other dtypes and GPU tensors take torch::linear.
#pragma once
#include <torch/torch.h>

namespace loupe::nn {

torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias = {});

// Tests: the widest instruction set the few-row kernels may use from now on (2: AVX-512, 1: AVX2,
// 0: none, torch's path); returns the previous limit.
int testing_limit_row_kernels(int isa);

class LinearImpl : public torch::nn::LinearImpl {
 public:
  using torch::nn::LinearImpl::LinearImpl;
  torch::Tensor forward(const torch::Tensor& x) { return linear(x, weight, bias); }
};
TORCH_MODULE(Linear);

}  // namespace loupe::nn
