// Autoregressive decoding for Florence-2's BART decoder through the shared strategies (nn/generation:
// transformers' generate() semantics, greedy and beam search, with Florence-2's processors:
// no-repeat n-grams, forced BOS after the decoder start, forced EOS at the length limit).
// A self-attention KV cache per step (reordered with the beams) and cross-attention K/V computed
// once per image. Parity: tests/models/test_florence2_parity.cpp.
#pragma once
#include <functional>
#include <vector>

#include "models/florence2/modeling.h"

namespace loupe::florence2 {

struct GenerateOptions {
  int num_beams = 3;
  int no_repeat_ngram_size = 3;
  int max_new_tokens = 1024;
  int min_new_tokens = 0;  // EOS is banned before this many new tokens (benchmarks)
  double length_penalty = 1.0;
  EarlyStopping early_stopping = EarlyStopping::Heuristic;
  // Fixed-shape decoding (StaticDecoder): the same ids; with cuda_graphs, each step is one CUDA
  // graph replay on CUDA devices of LOUPE_CUDA_GRAPHS builds (eager elsewhere).
  bool static_cache = false;
  bool cuda_graphs = false;
  // Called after each new token with (step, max); throws to stop (cancellation).
  std::function<void(int, int)> on_step;
};

// Returns the generated ids (decoder start token included) for one image's encoder states [1, L, d]:
// the best finished beam, or greedy decoding when num_beams is 1 (as transformers does).
std::vector<int64_t> generate(Florence2Impl& model, const torch::Tensor& encoder_states, const GenerateOptions& o);

// Greedy decoding of a batch: encoder states [B, L, d] (same prompt length), one id sequence per
// row, each the same as generate() with num_beams 1 would give for that row alone. Finished rows
// stop growing; the loop ends when all are finished.
std::vector<std::vector<int64_t>> generate_greedy_batch(Florence2Impl& model, const torch::Tensor& encoder_states,
                                                        const GenerateOptions& o);

}  // namespace loupe::florence2
