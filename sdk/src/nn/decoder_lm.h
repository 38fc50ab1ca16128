// One decoder-only language-model core for Gemma, Gemma 2 (PaliGemma, PaliGemma 2) and OPT
// (BLIP-2): transformers' GemmaForCausalLM, Gemma2ForCausalLM and OPTForCausalLM as one module
// whose parameter names mirror theirs ("model.layers.N.self_attn.q_proj.weight", "lm_head.weight";
// OPT: "model.decoder.layers.N.fc1.weight", ...), so a checkpoint binds by lookup: io::bind on this
// module (a KeyMap prefix rule for a checkpoint that holds it under a prefix) or on a module that
// holds it (PaliGemma's and BLIP-2's "language_model"). nn/ reads no files (sdk.layers).
//
// What differs between the families is configuration (DecoderConfig): the norm (Gemma's RMSNorm
// x * (1 + w) computed in fp32, or LayerNorm with bias), the positions (rotary, or OPT's learned
// table with offset 2), the MLP (GeGLU with gelu-tanh, or fc1 -> relu -> fc2), multi-query /
// grouped-query attention, Gemma 2's soft-capping, query_pre_attn_scalar, sandwich norms and
// sliding windows on alternate layers, tied or separate lm_head, OPT's project_in/out and
// post-norm variant.
//
// Attention is one mask over cache slots: causal, except that slots below `prefix_length` see each
// other in both directions (the prefix-LM of PaliGemma: image + prompt), minus padding (the
// running attention mask kept in the cache), minus keys beyond the sliding window. The KV cache is
// allocated once for a capacity (prompt + new tokens) and written in place; reorder() follows beams.
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "nn/generation.h"
#include "nn/linear.h"

namespace loupe::nn {

enum class NormKind { GemmaRms, LayerNorm };
enum class PositionKind { Rope, Learned };
enum class MlpKind { Gated, Plain };  // Gated: down(act(gate(x)) * up(x)); Plain: fc2(act(fc1(x)))

struct DecoderConfig {
  std::string model_type = "gemma";  // "gemma", "gemma2", "opt" (names of the module tree follow it)
  int64_t vocab_size = 256000;
  int64_t hidden_size = 2048;
  int64_t intermediate_size = 16384;
  int64_t num_layers = 18;
  int64_t num_heads = 8;
  int64_t num_kv_heads = 1;  // < num_heads: multi-query (1) or grouped-query attention
  int64_t head_dim = 256;
  NormKind norm = NormKind::GemmaRms;
  double eps = 1e-6;
  PositionKind positions = PositionKind::Rope;
  double rope_theta = 10000.0;
  int64_t max_position_embeddings = 8192;
  int64_t position_offset = 0;  // OPT's learned positions: 2
  MlpKind mlp = MlpKind::Gated;
  std::string activation = "gelu_pytorch_tanh";  // "gelu_pytorch_tanh", "gelu", "relu", "silu"
  bool scale_embeddings = true;  // Gemma: embeddings * sqrt(hidden), the factor in their dtype
  bool attention_bias = false;   // q/k/v/o biases (OPT: enable_bias)
  bool mlp_bias = false;         // fc1/fc2 biases (OPT: enable_bias)
  // Gemma 2
  double attn_logit_softcapping = 0.0;   // 0 = none
  double final_logit_softcapping = 0.0;  // 0 = none
  double query_pre_attn_scalar = 0.0;    // scale = query_pre_attn_scalar^-0.5; 0 = head_dim
  bool sandwich_norms = false;           // post_attention / pre_feedforward / post_feedforward norms
  int64_t sliding_window = 0;            // 0 = none
  std::vector<bool> sliding_layers;      // per layer: uses the sliding window (empty = none)
  bool tie_word_embeddings = true;
  // OPT
  int64_t word_embed_proj_dim = 0;   // != hidden: project_in / project_out (0 = hidden)
  bool do_layer_norm_before = true;  // false: post-norm layers (OPT-350m)
  bool final_layer_norm = true;      // OPT: final_layer_norm present (do_layer_norm_before and not removed)
  // Tokens (generation defaults from the config)
  int64_t pad_token_id = -1, bos_token_id = -1;
  std::vector<int64_t> eos_token_ids;

  int64_t embed_dim() const { return word_embed_proj_dim > 0 ? word_embed_proj_dim : hidden_size; }
  double attention_scale() const;
  bool is_sliding(int64_t layer) const;

