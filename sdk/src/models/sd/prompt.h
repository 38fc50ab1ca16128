// Prompts as the popular web UIs read them: "(word)" x1.1, "[word]" /1.1, "(word:1.3)", "\(" for a
// literal bracket, "BREAK" to start a new 77-token window; prompts longer than one window are split
// into 75-token chunks (at a recent comma when one is near), each wrapped in BOS ... EOS, encoded
// separately and concatenated. Emphasis multiplies the token embeddings and restores their mean.
#pragma once
#include <string>
#include <vector>

#include <torch/torch.h>

#include "models/clip/clip_text.h"
#include "text/bpe_tokenizer.h"

namespace loupe::sd {

struct WeightedText {
  std::string text;
  float weight = 1.0f;  // < 0: BREAK
};
// The emphasis parser (same rules as the web UIs' parse_prompt_attention); adjacent pieces with the
// same weight are merged.
std::vector<WeightedText> parse_prompt_attention(const std::string& prompt);

struct PromptChunk {
  std::vector<int64_t> ids;       // 77: BOS, up to 75 tokens, EOS, padding
  std::vector<float> weights;     // one per id
};

struct ClipTokens {
  int64_t bos = 49406, eos = 49407, pad = 49407, comma = -1;
};
ClipTokens clip_tokens(const text::BpeTokenizer& tok, const std::string& tokenizer_dir);

std::vector<PromptChunk> tokenize_prompt(const text::BpeTokenizer& tok, const ClipTokens& ids, const std::string& prompt);

// [1, 77 * chunks, D]. `min_chunks` pads with empty chunks (so that prompt and negative prompt
// have the same length).
torch::Tensor encode_prompt(clip::ClipTextModel& enc, const ClipTokens& ids, std::vector<PromptChunk> chunks,
                            size_t min_chunks, int clip_skip, const torch::Device& device);

}  // namespace loupe::sd
