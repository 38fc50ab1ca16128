// Scaled dot-product attention, the one entry point every model calls. On a GPU (and for small
// problems) it is compat::sdpa (libtorch's fused kernel where the version has one). On the CPU,
// long attention (Stable Diffusion's 4096 x 4096 at 512 px) runs in blocks of query rows so that
// the score matrix is never materialised whole: each block's scores stay in cache from the product
// through the softmax to the product with V, and the products run in oneDNN (7x faster than
// libtorch's bmm through the BLAS here). Same result as the plain formulation up to floating-point
// rounding (a test compares them).
#pragma once
#include <torch/torch.h>

namespace loupe::nn {

// q [B, H, L, D], k/v [B, H, S, D]; mask: additive, broadcastable to [B, H, L, S], or undefined.
torch::Tensor attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                        const torch::Tensor& mask = {}, bool causal = false,
                        c10::optional<double> scale = c10::nullopt);

// The blocked CPU path itself (no mask), with query blocks of `rows` rows (0 = chosen from the
// sizes): through oneDNN one head at a time where libtorch has it (fp32, bf16), else through bmm.
// Softmax accumulates in fp32 for bf16 inputs, as the fused kernels do.
torch::Tensor attention_blocked(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, double scale,
                                int64_t rows = 0);

}  // namespace loupe::nn
