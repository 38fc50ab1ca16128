// What the files that call oneDNN's own API share (conv.cpp, linear.cpp, attention.cpp: compiled
// with LOUPE_WITH_DNNL=1 where the build found oneDNN 2.x's headers, Debian's libdnnl-dev, the
// library Debian's libtorch itself calls). Every primitive takes its scratchpad from libtorch's
// allocator (the CPU block cache), so that one primitive may run on several threads at once.
#pragma once
#if LOUPE_WITH_DNNL
#include <torch/torch.h>

#include <dnnl.hpp>

namespace loupe::nn::onednn {

inline const dnnl::engine& cpu() {
  static const dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  return eng;
}

// primitive attributes with a user scratchpad (see above)
inline dnnl::primitive_attr user_scratchpad() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

// `bytes` of memory from libtorch's allocator
inline torch::Tensor buffer(size_t bytes) {
  return torch::empty({static_cast<int64_t>(std::max<size_t>(bytes, 1))}, torch::kUInt8);
}

inline dnnl::memory::data_type data_type(c10::ScalarType t) {
  return t == torch::kBFloat16 ? dnnl::memory::data_type::bf16 : dnnl::memory::data_type::f32;
}

}  // namespace loupe::nn::onednn
#endif
