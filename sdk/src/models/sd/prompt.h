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

// SDXL (diffusers' StableDiffusionXLPipeline.encode_prompt, per 77-token chunk): the hidden state
// clip_skip layers before the last of each encoder (1 = hidden_states[-2], diffusers' default; no
// final norm), emphasis applied to each, concatenated: embeds [1, 77 * chunks, D1 + D2]; pooled:
// encoder 2's projected pooled output of the first chunk [1, P]. chunks1/chunks2: the prompt
// tokenized by each encoder's tokenizer (they differ in padding). An empty enc1 (the SDXL refiner:
// encoder 2 alone, as diffusers' encode_prompt without text_encoder): embeds are encoder 2's.
struct DualEncoding {
  torch::Tensor embeds, pooled;
};
DualEncoding encode_prompt_dual(clip::ClipTextModel& enc1, const ClipTokens& ids1, std::vector<PromptChunk> chunks1,
                                clip::ClipTextModel& enc2, const ClipTokens& ids2, std::vector<PromptChunk> chunks2,
                                size_t min_chunks, int clip_skip, const torch::Device& device);

}  // namespace loupe::sd
