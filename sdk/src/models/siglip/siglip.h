// SigLIP's vision tower without its head, as transformers' SiglipVisionModel (PaliGemma's
// vision_tower: "vision_model.embeddings.patch_embedding", "vision_model.encoder.layers.N...",
// "vision_model.post_layernorm"), so a checkpoint binds by lookup. Patch convolution plus learned
// positions, pre-norm encoder layers (LayerNorm, multi-head attention with biases, fc1 -> gelu-tanh
// -> fc2), a final LayerNorm: the last hidden state [B, patches, hidden] is the output.
#pragma once
#include <string>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "nn/linear.h"
#include "nn/norm.h"

namespace loupe::siglip {

struct VisionConfig {
  // transformers' SiglipVisionConfig defaults (config.json often lists only what differs)
  int64_t hidden_size = 768;
  int64_t intermediate_size = 3072;
  int64_t num_layers = 12;
  int64_t num_heads = 12;
  int64_t num_channels = 3;
  int64_t image_size = 224;
  int64_t patch_size = 16;
  double eps = 1e-6;
  std::string activation = "gelu_pytorch_tanh";

  int64_t num_patches() const { return (image_size / patch_size) * (image_size / patch_size); }
  // From a vision_config object; `file` names the file in errors (BadModel naming the key).
  static VisionConfig from_json(const nlohmann::json& j, const std::string& file);
  // Throws BadModel naming `file` and the field when the sizes do not fit together.
  void validate(const std::string& file) const;
};

// gelu_pytorch_tanh / gelu_fast / gelu_new (tanh approximation), gelu (exact), quick_gelu, relu.
torch::Tensor activation(const torch::Tensor& x, const std::string& name);

struct EmbeddingsImpl : torch::nn::Module {
  explicit EmbeddingsImpl(const VisionConfig& c);
  torch::Tensor forward(const torch::Tensor& pixels);  // [B, C, S, S] -> [B, patches, hidden]
  torch::nn::Conv2d patch_embedding{nullptr};
  torch::nn::Embedding position_embedding{nullptr};
};
TORCH_MODULE(Embeddings);

struct AttentionImpl : torch::nn::Module {
  explicit AttentionImpl(const VisionConfig& c);
  torch::Tensor forward(const torch::Tensor& x);
  nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, out_proj{nullptr};
  int64_t heads, head_dim;
};
TORCH_MODULE(Attention);

struct MlpImpl : torch::nn::Module {
  explicit MlpImpl(const VisionConfig& c);
  torch::Tensor forward(const torch::Tensor& x) { return fc2(activation(fc1(x), act)); }
  nn::Linear fc1{nullptr}, fc2{nullptr};
  std::string act;
};
TORCH_MODULE(Mlp);

struct EncoderLayerImpl : torch::nn::Module {
  explicit EncoderLayerImpl(const VisionConfig& c);
  torch::Tensor forward(torch::Tensor x);
  loupe::nn::LayerNorm layer_norm1{nullptr}, layer_norm2{nullptr};
  Attention self_attn{nullptr};
  Mlp mlp{nullptr};
};
TORCH_MODULE(EncoderLayer);

struct EncoderImpl : torch::nn::Module {
  explicit EncoderImpl(const VisionConfig& c);
  torch::nn::ModuleList layers;
};
TORCH_MODULE(Encoder);

// SiglipVisionTransformer (no head: PaliGemma's vision_use_head = false).
struct VisionTransformerImpl : torch::nn::Module {
  explicit VisionTransformerImpl(const VisionConfig& c);
  torch::Tensor forward(const torch::Tensor& pixels);  // last hidden state, post_layernorm applied
  Embeddings embeddings{nullptr};
  Encoder encoder{nullptr};
  loupe::nn::LayerNorm post_layernorm{nullptr};
};
TORCH_MODULE(VisionTransformer);

// SiglipVisionModel: the transformer under "vision_model".
struct VisionModelImpl : torch::nn::Module {
  explicit VisionModelImpl(const VisionConfig& c);
  torch::Tensor forward(const torch::Tensor& pixels) { return vision_model->forward(pixels); }
  VisionConfig cfg;
  VisionTransformer vision_model{nullptr};
};
TORCH_MODULE(VisionModel);

}  // namespace loupe::siglip
