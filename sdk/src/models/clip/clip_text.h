// CLIP text encoder (transformers' CLIPTextModel: "text_model.*" parameter names), the text side
// of Stable Diffusion 1.x. Pre-LayerNorm transformer with a causal mask; quick_gelu or gelu.
#pragma once
#include <string>

#include <torch/torch.h>

#include "nn/linear.h"

namespace loupe::clip {

struct TextConfig {
  int vocab_size = 49408;
  int hidden_size = 512;
  int intermediate_size = 2048;
  int num_hidden_layers = 12;
  int num_attention_heads = 8;
  int max_position_embeddings = 77;
  std::string hidden_act = "quick_gelu";
  double layer_norm_eps = 1e-5;
  static TextConfig load(const std::string& config_json);
  static TextConfig from_json(const nlohmann::json& j, const std::string& file);
};

struct ClipLayerImpl : torch::nn::Module {
  explicit ClipLayerImpl(const TextConfig& c);
  torch::Tensor forward(torch::Tensor h, const torch::Tensor& causal_mask);
  std::shared_ptr<torch::nn::Module> self_attn;
  loupe::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, out_proj{nullptr};
  torch::nn::LayerNorm layer_norm1{nullptr}, layer_norm2{nullptr};
  std::shared_ptr<torch::nn::Module> mlp;
  loupe::nn::Linear fc1{nullptr}, fc2{nullptr};
  int heads;
  bool quick_gelu;
};
TORCH_MODULE(ClipLayer);

struct ClipTextModelImpl : torch::nn::Module {
  explicit ClipTextModelImpl(const TextConfig& c);
  // ids [B, L] -> hidden states [B, L, D]. clip_skip = 1: the last layer (then the final norm);
  // 2: the penultimate layer's output, also through the final norm (as the web UIs do).
  torch::Tensor forward(const torch::Tensor& ids, int clip_skip = 1);
  TextConfig cfg;
  std::shared_ptr<torch::nn::Module> text_model, embeddings, encoder;
  torch::nn::Embedding token_embedding{nullptr}, position_embedding{nullptr};
  torch::nn::ModuleList layers;
  torch::nn::LayerNorm final_layer_norm{nullptr};
};
TORCH_MODULE(ClipTextModel);

}  // namespace loupe::clip
