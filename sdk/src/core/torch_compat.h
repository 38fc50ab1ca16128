// The one place where libtorch version differences live (Debian's 1.13 CPU build here,
// PyTorch's 2.x CUDA build on the GPU machine). Everything else calls these.
#pragma once
#include <torch/torch.h>
#include <torch/version.h>

#include <variant>

namespace loupe::compat {

constexpr bool kTorch2 = TORCH_VERSION_MAJOR >= 2;

// Scaled dot-product attention on [B, H, L, D] tensors. mask: additive float mask broadcastable
// to [B, H, Lq, Lk], or undefined. libtorch 2.x has a fused kernel (flash / memory-efficient on
// CUDA); 1.13 gets the plain formulation with the same semantics.
inline torch::Tensor sdpa(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                          const torch::Tensor& mask = {}, bool causal = false,
                          c10::optional<double> scale = c10::nullopt) {
#if TORCH_VERSION_MAJOR >= 2 && (TORCH_VERSION_MAJOR > 2 || TORCH_VERSION_MINOR >= 1)
  c10::optional<torch::Tensor> m;
  if (mask.defined()) m = mask.to(q.scalar_type());
  return at::scaled_dot_product_attention(q, k, v, m, 0.0, causal && !mask.defined(), scale);
#else
  const double s = scale.has_value() ? *scale : 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  auto scores = torch::matmul(q, k.transpose(-2, -1)) * s;
  if (mask.defined()) scores = scores + mask.to(scores.scalar_type());
  if (causal && !mask.defined()) {
    auto lq = q.size(-2), lk = k.size(-2);
    auto keep = torch::ones({lq, lk}, torch::dtype(torch::kBool).device(q.device())).tril(lk - lq);
    scores = scores.masked_fill(keep.logical_not(), -std::numeric_limits<float>::infinity());
  }
  // softmax in fp32 for half inputs, as the fused kernels do
  auto probs = torch::softmax(scores.to(torch::kFloat32), -1).to(q.scalar_type());
  return torch::matmul(probs, v);
#endif
}

// The alternative T of an option variant (Conv2dOptions::padding(), padding_mode()), or nullptr:
// c10::variant in 1.13, std::variant from 2.1 on.
template <class T, class V>
const T* variant_get_if(const V& v) {
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 1)
  return std::get_if<T>(&v);
#else
  return c10::get_if<T>(&v);
#endif
}

// c10::Allocator: libtorch 2.3 made allocate() non-const and added a pure virtual copy_data().
// An allocator declares `c10::DataPtr allocate(size_t n) LOUPE_ALLOCATOR_CONST override` and
// `void copy_data(...) const LOUPE_ALLOCATOR_COPY_DATA_OVERRIDE`.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 3)
#define LOUPE_ALLOCATOR_CONST
#define LOUPE_ALLOCATOR_COPY_DATA_OVERRIDE override
#else
#define LOUPE_ALLOCATOR_CONST const
#define LOUPE_ALLOCATOR_COPY_DATA_OVERRIDE
#endif

// True if the exception is the device running out of memory.
inline bool is_out_of_memory(const std::exception& e) {
  if (dynamic_cast<const c10::OutOfMemoryError*>(&e)) return true;
  const std::string what = e.what();
  return what.find("out of memory") != std::string::npos ||
         what.find("not enough memory") != std::string::npos ||   // CPU allocator
         what.find("can't allocate memory") != std::string::npos;
}

}  // namespace loupe::compat
