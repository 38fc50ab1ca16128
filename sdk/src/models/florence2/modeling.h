// Florence-2 modules. The tree mirrors transformers' Florence2ForConditionalGeneration parameter
// names (model.vision_tower.*, model.multi_modal_projector.*, model.language_model.*), so that
// loading is a lookup. The word embedding is shared by the encoder, the decoder and the LM head.
#pragma once
#include <torch/torch.h>

#include "nn/linear.h"

#include "models/florence2/config.h"
#include "nn/norm.h"

namespace loupe::florence2 {

// ---------------------------------------------------------------- vision (DaViT)

struct ConvEmbedImpl : torch::nn::Module {
  ConvEmbedImpl(const VisionConfig& c, int stage);
  torch::Tensor forward(torch::Tensor x);
  torch::nn::Conv2d conv{nullptr};
  loupe::nn::LayerNorm norm{nullptr};
  bool pre_norm;
};
TORCH_MODULE(ConvEmbed);

struct MlpImpl : torch::nn::Module {
  MlpImpl(int dim, int hidden);
  torch::Tensor forward(torch::Tensor x) { return fc2(torch::gelu(fc1(x))); }
  loupe::nn::Linear fc1{nullptr}, fc2{nullptr};
};
TORCH_MODULE(Mlp);

struct WindowAttentionImpl : torch::nn::Module {
  WindowAttentionImpl(const VisionConfig& c, int stage);
  torch::Tensor forward(torch::Tensor x);  // [B, H, W, C] -> [B, H*W, C]
  loupe::nn::Linear qkv{nullptr}, proj{nullptr};
  int window, heads;
};
TORCH_MODULE(WindowAttention);

struct ChannelAttentionImpl : torch::nn::Module {
  ChannelAttentionImpl(const VisionConfig& c, int stage);
  torch::Tensor forward(torch::Tensor x);  // [B, N, C]
  loupe::nn::Linear qkv{nullptr}, proj{nullptr};
  int groups;
};
TORCH_MODULE(ChannelAttention);

// Spatial (window attention) or channel (group attention) block: conv + attention, conv + MLP.
struct DavitBlockImpl : torch::nn::Module {
  DavitBlockImpl(const VisionConfig& c, int stage, bool spatial);
  torch::Tensor forward(torch::Tensor x);  // [B, C, H, W]
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr};
  loupe::nn::LayerNorm norm1{nullptr}, norm2{nullptr};
  WindowAttention window_attn{nullptr};
  ChannelAttention channel_attn{nullptr};
  Mlp ffn{nullptr};
};
TORCH_MODULE(DavitBlock);

struct VisionLayerImpl : torch::nn::Module {
  VisionLayerImpl(const VisionConfig& c, int stage);
  torch::Tensor forward(torch::Tensor x) { return channel_block(spatial_block(x)); }
  DavitBlock spatial_block{nullptr}, channel_block{nullptr};
};
TORCH_MODULE(VisionLayer);

struct VisionTowerImpl : torch::nn::Module {
  explicit VisionTowerImpl(const VisionConfig& c);
  torch::Tensor forward(torch::Tensor pixels);  // [B, 3, S, S] -> [B, C, h, w]
  torch::nn::ModuleList convs, blocks;
};
TORCH_MODULE(VisionTower);

struct ProjectorImpl : torch::nn::Module {
  explicit ProjectorImpl(const VisionConfig& c);
  torch::Tensor forward(torch::Tensor features);  // [B, C, h, w] -> [B, 1 + h*w, P]
  loupe::nn::Linear image_projection{nullptr};
  loupe::nn::LayerNorm image_proj_norm{nullptr};
  torch::nn::Embedding row_embeddings{nullptr}, column_embeddings{nullptr};
  torch::Tensor temporal;  // sinusoidal [max_temporal, C], computed (not a weight)
};
TORCH_MODULE(Projector);

// ---------------------------------------------------------------- language model (BART)

