// One T5 for every family that needs one: BLIP-2's Flan-T5 (encoder-decoder, generation) and
// FLUX.1's T5-XXL v1.1 (the encoder alone). transformers' T5EncoderModel / T5ForConditionalGeneration
// as one module whose parameter names mirror theirs ("shared.weight",
// "encoder.block.N.layer.0.SelfAttention.q.weight",
// "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
// "encoder.block.N.layer.1.DenseReluDense.wi_0.weight", "encoder.final_layer_norm.weight",
// "decoder.block.N.layer.1.EncDecAttention.k.weight", "decoder.block.N.layer.2.DenseReluDense.wo.weight",
// "lm_head.weight"), so a checkpoint binds by lookup with io::bind (a KeyMap prefix for one that holds
// it under a prefix, e.g. BLIP-2's "language_model."). nn/ reads no files (sdk.layers).
//
// The tied embedding is one tensor, "shared.weight"; the copies that older transformers saves
// ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight", and "lm_head.weight" when tied) are
// not module names: bind() reports them as unexpected (not an error). A checkpoint that holds only a
// copy is bound after io::Checkpoint::alias("shared.weight", t5_shared_aliases()[i]).
//
// What transformers does and this does too: no 1/sqrt(d) in attention; one relative position bias
// per stack, computed from the first block's table (bidirectional buckets in the encoder, causal in
// the decoder) and added with the mask in every block; RMS norm without mean or bias, accumulated
// in fp32; the gated (v1.1, Flan-T5, T5-XXL: "gated-gelu" = gelu tanh) or plain (v1.0: relu) MLP;
// tied embeddings scale the decoder output by d_model^-0.5 before the head; in fp16 the "wo"
// projections stay fp32 (_keep_in_fp32_modules: the residual stream is then fp32 after the first
// MLP, as in transformers) and fp16 hidden states are clamped to the largest finite value - 1000
// when they overflow. bf16 and fp32 run plain.
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "nn/generation.h"
#include "nn/linear.h"

namespace loupe::nn {

struct T5Config {
  int64_t vocab_size = 32128;
  int64_t d_model = 512;
  int64_t d_kv = 64;
  int64_t d_ff = 2048;
  int64_t num_layers = 6;
  int64_t num_decoder_layers = 6;  // config: null or absent = num_layers
  int64_t num_heads = 8;
  int64_t relative_attention_num_buckets = 32;
  int64_t relative_attention_max_distance = 128;
  double layer_norm_epsilon = 1e-6;
  // "feed_forward_proj": "relu" (v1.0), "gated-gelu" (v1.1, Flan-T5, T5-XXL; act gelu_new = tanh),
  // "gated-silu", or "[gated-]ACT" with ACT one of relu, gelu, gelu_new, gelu_pytorch_tanh, silu, swish.
  std::string feed_forward_proj = "relu";
  std::string dense_act_fn = "relu";  // derived from feed_forward_proj as T5Config does
  bool is_gated_act = false;
  bool tie_word_embeddings = true;
  int64_t pad_token_id = 0;
  int64_t eos_token_id = 1;
  int64_t decoder_start_token_id = 0;  // config: absent = pad_token_id (as generate() falls back)

  int64_t inner_dim() const { return num_heads * d_kv; }

  // From a config.json object (BLIP-2 passes its "text_config"), with transformers' T5Config
  // defaults; every number range-checked (core/json_get.h), BadModel naming `file` and the key.
  static T5Config from_json(const nlohmann::json& j, const std::string& file);
  // Throws InvalidArgument naming the field when a size does not fit.
  void validate() const;
};

// Names a checkpoint may use for the tied embedding when it lacks "shared.weight" (older or
// encoder-only saves): alias the first one present to "shared.weight" before binding.
const std::vector<std::string>& t5_shared_aliases();

// One stack (T5Stack without its embedding, which is the model's "shared"): "block.N.layer.*" and
// "final_layer_norm". Blocks are built in t5.cpp.
class T5StackImpl : public torch::nn::Module {
 public:
  T5StackImpl(const T5Config& c, bool is_decoder);
  bool is_decoder;
  int64_t num_layers;
  torch::nn::ModuleList block;
  torch::nn::Module* final_layer_norm = nullptr;  // "final_layer_norm" (weight only)
};
TORCH_MODULE(T5Stack);

// Decoder state for generation: per decoder layer the self-attention K/V [B, H, len, d_kv]
// (appended each step) and the cross-attention K/V [B, H, S, d_kv] (computed once from the encoder
// output); the encoder's padding mask [B, S] (bool, true = real). reorder() follows beams and expands
// rows (index of any length).
struct T5Cache {
  std::vector<torch::Tensor> self_k, self_v, cross_k, cross_v;
  torch::Tensor encoder_mask;  // [B, S] bool
  int64_t length = 0;          // decoder tokens already run
  int64_t batch() const { return encoder_mask.defined() ? encoder_mask.size(0) : 0; }
  void reorder(const torch::Tensor& index);
};

class T5ModelImpl : public torch::nn::Module {
 public:
  // with_decoder false: T5EncoderModel ("shared", "encoder.*" only; FLUX's text_encoder_2 and
  // ComfyUI's t5xxl files); true: T5ForConditionalGeneration (+ "decoder.*", "lm_head" when untied).
  explicit T5ModelImpl(const T5Config& c, bool with_decoder = true);
  T5Config cfg;

