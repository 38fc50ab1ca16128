// BLIP-2 as transformers' Blip2ForConditionalGeneration: the EVA ViT vision tower
// (Blip2VisionModel: patch convolution, class token, learned positions, pre-norm layers with one
// fused qkv projection whose bias is q_bias, 0, v_bias), the Q-Former (Blip2QFormerModel: learned
// query tokens, a LayerNorm on them, BERT-style post-norm layers with self-attention,
// cross-attention to the image features every cross_attention_frequency layers, and the queries'
// feed-forward intermediate_query / output_query), the language projection, and the language model:
// OPT on the shared decoder-only core (nn::DecoderLM), or Flan-T5 on the one T5 (nn::T5Model:
// the prompt's embeddings through its encoder, the answer from its decoder). Module names are transformers' parameter
// names ("vision_model.*", "query_tokens", "qformer.*", "language_projection.*",
// "language_model.model.decoder.*" / "language_model.shared", "language_model.encoder.*", ...), so a checkpoint binds by lookup; transformers 4.46 to 4.5x
// write that layout.
#pragma once
#include <string>
#include <vector>

#include <torch/torch.h>

#include "io/checkpoint.h"
#include "models/blip2/config.h"
#include "nn/conv.h"
#include "nn/decoder_lm.h"
#include "nn/generation.h"
#include "nn/linear.h"
#include "nn/norm.h"
#include "nn/t5.h"

namespace loupe::blip2 {

struct VisionEmbeddingsImpl : torch::nn::Module {
  explicit VisionEmbeddingsImpl(const VisionConfig& c);
  torch::Tensor forward(const torch::Tensor& pixels);  // [B, 3, S, S] -> [B, 1 + patches, D]
  torch::Tensor class_embedding, position_embedding;
  nn::Conv2d patch_embedding{nullptr};
};
TORCH_MODULE(VisionEmbeddings);

struct VisionAttentionImpl : torch::nn::Module {
  explicit VisionAttentionImpl(const VisionConfig& c);
  torch::Tensor forward(const torch::Tensor& x);
  nn::Linear qkv{nullptr}, projection{nullptr};
  int64_t heads, head_dim;
};
TORCH_MODULE(VisionAttention);

struct MlpImpl : torch::nn::Module {
  MlpImpl(int64_t hidden, int64_t inner, std::string act);
  torch::Tensor forward(const torch::Tensor& x);
  nn::Linear fc1{nullptr}, fc2{nullptr};
  std::string act;
};
TORCH_MODULE(Mlp);

struct VisionLayerImpl : torch::nn::Module {
  explicit VisionLayerImpl(const VisionConfig& c);
  torch::Tensor forward(torch::Tensor x);
  VisionAttention self_attn{nullptr};
  loupe::nn::LayerNorm layer_norm1{nullptr}, layer_norm2{nullptr};
  Mlp mlp{nullptr};
};
TORCH_MODULE(VisionLayer);

struct VisionModelImpl : torch::nn::Module {
  explicit VisionModelImpl(const VisionConfig& c);
  torch::Tensor forward(const torch::Tensor& pixels);  // last_hidden_state (post_layernorm applied)
  VisionEmbeddings embeddings{nullptr};
  std::shared_ptr<torch::nn::Module> encoder;  // "encoder.layers.N"
  torch::nn::ModuleList layers;
  loupe::nn::LayerNorm post_layernorm{nullptr};
};
TORCH_MODULE(VisionModel);

// Blip2QFormerMultiHeadAttention ("attention") + Blip2QFormerSelfOutput ("output": dense, LayerNorm
// of the residual sum).
struct QFormerAttentionImpl : torch::nn::Module {
  QFormerAttentionImpl(const QFormerConfig& c, bool cross);
  // x [B, Q, D]; kv: x itself (self-attention) or the image features [B, N, Dv]
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& kv);
  std::shared_ptr<torch::nn::Module> attention, output;
  nn::Linear query{nullptr}, key{nullptr}, value{nullptr}, dense{nullptr};
  loupe::nn::LayerNorm norm{nullptr};
  int64_t heads, head_dim;
};
TORCH_MODULE(QFormerAttention);

