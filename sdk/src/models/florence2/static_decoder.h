// Florence-2 decoder steps with fixed shapes, for CUDA graphs. The self-attention cache of every
// layer is preallocated for the whole output ([B, heads, max_len, head_dim]) and written at the
// step's position; attention runs over all slots with an additive mask that opens one slot a step;
// the position lives on the device. So every step launches the same kernels on the same buffers:
// on CUDA (LOUPE_CUDA_GRAPHS builds) one step is captured once and replayed, which removes the
// per-kernel launch cost that dominates decoding at batch 1. On the CPU the same code runs eagerly
// and equals Florence2Impl::decode step by step (tests/models/test_florence2.cpp).
#pragma once
#include <memory>
#include <vector>

#include "models/florence2/modeling.h"

namespace loupe::florence2 {

class StaticDecoder {
 public:
  // encoder_states [B, L, d]; max_len: decoder start + new tokens, at most the learned positions.
  // use_graph: capture the step as a CUDA graph (CUDA devices, LOUPE_CUDA_GRAPHS builds; else eager).
  StaticDecoder(Florence2Impl& model, const torch::Tensor& encoder_states, int64_t max_len, bool use_graph);
  ~StaticDecoder();
  // Feeds ids [B] (long, on the device) at the next position; returns the logits [B, V] of that
  // position (a buffer overwritten by the next step: copy what you keep).
  torch::Tensor step(const torch::Tensor& ids);
  // Beams: row i of every cache becomes row index[i] of before (index: long [B], on the device).
  void reorder(const torch::Tensor& index);
  int64_t position() const { return pos_host_; }
  bool graphed() const;

 private:
  void run();  // the step itself, on the static buffers
  Florence2Impl& m_;
  int64_t B_, max_len_, pos_host_ = 0;
  torch::Tensor ids_, pos_, mask_, logits_, enc_;
  std::vector<KV> self_, cross_;
  struct Graph;
  std::unique_ptr<Graph> graph_;
};

}  // namespace loupe::florence2