  torch::nn::Embedding shared{nullptr};
  T5Stack encoder{nullptr};
  T5Stack decoder{nullptr};    // null without a decoder
  Linear lm_head{nullptr};     // null when tied

  bool has_decoder() const { return !decoder.is_empty(); }

  // Moves to `dtype` (and `device`) as from_pretrained(torch_dtype=...) leaves the model: fp16 keeps
  // every "wo" in fp32; other dtypes convert everything. Bind in the stored dtype first (io::bind
  // without a dtype), then call this.
  void to_dtype(torch::ScalarType dtype, c10::optional<torch::Device> device = c10::nullopt);
  // The dtype of the embedding (the model's working dtype).
  torch::ScalarType dtype() const;
  torch::Device device() const;

  // Token embeddings [B, L] -> [B, L, d_model] ("shared"; id range checked).
  torch::Tensor embed(const torch::Tensor& ids);

  // The encoder's last_hidden_state [B, L, d_model] (after encoder.final_layer_norm) for ids [B, L]
  // (long) or embeddings [B, L, d_model] (BLIP-2: projected queries + text embeddings), with an
  // optional attention mask [B, L] (1 = real, 0 = padding; undefined = all real). Output in the
  // model's dtype.
  torch::Tensor encode(const torch::Tensor& input_ids, const torch::Tensor& attention_mask = {});
  torch::Tensor encode_embeds(const torch::Tensor& inputs_embeds, const torch::Tensor& attention_mask = {});

  // A decoder cache over `encoder_hidden` [B, S, d_model] and its mask [B, S] (undefined = all real):
  // computes the cross-attention K/V of every decoder layer once.
  T5Cache make_cache(const torch::Tensor& encoder_hidden, const torch::Tensor& encoder_mask = {});

  // Runs decoder ids [B, L] (long) through the decoder, appending to `cache` (causal self-attention
  // over every earlier token), and returns logits [B, L, vocab] in the model's dtype.
  torch::Tensor decode(const torch::Tensor& decoder_ids, T5Cache& cache);
  // The decoder's last hidden states (after final_layer_norm, before the tied scaling and the head).
  torch::Tensor decode_hidden(const torch::Tensor& decoder_ids, T5Cache& cache);
  torch::Tensor logits(const torch::Tensor& decoder_hidden);  // tied: * d_model^-0.5, then the head

  // Without a cache: the full forward of T5ForConditionalGeneration (teacher forcing).
  torch::Tensor forward(const torch::Tensor& input_ids, const torch::Tensor& attention_mask,
                        const torch::Tensor& decoder_ids);
};
TORCH_MODULE(T5Model);

// A Stepper for nn::generate() over `model` and `cache` (kept by reference; make it with make_cache
// from the encoder output). The first call (ids undefined) runs the decoder start token
// (cfg.decoder_start_token_id) for every row of the cache; later calls run one id per row. reorder()
// reorders (and expands: beam search starts from one row) self- and cross-attention K/V and the mask.
// Pass generate() the prompt [[decoder_start_token_id]] per row; the ids it returns exclude it.
Stepper t5_stepper(T5Model model, T5Cache& cache);

// The generation defaults of a T5 config for nn::GenerationConfig: eos = eos_token_id, pad =
// pad_token_id (the caller sets lengths, beams, ...).
GenerationConfig t5_generation_defaults(const T5Config& c);

// transformers' T5Attention._relative_position_bucket for relative positions (key - query) [..] long.
torch::Tensor t5_relative_position_bucket(const torch::Tensor& relative_position, bool bidirectional,
                                          int64_t num_buckets, int64_t max_distance);

}  // namespace loupe::nn