struct QFormerLayerImpl : torch::nn::Module {
  QFormerLayerImpl(const QFormerConfig& c, int64_t index);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& image);
  QFormerAttention attention{nullptr}, crossattention{nullptr};
  std::shared_ptr<torch::nn::Module> intermediate_query, output_query;
  nn::Linear inter_dense{nullptr}, out_dense{nullptr};
  loupe::nn::LayerNorm out_norm{nullptr};
  std::string act;
};
TORCH_MODULE(QFormerLayer);

struct QFormerImpl : torch::nn::Module {
  explicit QFormerImpl(const QFormerConfig& c);
  // query_embeds [B, Q, D], image features [B, N, Dv] -> last_hidden_state [B, Q, D]
  torch::Tensor forward(const torch::Tensor& query_embeds, const torch::Tensor& image);
  loupe::nn::LayerNorm layernorm{nullptr};
  std::shared_ptr<torch::nn::Module> encoder;  // "encoder.layer.N"
  torch::nn::ModuleList layer;
};
TORCH_MODULE(QFormer);

class Blip2Impl : public torch::nn::Module {
 public:
  explicit Blip2Impl(const Config& c);
  Config cfg;
  VisionModel vision_model{nullptr};
  torch::Tensor query_tokens;
  QFormer qformer{nullptr};
  nn::Linear language_projection{nullptr};
  nn::DecoderLM language_model{nullptr};  // OPT ("language_model")
  nn::T5Model t5{nullptr};                // Flan-T5 ("language_model")

  // Loads every weight from `ckpt`; BadModel naming the file, keys and shapes.
  void load(const io::Checkpoint& ckpt, const std::string& file, torch::Device device, torch::ScalarType dtype);
  // From the shards of a sharded pytorch_model.bin (pytorch_model.bin.index.json): each shard
  // loads what it holds; BadModel naming `file` when a weight is in none or a shape differs.
  void load(const std::vector<io::Checkpoint>& shards, const std::string& file, torch::Device device, torch::ScalarType dtype);

  // T5 bound in fp32, then moved to `dtype` (fp16 keeps T5's "wo" in fp32).
  void finish_dtype(torch::Device device, torch::ScalarType dtype);

  torch::Tensor vision_features(const torch::Tensor& pixels);   // [B, 1 + patches, Dv]
  torch::Tensor query_features(const torch::Tensor& image);     // Q-Former output [B, Q, Dq]
  torch::Tensor image_features(const torch::Tensor& pixels);    // language_projection output [B, Q, Dt]
  // The language model's input embeddings for prompt ids [B, L] (the config's layout: the features
  // at the image tokens, or concatenated ahead of the text).
  torch::Tensor merge(const torch::Tensor& ids, const torch::Tensor& image_features);
  // Logits of every position of the merged prompt [B, L', V] (L' = L, or Q + L in the older layout). OPT.
  torch::Tensor prompt_logits(const torch::Tensor& ids, const torch::Tensor& pixels);
  // Flan-T5: the encoder's output for the merged prompt [B, L', d_model], and the decoder's logits
  // [B, N, V] for decoder ids [B, N] (teacher forcing).
  torch::Tensor encoder_output(const torch::Tensor& ids, const torch::Tensor& pixels);
  torch::Tensor decoder_logits(const torch::Tensor& ids, const torch::Tensor& pixels, const torch::Tensor& decoder_ids);

  struct Generated {
    std::vector<int64_t> ids;  // new ids, up to and including the stop token
    float score = 0;
    std::vector<torch::Tensor> step_logits;  // when asked: the logits [V] (fp32 CPU) each step saw
  };
  // Greedy or beam search from one prompt [1, L] and its pixels [1, 3, S, S].
  Generated generate(const torch::Tensor& ids, const torch::Tensor& pixels, const nn::GenerationConfig& gen,
                     const nn::TokenCallback& on_token = {}, bool keep_step_logits = false);
};
TORCH_MODULE(Blip2);

}  // namespace loupe::blip2