  // From a config.json object (the text part: "text_config" of PaliGemma is passed by the caller),
  // with transformers' defaults for its model_type ("gemma", "gemma2", "opt"); `file` for errors.
  static DecoderConfig from_json(const nlohmann::json& j, const std::string& file);
  // Throws InvalidArgument naming the field when sizes do not fit (heads, kv heads, ...).
  void validate() const;
};

// The cache of one sequence batch: per layer K and V [B, kv_heads, capacity, head_dim], written in
// place; `length` slots are filled. `key_mask` [B, capacity] (bool) says which filled slots are real
// tokens (padding is false); `next_position` [B] is each row's next position id.
struct KVCache {
  std::vector<torch::Tensor> k, v;
  torch::Tensor key_mask, next_position;
  int64_t length = 0;
  int64_t prefix_length = 0;  // slots seeing each other in both directions (set by the first forward)
  int64_t capacity() const { return k.empty() ? 0 : k.front().size(2); }
  int64_t batch() const { return k.empty() ? 0 : k.front().size(0); }
  bool empty() const { return length == 0; }
  // Rows follow `index` [N] (long, any N: beams expand from one prompt row to num_beams).
  void reorder(const torch::Tensor& index);
  void clear() { *this = KVCache{}; }
};

struct DecoderInput {
  torch::Tensor input_ids;      // [B, L] long, or
  torch::Tensor inputs_embeds;  // [B, L, embed_dim], as embed() gives them (before Gemma's scaling)
  // [B, L] for the new tokens (1 = real, 0 = padding); undefined: all real. The cache keeps the
  // mask of earlier steps, so a step passes only its own tokens.
  torch::Tensor attention_mask;
  // [B, L] long; undefined: transformers' generate() default, each row's count of real tokens so far
  // minus 1 (padding gets 1), plus `position_offset` for learned positions. PaliGemma passes its
  // 1-based positions here.
  torch::Tensor position_ids;
  // Slots [0, prefix_length) attend to each other in both directions (prefix-LM); counted from the
  // first slot of the cache; only used by the first forward of a cache, and at most its length
  // (0: causal everywhere).
  int64_t prefix_length = 0;
  bool last_only = false;  // logits of the last position only ([B, 1, V])
};

class DecoderLMImpl;

// The stack below the head: GemmaModel / Gemma2Model, or OPTDecoder.
class DecoderStackImpl : public torch::nn::Module {
 public:
  explicit DecoderStackImpl(const DecoderConfig& c);
  torch::nn::Embedding embed_tokens{nullptr};
  torch::nn::Embedding embed_positions{nullptr};   // OPT
  Linear project_in{nullptr}, project_out{nullptr};  // OPT with word_embed_proj_dim != hidden
  torch::nn::ModuleList layers;
  torch::nn::Module* final_norm = nullptr;  // "norm" (Gemma) or "final_layer_norm" (OPT), or null
};
TORCH_MODULE(DecoderStack);

class DecoderLMImpl : public torch::nn::Module {
 public:
  explicit DecoderLMImpl(const DecoderConfig& c);
  DecoderConfig cfg;

  // Token embeddings [B, L] -> [B, L, embed_dim] (no scaling: forward applies Gemma's factor to
  // input ids and inputs_embeds alike, as GemmaModel does).
  torch::Tensor embed(const torch::Tensor& ids);

  // A cache for `batch` rows and `capacity` slots (prompt + new tokens; grows if exceeded), in the
  // model's dtype and device.
  KVCache make_cache(int64_t batch, int64_t capacity) const;

  // Runs the new tokens through the decoder, appending them to `cache` (empty cache: a full forward
  // of a prompt), and returns logits [B, L, V] (or [B, 1, V] with last_only) in the model's dtype,
  // Gemma 2's final soft-capping applied.
  torch::Tensor forward(const DecoderInput& in, KVCache& cache);
  // Without a cache (one full forward).
  torch::Tensor forward(const DecoderInput& in);

  // The last hidden states of the last forward are not kept; hidden() runs the stack without the head.
  torch::Tensor hidden(const DecoderInput& in, KVCache& cache);
  torch::Tensor logits(const torch::Tensor& hidden);  // final norm already applied by hidden()

  DecoderStack stack{nullptr};  // registered as "model" (Gemma) or "model.decoder" (OPT)
  Linear lm_head{nullptr};      // registered only when not tied

 private:
  std::shared_ptr<torch::nn::Module> opt_model_;  // "model" holding "decoder" for OPT
};
TORCH_MODULE(DecoderLM);

// A Stepper for generate() over `model` and `cache` (which it keeps a reference to): the first call
// returns `first_logits` (the prefill's logits, [B, V] or [B, L, V]: the last position), then each
// call runs one token per row through the cache; reorder() reorders the cache.
Stepper stepper(DecoderLM model, KVCache& cache, torch::Tensor first_logits);

// Gemma's RMSNorm: x * rsqrt(mean(x^2) + eps) * (1 + w), computed in fp32, cast back to x's dtype.
torch::Tensor gemma_rms_norm(const torch::Tensor& x, const torch::Tensor& weight, double eps);
// Rotary embedding (rotate_half convention) of x [B, H, L, D] at positions [B, L].
torch::Tensor apply_rope(const torch::Tensor& x, const torch::Tensor& positions, double theta);

}  // namespace loupe::nn
