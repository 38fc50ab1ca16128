#include "models/clip/clip_text.h"

#include <cmath>

#include "core/error.h"
#include "nn/attention.h"
#include "io/config.h"

namespace loupe::clip {

TextConfig TextConfig::load(const std::string& file) { return from_json(io::read_json_file(file), file); }

TextConfig TextConfig::from_json(const nlohmann::json& j, const std::string& file) {
  TextConfig c;
  c.vocab_size = io::get_in(j, "vocab_size", c.vocab_size, file, 1, 1 << 24);
  c.hidden_size = io::get_in(j, "hidden_size", c.hidden_size, file, 1, 65536);
  c.intermediate_size = io::get_in(j, "intermediate_size", c.intermediate_size, file, 1, 1048576);
  c.num_hidden_layers = io::get_in(j, "num_hidden_layers", c.num_hidden_layers, file, 1, 1024);
  c.num_attention_heads = io::get_in(j, "num_attention_heads", c.num_attention_heads, file, 1, 1024);
  c.max_position_embeddings = io::get_in(j, "max_position_embeddings", c.max_position_embeddings, file, 1, 1 << 20);
  c.hidden_act = io::get_or(j, "hidden_act", c.hidden_act, file);
  c.layer_norm_eps = io::get_in(j, "layer_norm_eps", c.layer_norm_eps, file, 0, 1);
  c.eos_token_id = io::get_in(j, "eos_token_id", c.eos_token_id, file, 0, 1 << 24);
  c.projection_dim = io::get_in(j, "projection_dim", c.projection_dim, file, 1, 65536);
  for (const auto& a : io::get_or(j, "architectures", std::vector<std::string>{}, file))
    if (a == "CLIPTextModelWithProjection") c.with_projection = true;
  if (c.hidden_act != "quick_gelu" && c.hidden_act != "gelu")
    LOUPE_THROW(Unsupported, file << ": hidden_act '" << c.hidden_act << "' (supported: quick_gelu, gelu)");
  if (c.num_attention_heads <= 0 || c.hidden_size % c.num_attention_heads)
    LOUPE_THROW(BadModel, file << ": hidden_size " << c.hidden_size << " is not divisible by " << c.num_attention_heads << " heads");
  return c;
}

ClipLayerImpl::ClipLayerImpl(const TextConfig& c) : heads(c.num_attention_heads), quick_gelu(c.hidden_act == "quick_gelu") {
  const int d = c.hidden_size;
  self_attn = register_module("self_attn", std::make_shared<torch::nn::Module>());
  q_proj = self_attn->register_module("q_proj", loupe::nn::Linear(d, d));
  k_proj = self_attn->register_module("k_proj", loupe::nn::Linear(d, d));
  v_proj = self_attn->register_module("v_proj", loupe::nn::Linear(d, d));
  out_proj = self_attn->register_module("out_proj", loupe::nn::Linear(d, d));
  auto ln = [&] { return loupe::nn::LayerNorm(torch::nn::LayerNormOptions({d}).eps(c.layer_norm_eps)); };
  layer_norm1 = register_module("layer_norm1", ln());
  mlp = register_module("mlp", std::make_shared<torch::nn::Module>());
  fc1 = mlp->register_module("fc1", loupe::nn::Linear(d, c.intermediate_size));
  fc2 = mlp->register_module("fc2", loupe::nn::Linear(c.intermediate_size, d));
  layer_norm2 = register_module("layer_norm2", ln());
}

torch::Tensor ClipLayerImpl::forward(torch::Tensor h, const torch::Tensor& mask) {
  const int64_t B = h.size(0), L = h.size(1), D = h.size(2), hd = D / heads;
  auto x = layer_norm1(h);
  auto split = [&](const torch::Tensor& t) { return t.view({B, L, heads, hd}).transpose(1, 2); };
  auto a = loupe::nn::attention(split(q_proj(x)), split(k_proj(x)), split(v_proj(x)), mask, false, 1.0 / std::sqrt(double(hd)));
  h = h + out_proj(a.transpose(1, 2).reshape({B, L, D}));
  x = fc1(layer_norm2(h));
  x = quick_gelu ? x * torch::sigmoid(1.702 * x) : torch::gelu(x);
  return h + fc2(x);
}

ClipTextModelImpl::ClipTextModelImpl(const TextConfig& c) : cfg(c) {
  text_model = register_module("text_model", std::make_shared<torch::nn::Module>());
  embeddings = text_model->register_module("embeddings", std::make_shared<torch::nn::Module>());
  token_embedding = embeddings->register_module("token_embedding", torch::nn::Embedding(c.vocab_size, c.hidden_size));
  position_embedding =
      embeddings->register_module("position_embedding", torch::nn::Embedding(c.max_position_embeddings, c.hidden_size));
  encoder = text_model->register_module("encoder", std::make_shared<torch::nn::Module>());
  for (int i = 0; i < c.num_hidden_layers; ++i) layers->push_back(ClipLayer(c));
  encoder->register_module("layers", layers);
  final_layer_norm = text_model->register_module(
      "final_layer_norm", loupe::nn::LayerNorm(torch::nn::LayerNormOptions({c.hidden_size}).eps(c.layer_norm_eps)));
  if (c.with_projection)
    text_projection = register_module(
        "text_projection", loupe::nn::Linear(torch::nn::LinearOptions(c.hidden_size, c.projection_dim).bias(false)));
}

torch::Tensor ClipTextModelImpl::forward(const torch::Tensor& ids, int clip_skip) {
  const int64_t L = ids.size(1);
  if (L > cfg.max_position_embeddings)
    LOUPE_THROW(InvalidArgument, "CLIP: " << L << " tokens, more than the " << cfg.max_position_embeddings << " positions");
  if (clip_skip < 1 || clip_skip > cfg.num_hidden_layers)
    LOUPE_THROW(InvalidArgument, "clip_skip = " << clip_skip << " is out of range [1, " << cfg.num_hidden_layers << "]");
  return final_layer_norm(hidden_and_pooled(ids, cfg.num_hidden_layers - (clip_skip - 1), false).hidden);
}

ClipTextModelImpl::Output ClipTextModelImpl::hidden_and_pooled(const torch::Tensor& ids, int layer, bool pooled) {
  const int64_t L = ids.size(1);
  if (L > cfg.max_position_embeddings)
    LOUPE_THROW(InvalidArgument, "CLIP: " << L << " tokens, more than the " << cfg.max_position_embeddings << " positions");
  if (layer < 0 || layer > cfg.num_hidden_layers)
    LOUPE_THROW(InvalidArgument, "CLIP: hidden state " << layer << " is out of range [0, " << cfg.num_hidden_layers << "]");
  auto h = token_embedding(ids) + position_embedding(torch::arange(L, ids.device())).unsqueeze(0);
  // additive causal mask: a token sees itself and the tokens before it
  auto mask = torch::full({L, L}, -std::numeric_limits<float>::infinity(), h.options()).triu(1);
  Output out;
  const int64_t run = pooled ? static_cast<int64_t>(layers->size()) : layer;
  if (layer == 0) out.hidden = h;
  for (int64_t i = 0; i < run; ++i) {
    h = layers[i]->as<ClipLayer>()->forward(h, mask);
    if (i + 1 == layer) out.hidden = h;
  }
  if (pooled) {
    const auto last = final_layer_norm(h);
    const auto at = cfg.eos_token_id == 2 ? ids.argmax(-1) : (ids == cfg.eos_token_id).to(torch::kInt32).argmax(-1);
    out.pooled = last.index({torch::arange(ids.size(0), ids.device()), at});
    if (text_projection) out.pooled = text_projection(out.pooled);
  }
  return out;
}

}  // namespace loupe::clip
