// CLIP text encoder (transformers' CLIPTextModel: "text_model.*" parameter names), the text side
// of Stable Diffusion 1.x. Pre-LayerNorm transformer with a causal mask; quick_gelu or gelu.
// CLIPTextModelWithProjection (SDXL's second encoder) adds "text_projection" (no bias) on the
// pooled output.
#pragma once
#include <string>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "nn/linear.h"
#include "nn/norm.h"

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
  int64_t eos_token_id = 2;    // 2: the EOS is the highest id (transformers' legacy pooling)
  bool with_projection = false;  // architectures: CLIPTextModelWithProjection
  int projection_dim = 512;
  static TextConfig load(const std::string& config_json);
  static TextConfig from_json(const nlohmann::json& j, const std::string& file);
};

struct ClipLayerImpl : torch::nn::Module {
  explicit ClipLayerImpl(const TextConfig& c);
  torch::Tensor forward(torch::Tensor h, const torch::Tensor& causal_mask);
  std::shared_ptr<torch::nn::Module> self_attn;
  loupe::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, out_proj{nullptr};
  loupe::nn::LayerNorm layer_norm1{nullptr}, layer_norm2{nullptr};
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
  struct Output {
    torch::Tensor hidden;  // [B, L, D]
    torch::Tensor pooled;  // [B, projection_dim or D]; undefined unless asked for
  };
  // transformers' hidden_states[layer] (0 = the embeddings, num_hidden_layers = the last layer's
  // output; no final norm), and with `pooled` the final-norm last state at the EOS token (the
  // highest id when eos_token_id is 2, else the first eos_token_id), through text_projection when
  // the model has one: what SDXL conditions on.
  Output hidden_and_pooled(const torch::Tensor& ids, int layer, bool pooled);
  TextConfig cfg;
  std::shared_ptr<torch::nn::Module> text_model, embeddings, encoder;
  torch::nn::Embedding token_embedding{nullptr}, position_embedding{nullptr};
  torch::nn::ModuleList layers;
  loupe::nn::LayerNorm final_layer_norm{nullptr};
  loupe::nn::Linear text_projection{nullptr};
};
TORCH_MODULE(ClipTextModel);

}  // namespace loupe::clip
