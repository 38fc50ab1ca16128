#include "models/siglip/siglip.h"

#include "core/error.h"
#include "io/config.h"
#include "nn/attention.h"

namespace loupe::siglip {

VisionConfig VisionConfig::from_json(const nlohmann::json& j, const std::string& file) {
  VisionConfig c;
  if (!j.is_object()) LOUPE_THROW(BadModel, file << ": \"vision_config\" is not an object");
  c.hidden_size = io::get_in<int64_t>(j, "hidden_size", c.hidden_size, file, 1, 65536);
  c.intermediate_size = io::get_in<int64_t>(j, "intermediate_size", c.intermediate_size, file, 1, 1048576);
  c.num_layers = io::get_in<int64_t>(j, "num_hidden_layers", c.num_layers, file, 1, 1024);
  c.num_heads = io::get_in<int64_t>(j, "num_attention_heads", c.num_heads, file, 1, 1024);
  c.num_channels = io::get_in<int64_t>(j, "num_channels", c.num_channels, file, 1, 16);
  c.image_size = io::get_in<int64_t>(j, "image_size", c.image_size, file, 1, 16384);
  c.patch_size = io::get_in<int64_t>(j, "patch_size", c.patch_size, file, 1, 1024);
  c.eps = io::get_in<double>(j, "layer_norm_eps", c.eps, file, 0, 1);
  c.activation = io::get_or<std::string>(j, "hidden_act", c.activation, file);
  if (io::get_or<bool>(j, "vision_use_head", false, file))
    LOUPE_THROW(Unsupported, file << ": \"vision_config.vision_use_head\" is true; Loupe's SigLIP tower has no head "
                                  << "(PaliGemma's towers have none)");
  return c;
}

void VisionConfig::validate(const std::string& file) const {
  auto bad = [&](const std::string& what) { LOUPE_THROW(BadModel, file << ": vision_config: " << what); };
  if (hidden_size <= 0 || intermediate_size <= 0 || num_layers <= 0 || num_heads <= 0 || num_channels <= 0)
    bad("hidden_size, intermediate_size, num_hidden_layers, num_attention_heads and num_channels must be positive");
  if (hidden_size % num_heads)
    bad("hidden_size " + std::to_string(hidden_size) + " is not a multiple of num_attention_heads " + std::to_string(num_heads));
  if (patch_size <= 0 || image_size <= 0 || image_size % patch_size)
    bad("image_size " + std::to_string(image_size) + " is not a positive multiple of patch_size " + std::to_string(patch_size));
  if (!(eps > 0)) bad("layer_norm_eps must be positive");
  static const char* acts[] = {"gelu_pytorch_tanh", "gelu_fast", "gelu_new", "gelu", "quick_gelu", "relu"};
  bool known = false;
  for (const char* a : acts) known = known || activation == a;
  if (!known) bad("hidden_act \"" + activation + "\" is not supported");
}

torch::Tensor activation(const torch::Tensor& x, const std::string& name) {
  if (name == "gelu_pytorch_tanh" || name == "gelu_fast" || name == "gelu_new") return torch::gelu(x, "tanh");
  if (name == "gelu") return torch::gelu(x);
  if (name == "quick_gelu") return x * torch::sigmoid(1.702 * x);
  if (name == "relu") return torch::relu(x);
  LOUPE_THROW(Unsupported, "activation \"" << name << "\" is not supported");
}

EmbeddingsImpl::EmbeddingsImpl(const VisionConfig& c) {
  patch_embedding = register_module(
      "patch_embedding",
      torch::nn::Conv2d(torch::nn::Conv2dOptions(c.num_channels, c.hidden_size, c.patch_size).stride(c.patch_size)));
  position_embedding = register_module("position_embedding", torch::nn::Embedding(c.num_patches(), c.hidden_size));
}

torch::Tensor EmbeddingsImpl::forward(const torch::Tensor& pixels) {
  auto x = patch_embedding(pixels.to(patch_embedding->weight.scalar_type()));  // [B, D, h, w]
  x = x.flatten(2).transpose(1, 2);                                            // [B, h*w, D]
  if (x.size(1) != position_embedding->weight.size(0))
    LOUPE_THROW(InvalidArgument, "SigLIP: " << pixels.size(2) << "x" << pixels.size(3) << " pixels give " << x.size(1)
                                           << " patches, the model has positions for " << position_embedding->weight.size(0));
  return x + position_embedding->weight.unsqueeze(0);
}

AttentionImpl::AttentionImpl(const VisionConfig& c) : heads(c.num_heads), head_dim(c.hidden_size / c.num_heads) {
  q_proj = register_module("q_proj", nn::Linear(c.hidden_size, c.hidden_size));
  k_proj = register_module("k_proj", nn::Linear(c.hidden_size, c.hidden_size));
  v_proj = register_module("v_proj", nn::Linear(c.hidden_size, c.hidden_size));
  out_proj = register_module("out_proj", nn::Linear(c.hidden_size, c.hidden_size));
}

torch::Tensor AttentionImpl::forward(const torch::Tensor& x) {
  const int64_t B = x.size(0), L = x.size(1);
  auto split = [&](const torch::Tensor& t) { return t.view({B, L, heads, head_dim}).transpose(1, 2); };
  auto o = nn::attention(split(q_proj(x)), split(k_proj(x)), split(v_proj(x)), {}, false,
                         1.0 / std::sqrt(static_cast<double>(head_dim)));
  return out_proj(o.transpose(1, 2).reshape({B, L, heads * head_dim}));
}

MlpImpl::MlpImpl(const VisionConfig& c) : act(c.activation) {
  fc1 = register_module("fc1", nn::Linear(c.hidden_size, c.intermediate_size));
  fc2 = register_module("fc2", nn::Linear(c.intermediate_size, c.hidden_size));
}

EncoderLayerImpl::EncoderLayerImpl(const VisionConfig& c) {
  auto ln = [&] { return loupe::nn::LayerNorm(torch::nn::LayerNormOptions({c.hidden_size}).eps(c.eps)); };
  layer_norm1 = register_module("layer_norm1", ln());
  self_attn = register_module("self_attn", Attention(c));
  layer_norm2 = register_module("layer_norm2", ln());
  mlp = register_module("mlp", Mlp(c));
}

torch::Tensor EncoderLayerImpl::forward(torch::Tensor x) {
  x = x + self_attn(layer_norm1(x));
  return x + mlp(layer_norm2(x));
}

EncoderImpl::EncoderImpl(const VisionConfig& c) {
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.num_layers; ++i) layers->push_back(EncoderLayer(c));
}

VisionTransformerImpl::VisionTransformerImpl(const VisionConfig& c) {
  embeddings = register_module("embeddings", Embeddings(c));
  encoder = register_module("encoder", Encoder(c));
  post_layernorm =
      register_module("post_layernorm", loupe::nn::LayerNorm(torch::nn::LayerNormOptions({c.hidden_size}).eps(c.eps)));
}

torch::Tensor VisionTransformerImpl::forward(const torch::Tensor& pixels) {
  auto x = embeddings(pixels);
  for (const auto& m : *encoder->layers) x = m->as<EncoderLayerImpl>()->forward(x);
  return post_layernorm(x);
}

VisionModelImpl::VisionModelImpl(const VisionConfig& c) : cfg(c) {
  vision_model = register_module("vision_model", VisionTransformer(c));
}

}  // namespace loupe::siglip
