// The most negative finite value of a floating dtype (torch.finfo(dtype).min, as transformers fills
// masked attention scores with it): -FLT_MAX does not fit bf16 or fp16, and filling a tensor of
// those dtypes with it throws.
#pragma once
#include <limits>

#include <torch/torch.h>

namespace loupe::nn {

inline double finfo_min(torch::ScalarType t) {
  switch (t) {
    case torch::kHalf: return -65504.0;
    case torch::kBFloat16: return -3.3895313892515355e38;
    case torch::kDouble: return -std::numeric_limits<double>::max();
    default: return -static_cast<double>(std::numeric_limits<float>::max());
  }
}

}  // namespace loupe::nn