// Keys and values of one attention layer, kept across decoding steps.
struct KV {
  torch::Tensor k, v;  // [B, heads, L, head_dim]
  // Fixed-size self-attention cache (StaticDecoder): k/v hold every slot of the output, `slot` is
  // the position to write this step (long [1], on the device); attention covers all slots and the
  // caller's mask hides the unwritten ones. Undefined: the cache grows by concatenation.
  torch::Tensor slot;
};

struct BartAttentionImpl : torch::nn::Module {
  BartAttentionImpl(int dim, int heads);
  // Self-attention when kv_source is undefined; `cache` is appended to (self) or filled once (cross).
  torch::Tensor forward(torch::Tensor x, const torch::Tensor& kv_source, const torch::Tensor& mask, KV* cache,
                        bool causal);
  loupe::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, out_proj{nullptr};
  int heads, head_dim;
};
TORCH_MODULE(BartAttention);

struct BartLayerImpl : torch::nn::Module {
  BartLayerImpl(int dim, int heads, int ffn, bool decoder);
  BartAttention self_attn{nullptr}, encoder_attn{nullptr};
  loupe::nn::LayerNorm self_attn_layer_norm{nullptr}, encoder_attn_layer_norm{nullptr}, final_layer_norm{nullptr};
  loupe::nn::Linear fc1{nullptr}, fc2{nullptr};
};
TORCH_MODULE(BartLayer);

// A layer's feed-forward block with its residual and final layer norm.
torch::Tensor ffn_block(BartLayerImpl& l, torch::Tensor h);

struct BartStackImpl : torch::nn::Module {
  BartStackImpl(const TextConfig& c, bool decoder);
  torch::nn::Embedding embed_positions{nullptr};  // learned, offset by 2 (BART)
  loupe::nn::LayerNorm layernorm_embedding{nullptr};
  torch::nn::ModuleList layers;
};
TORCH_MODULE(BartStack);

struct LanguageModelImpl : torch::nn::Module {
  explicit LanguageModelImpl(const TextConfig& c);
  torch::nn::Embedding shared{nullptr};
  BartStack encoder{nullptr}, decoder{nullptr};
};
TORCH_MODULE(LanguageModel);

struct Florence2InnerImpl : torch::nn::Module {
  explicit Florence2InnerImpl(const Config& c);
  VisionTower vision_tower{nullptr};
  Projector multi_modal_projector{nullptr};
  LanguageModel language_model{nullptr};
};
TORCH_MODULE(Florence2Inner);

// The whole model ("model." prefix as in Florence2ForConditionalGeneration) with the math that
// ties the pieces together.
struct Florence2Impl : torch::nn::Module {
  explicit Florence2Impl(const Config& c);
  Config cfg;
  Florence2Inner model{nullptr};

  // pixels [B, 3, S, S] normalised -> image features [B, T, d_model]
  torch::Tensor image_features(const torch::Tensor& pixels);
  // input ids [B, L] with image placeholders -> encoder states [B, L, d]
  torch::Tensor encode(const torch::Tensor& input_ids, const torch::Tensor& image_features);
  // One decoder step for ids [B, n] (n = 1 with a cache); caches grow; returns logits [B, n, V].
  // The decoder after the embeddings: embedding norm, layers (self-attention under `self_mask`,
  // cross-attention, FFN), LM head. h [B, n, d] = token + position embeddings.
  torch::Tensor decode_embedded(torch::Tensor h, const torch::Tensor& encoder_states, std::vector<KV>& self_cache,
                                std::vector<KV>& cross_cache, const torch::Tensor& self_mask = {});
  torch::Tensor decode(const torch::Tensor& ids, const torch::Tensor& encoder_states, std::vector<KV>& self_cache,
                       std::vector<KV>& cross_cache, int64_t past_len);
  torch::Tensor embed(const torch::Tensor& ids);
};
TORCH_MODULE(Florence2);

}  // namespace loupe::florence2
