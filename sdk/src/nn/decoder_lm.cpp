#include "nn/decoder_lm.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"
#include "core/json_get.h"
#include "nn/attention.h"
#include "nn/dtype_limits.h"

namespace loupe::nn {

// ---------------------------------------------------------------- config

double DecoderConfig::attention_scale() const {
  const double s = query_pre_attn_scalar > 0.0 ? query_pre_attn_scalar : static_cast<double>(head_dim);
  return 1.0 / std::sqrt(s);
}

bool DecoderConfig::is_sliding(int64_t layer) const {
  return sliding_window > 0 && layer >= 0 && layer < static_cast<int64_t>(sliding_layers.size()) &&
         sliding_layers[static_cast<size_t>(layer)];
}

using settings::get_in;
using settings::get_or;
constexpr double kIds = 1 << 24;  // token ids, vocabulary sizes, positions

DecoderConfig DecoderConfig::from_json(const nlohmann::json& j, const std::string& file) {
  if (!j.is_object()) LOUPE_THROW(BadModel, file << ": the decoder's configuration is not an object");
  DecoderConfig c;
  c.model_type = get_or<std::string>(j, "model_type", "gemma", file);
  auto ids = [&](const char* key, std::vector<int64_t> def) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return def;
    if (it->is_number_integer()) return std::vector<int64_t>{get_in<int64_t>(j, key, 0, file, 0, kIds)};
    if (it->is_array()) {
      std::vector<int64_t> v;
      for (const auto& e : *it) {
        if (!e.is_number_integer()) LOUPE_THROW(BadModel, file << ": \"" << key << "\" holds a non-integer");
        v.push_back(e.get<int64_t>());
        if (v.back() < 0 || v.back() >= kIds)
          LOUPE_THROW(BadModel, file << ": \"" << key << "[" << v.size() - 1 << "]\" is " << v.back()
                                     << ", outside the range a model can have (0 to " << kIds << ")");
      }
      return v;
    }
    LOUPE_THROW(BadModel, file << ": \"" << key << "\" has the wrong type (" << it->type_name() << ")");
  };
  if (c.model_type == "gemma" || c.model_type == "gemma2") {
    const bool g2 = c.model_type == "gemma2";
    // transformers' GemmaConfig / Gemma2Config defaults
    c.vocab_size = get_in<int64_t>(j, "vocab_size", 256000, file, 1, kIds);
    c.hidden_size = get_in<int64_t>(j, "hidden_size", g2 ? 2304 : 3072, file, 1, 65536);
    c.intermediate_size = get_in<int64_t>(j, "intermediate_size", g2 ? 9216 : 24576, file, 1, 1048576);
    c.num_layers = get_in<int64_t>(j, "num_hidden_layers", g2 ? 26 : 28, file, 1, 1024);
    c.num_heads = get_in<int64_t>(j, "num_attention_heads", g2 ? 8 : 16, file, 1, 1024);
    c.num_kv_heads = get_in<int64_t>(j, "num_key_value_heads", g2 ? 4 : 16, file, 1, 1024);
    c.head_dim = get_in<int64_t>(j, "head_dim", 256, file, 1, 65536);
    c.norm = NormKind::GemmaRms;
    c.eps = get_in<double>(j, "rms_norm_eps", 1e-6, file, 0, 1);
    c.positions = PositionKind::Rope;
    c.rope_theta = get_in<double>(j, "rope_theta", 10000.0, file, 1e-3, 1e12);
    c.max_position_embeddings = get_in<int64_t>(j, "max_position_embeddings", 8192, file, 1, kIds);
    c.mlp = MlpKind::Gated;
    // Gemma: hidden_activation, else gelu_pytorch_tanh (transformers ignores hidden_act "gelu"
    // there since 4.40, with a warning); Gemma 2: hidden_activation.
    c.activation = get_or<std::string>(j, "hidden_activation", "gelu_pytorch_tanh", file);
    c.scale_embeddings = true;
    c.attention_bias = get_or<bool>(j, "attention_bias", false, file);
    c.tie_word_embeddings = get_or<bool>(j, "tie_word_embeddings", true, file);
    c.pad_token_id = get_in<int64_t>(j, "pad_token_id", 0, file, -1, kIds);
    c.bos_token_id = get_in<int64_t>(j, "bos_token_id", 2, file, -1, kIds);
    c.eos_token_ids = ids("eos_token_id", {1});
    if (g2) {
      c.attn_logit_softcapping = get_in<double>(j, "attn_logit_softcapping", 50.0, file, 0, 1e6);
      c.final_logit_softcapping = get_in<double>(j, "final_logit_softcapping", 30.0, file, 0, 1e6);
      c.query_pre_attn_scalar = get_in<double>(j, "query_pre_attn_scalar", 256.0, file, 0, 1e9);
      c.sandwich_norms = true;
      c.sliding_window = get_in<int64_t>(j, "sliding_window", 4096, file, 0, kIds);
      c.sliding_layers.assign(static_cast<size_t>(c.num_layers), false);
      auto lt = j.find("layer_types");
      if (lt != j.end() && lt->is_array()) {
        if (static_cast<int64_t>(lt->size()) != c.num_layers)
          LOUPE_THROW(BadModel, file << ": \"layer_types\" has " << lt->size() << " entries for " << c.num_layers
                                     << " layers");
        for (size_t i = 0; i < lt->size(); ++i) c.sliding_layers[i] = (*lt)[i].is_string() && (*lt)[i] == "sliding_attention";
      } else {
        for (int64_t i = 0; i < c.num_layers; ++i) c.sliding_layers[static_cast<size_t>(i)] = i % 2 == 0;
      }
    }
  } else if (c.model_type == "opt") {
    // transformers' OPTConfig defaults
    c.vocab_size = get_in<int64_t>(j, "vocab_size", 50272, file, 1, kIds);
    c.hidden_size = get_in<int64_t>(j, "hidden_size", 768, file, 1, 65536);
    c.intermediate_size = get_in<int64_t>(j, "ffn_dim", 3072, file, 1, 1048576);
    c.num_layers = get_in<int64_t>(j, "num_hidden_layers", 12, file, 1, 1024);
    c.num_heads = get_in<int64_t>(j, "num_attention_heads", 12, file, 1, 1024);
    c.num_kv_heads = c.num_heads;
    c.head_dim = c.num_heads > 0 ? c.hidden_size / c.num_heads : 0;
    c.norm = NormKind::LayerNorm;
    c.eps = 1e-5;
    c.positions = PositionKind::Learned;
    c.max_position_embeddings = get_in<int64_t>(j, "max_position_embeddings", 2048, file, 1, kIds);
    c.position_offset = 2;
    c.mlp = MlpKind::Plain;
    c.activation = get_or<std::string>(j, "activation_function", "relu", file);
    c.scale_embeddings = false;
    c.attention_bias = c.mlp_bias = get_or<bool>(j, "enable_bias", true, file);
    c.tie_word_embeddings = get_or<bool>(j, "tie_word_embeddings", true, file);
    c.word_embed_proj_dim = get_in<int64_t>(j, "word_embed_proj_dim", c.hidden_size, file, 1, 65536);
    c.do_layer_norm_before = get_or<bool>(j, "do_layer_norm_before", true, file);
    c.final_layer_norm = c.do_layer_norm_before && !get_or<bool>(j, "_remove_final_layer_norm", false, file);
    if (!get_or<bool>(j, "layer_norm_elementwise_affine", true, file))
      LOUPE_THROW(Unsupported, file << ": OPT with layer_norm_elementwise_affine false is not supported");
    c.pad_token_id = get_in<int64_t>(j, "pad_token_id", 1, file, -1, kIds);
    c.bos_token_id = get_in<int64_t>(j, "bos_token_id", 2, file, -1, kIds);
    c.eos_token_ids = ids("eos_token_id", {2});
  } else {
    LOUPE_THROW(Unsupported, file << ": decoder model_type \"" << c.model_type
                                  << "\" is not one of gemma, gemma2, opt");
  }
  try {
    c.validate();
  } catch (const Error& e) {
    LOUPE_THROW(BadModel, file << ": " << e.what());
  }
  return c;
}

void DecoderConfig::validate() const {
  auto positive = [](const char* name, int64_t v) {
    if (v <= 0) LOUPE_THROW(InvalidArgument, "decoder config: " << name << " must be positive (is " << v << ")");
  };
  positive("vocab_size", vocab_size);
  positive("hidden_size", hidden_size);
  positive("intermediate_size", intermediate_size);
  positive("num_hidden_layers", num_layers);
  positive("num_attention_heads", num_heads);
  positive("num_key_value_heads", num_kv_heads);
  positive("head_dim", head_dim);
  if (num_heads % num_kv_heads != 0)
    LOUPE_THROW(InvalidArgument, "decoder config: num_attention_heads (" << num_heads
                                  << ") is not a multiple of num_key_value_heads (" << num_kv_heads << ")");
  if (positions == PositionKind::Rope && head_dim % 2 != 0)
    LOUPE_THROW(InvalidArgument, "decoder config: head_dim (" << head_dim << ") must be even for rotary embeddings");
  if (positions == PositionKind::Learned && num_heads * head_dim != hidden_size)
    LOUPE_THROW(InvalidArgument, "decoder config: hidden_size (" << hidden_size << ") is not num_attention_heads ("
                                  << num_heads << ") x head_dim (" << head_dim << ")");
  if (positions == PositionKind::Learned) positive("max_position_embeddings", max_position_embeddings);
  if (!sliding_layers.empty() && static_cast<int64_t>(sliding_layers.size()) != num_layers)
    LOUPE_THROW(InvalidArgument, "decoder config: " << sliding_layers.size() << " sliding-layer flags for "
                                  << num_layers << " layers");
  if (activation != "gelu_pytorch_tanh" && activation != "gelu_new" && activation != "gelu" && activation != "relu" &&
      activation != "silu")
    LOUPE_THROW(Unsupported, "decoder config: activation \"" << activation << "\" is not supported");
}

// ---------------------------------------------------------------- pieces

torch::Tensor gemma_rms_norm(const torch::Tensor& x, const torch::Tensor& weight, double eps) {
  const auto xf = x.to(torch::kFloat32);
  auto out = xf * torch::rsqrt(xf.pow(2).mean(-1, true) + eps);
  out = out * (1.0 + weight.to(torch::kFloat32));
  return out.to(x.scalar_type());
}

namespace {

torch::Tensor rotate_half(const torch::Tensor& x) {
  const int64_t h = x.size(-1) / 2;
  return torch::cat({-x.narrow(-1, h, h), x.narrow(-1, 0, h)}, -1);
}

// cos, sin [B, 1, L, D] in `dtype` (computed in fp32 as transformers' rotary embedding does).
std::pair<torch::Tensor, torch::Tensor> rope_tables(const torch::Tensor& positions, int64_t dim, double theta,
                                                    torch::ScalarType dtype) {
  const auto dev = positions.device();
  const auto exponent = torch::arange(0, dim, 2, torch::dtype(torch::kLong).device(dev)).to(torch::kFloat32) /
                        static_cast<double>(dim);
  const auto inv_freq = 1.0 / torch::pow(theta, exponent);
  const auto freqs = positions.to(torch::kFloat32).unsqueeze(-1) * inv_freq;  // [B, L, D/2]
  const auto emb = torch::cat({freqs, freqs}, -1).unsqueeze(1);
  return {emb.cos().to(dtype), emb.sin().to(dtype)};
}

torch::Tensor activate(const torch::Tensor& x, const std::string& act) {
  if (act == "gelu_pytorch_tanh" || act == "gelu_new") return torch::gelu(x, "tanh");
  if (act == "gelu") return torch::gelu(x);
  if (act == "relu") return torch::relu(x);
  return torch::silu(x);
}

// A norm with the checkpoint's names: "weight" (and "bias" for LayerNorm).
class NormImpl : public torch::nn::Module {
 public:
  NormImpl(const DecoderConfig& c, int64_t dim) : kind(c.norm), eps(c.eps) {
    if (kind == NormKind::GemmaRms) {
      weight = register_parameter("weight", torch::zeros({dim}));
    } else {
      weight = register_parameter("weight", torch::ones({dim}));
      bias = register_parameter("bias", torch::zeros({dim}));
    }
  }
  torch::Tensor forward(const torch::Tensor& x) {
    if (kind == NormKind::GemmaRms) return gemma_rms_norm(x, weight, eps);
    return torch::layer_norm(x, {x.size(-1)}, weight, bias, eps);
  }
  NormKind kind;
  double eps;
  torch::Tensor weight, bias;
};
TORCH_MODULE(Norm);

class AttentionImpl : public torch::nn::Module {
 public:
  explicit AttentionImpl(const DecoderConfig& c) {
    const bool b = c.attention_bias;
    q_proj = register_module("q_proj", Linear(torch::nn::LinearOptions(c.hidden_size, c.num_heads * c.head_dim).bias(b)));
    k_proj = register_module("k_proj", Linear(torch::nn::LinearOptions(c.hidden_size, c.num_kv_heads * c.head_dim).bias(b)));
    v_proj = register_module("v_proj", Linear(torch::nn::LinearOptions(c.hidden_size, c.num_kv_heads * c.head_dim).bias(b)));
    o_proj = register_module(c.model_type == "opt" ? "out_proj" : "o_proj",
                             Linear(torch::nn::LinearOptions(c.num_heads * c.head_dim, c.hidden_size).bias(b)));
  }
  Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};
};
TORCH_MODULE(Attention);

}  // namespace

// One layer; the module names follow the family (Gemma: input_layernorm, mlp.*; OPT:
// self_attn_layer_norm, fc1, ...).
class DecoderLayerImpl : public torch::nn::Module {
 public:
  DecoderLayerImpl(const DecoderConfig& c, int64_t index) : sliding(c.is_sliding(index)) {
    self_attn = register_module("self_attn", Attention(c));
    if (c.model_type == "opt") {
      attn_norm = register_module("self_attn_layer_norm", Norm(c, c.hidden_size));
      mlp_norm = register_module("final_layer_norm", Norm(c, c.hidden_size));
      up = register_module("fc1", Linear(torch::nn::LinearOptions(c.hidden_size, c.intermediate_size).bias(c.mlp_bias)));
      down = register_module("fc2", Linear(torch::nn::LinearOptions(c.intermediate_size, c.hidden_size).bias(c.mlp_bias)));
    } else {
      attn_norm = register_module("input_layernorm", Norm(c, c.hidden_size));
      if (c.sandwich_norms) {
        post_attn_norm = register_module("post_attention_layernorm", Norm(c, c.hidden_size));
        mlp_norm = register_module("pre_feedforward_layernorm", Norm(c, c.hidden_size));
        post_mlp_norm = register_module("post_feedforward_layernorm", Norm(c, c.hidden_size));
      } else {
        mlp_norm = register_module("post_attention_layernorm", Norm(c, c.hidden_size));
      }
      auto mlp = register_module("mlp", std::make_shared<torch::nn::Module>());
      const bool b = c.mlp_bias;
      gate = mlp->register_module("gate_proj", Linear(torch::nn::LinearOptions(c.hidden_size, c.intermediate_size).bias(b)));
      up = mlp->register_module("up_proj", Linear(torch::nn::LinearOptions(c.hidden_size, c.intermediate_size).bias(b)));
      down = mlp->register_module("down_proj", Linear(torch::nn::LinearOptions(c.intermediate_size, c.hidden_size).bias(b)));
    }
  }
  bool sliding;
  Attention self_attn{nullptr};
  Norm attn_norm{nullptr}, post_attn_norm{nullptr}, mlp_norm{nullptr}, post_mlp_norm{nullptr};
  Linear gate{nullptr}, up{nullptr}, down{nullptr};
};
TORCH_MODULE(DecoderLayer);

DecoderStackImpl::DecoderStackImpl(const DecoderConfig& c) {
  embed_tokens = register_module("embed_tokens", torch::nn::Embedding(c.vocab_size, c.embed_dim()));
  if (c.positions == PositionKind::Learned)
    embed_positions = register_module(
        "embed_positions", torch::nn::Embedding(c.max_position_embeddings + c.position_offset, c.hidden_size));
  if (c.embed_dim() != c.hidden_size) {
    project_out = register_module("project_out", Linear(torch::nn::LinearOptions(c.hidden_size, c.embed_dim()).bias(false)));
    project_in = register_module("project_in", Linear(torch::nn::LinearOptions(c.embed_dim(), c.hidden_size).bias(false)));
  }
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.num_layers; ++i) layers->push_back(DecoderLayer(c, i));
  if (c.model_type == "opt") {
    if (c.final_layer_norm) final_norm = register_module("final_layer_norm", Norm(c, c.hidden_size)).get();
  } else {
    final_norm = register_module("norm", Norm(c, c.hidden_size)).get();
  }
}

DecoderLMImpl::DecoderLMImpl(const DecoderConfig& c) : cfg(c) {
  cfg.validate();
  if (cfg.model_type == "opt") {
    opt_model_ = register_module("model", std::make_shared<torch::nn::Module>());
    stack = opt_model_->register_module("decoder", DecoderStack(cfg));
  } else {
    stack = register_module("model", DecoderStack(cfg));
  }
  if (!cfg.tie_word_embeddings)
    lm_head = register_module("lm_head", Linear(torch::nn::LinearOptions(cfg.embed_dim(), cfg.vocab_size).bias(false)));
}

torch::Tensor DecoderLMImpl::embed(const torch::Tensor& ids) {
  if (ids.dim() != 2) LOUPE_THROW(InvalidArgument, "decoder: input ids must be [batch, length], got " << ids.sizes());
  const auto lo = ids.min().item<int64_t>(), hi = ids.max().item<int64_t>();
  if (lo < 0 || hi >= cfg.vocab_size)
    LOUPE_THROW(InvalidArgument, "decoder: token id " << (lo < 0 ? lo : hi) << " outside the vocabulary of "
                                                      << cfg.vocab_size);
  return stack->embed_tokens(ids.to(stack->embed_tokens->weight.device()));
}

KVCache DecoderLMImpl::make_cache(int64_t batch, int64_t capacity) const {
  const auto& w = stack->embed_tokens->weight;
  KVCache c;
  capacity = std::max<int64_t>(capacity, 1);
  for (int64_t i = 0; i < cfg.num_layers; ++i) {
    c.k.push_back(torch::empty({batch, cfg.num_kv_heads, capacity, cfg.head_dim}, w.options()));
    c.v.push_back(torch::empty({batch, cfg.num_kv_heads, capacity, cfg.head_dim}, w.options()));
  }
  c.key_mask = torch::zeros({batch, capacity}, torch::dtype(torch::kBool).device(w.device()));
  c.next_position = torch::zeros({batch}, torch::dtype(torch::kLong).device(w.device()));
  return c;
}

void KVCache::reorder(const torch::Tensor& index) {
  if (k.empty()) return;
  const auto idx = index.to(k.front().device(), torch::kLong);
  for (auto& t : k) t = t.index_select(0, idx);
  for (auto& t : v) t = t.index_select(0, idx);
  key_mask = key_mask.index_select(0, idx);
  next_position = next_position.index_select(0, idx);
}

namespace {

// Grows the cache to hold `needed` slots (doubling), keeping what is written.
void ensure_capacity(KVCache& c, int64_t needed) {
  if (needed <= c.capacity()) return;
  const int64_t cap = std::max(needed, 2 * c.capacity());
  auto grow = [&](torch::Tensor& t) {
    auto n = torch::empty({t.size(0), t.size(1), cap, t.size(3)}, t.options());
    n.narrow(2, 0, c.length).copy_(t.narrow(2, 0, c.length));
    t = n;
  };
  for (auto& t : c.k) grow(t);
  for (auto& t : c.v) grow(t);
  auto m = torch::zeros({c.key_mask.size(0), cap}, c.key_mask.options());
  m.narrow(1, 0, c.length).copy_(c.key_mask.narrow(1, 0, c.length));
  c.key_mask = m;
}

}  // namespace

torch::Tensor DecoderLMImpl::hidden(const DecoderInput& in, KVCache& cache) {
  const bool by_ids = in.input_ids.defined();
  if (by_ids == in.inputs_embeds.defined())
    LOUPE_THROW(InvalidArgument, "decoder: give either input ids or input embeddings");
  const auto& w = stack->embed_tokens->weight;
  const auto dev = w.device();
  torch::Tensor h = by_ids ? embed(in.input_ids) : in.inputs_embeds;
  if (h.dim() != 3 || h.size(2) != cfg.embed_dim())
    LOUPE_THROW(InvalidArgument, "decoder: input embeddings must be [batch, length, " << cfg.embed_dim() << "], got "
                                                                                    << h.sizes());
  h = h.to(dev, w.scalar_type());
  const int64_t B = h.size(0), L = h.size(1);
  if (L == 0) LOUPE_THROW(InvalidArgument, "decoder: no tokens to run");

  // The cache: allocate on first use, check the batch, grow if needed.
  if (cache.k.empty()) cache = make_cache(B, L);
  if (cache.batch() != B)
    LOUPE_THROW(InvalidArgument, "decoder: the cache holds " << cache.batch() << " rows, the input " << B);
  if (cache.length == 0) cache.prefix_length = std::clamp<int64_t>(in.prefix_length, 0, L);
  ensure_capacity(cache, cache.length + L);
  const int64_t past = cache.length, S = past + L;

  torch::Tensor am;  // [B, L] bool
  if (in.attention_mask.defined()) {
    if (in.attention_mask.dim() != 2 || in.attention_mask.size(0) != B || in.attention_mask.size(1) != L)
      LOUPE_THROW(InvalidArgument, "decoder: attention mask must be [" << B << ", " << L << "], got "
                                                                      << in.attention_mask.sizes());
    am = in.attention_mask.to(dev) != 0;
  } else {
    am = torch::ones({B, L}, torch::dtype(torch::kBool).device(dev));
  }
  cache.key_mask.narrow(1, past, L).copy_(am);

  // Positions: given, or each row's count of real tokens so far minus 1 (transformers' generate()).
  torch::Tensor pos;
  if (in.position_ids.defined()) {
    if (in.position_ids.dim() != 2 || in.position_ids.size(0) != B || in.position_ids.size(1) != L)
      LOUPE_THROW(InvalidArgument, "decoder: position ids must be [" << B << ", " << L << "], got "
                                                                    << in.position_ids.sizes());
    pos = in.position_ids.to(dev, torch::kLong);
    if (cfg.positions == PositionKind::Learned) pos = pos + cfg.position_offset;
  } else {
    const auto count = cache.next_position.unsqueeze(1) + am.to(torch::kLong).cumsum(1);  // 1-based
    if (cfg.positions == PositionKind::Learned)
      pos = count * am.to(torch::kLong) - 1 + cfg.position_offset;  // OPT: padding -> -1 + offset
    else
      pos = (count - 1).masked_fill(am.logical_not(), 1);  // Gemma via generate(): padding -> 1
  }
  {
    // The next position continues each row's last real one.
    const auto raw = in.position_ids.defined() ? in.position_ids.to(dev, torch::kLong)
                                               : cache.next_position.unsqueeze(1) + am.to(torch::kLong).cumsum(1) - 1;
    const auto last = raw.masked_fill(am.logical_not(), std::numeric_limits<int64_t>::min()).amax(1) + 1;
    cache.next_position = torch::where(am.any(1), last, cache.next_position);
  }

  // Embeddings.
  if (cfg.scale_embeddings)
    h = h * torch::scalar_tensor(std::sqrt(static_cast<double>(cfg.hidden_size)), h.options());
  if (stack->project_in) h = stack->project_in(h);
  if (cfg.positions == PositionKind::Learned) {
    if (pos.min().item<int64_t>() < 0 || pos.max().item<int64_t>() >= stack->embed_positions->weight.size(0))
      LOUPE_THROW(InvalidArgument, "decoder: position beyond the " << cfg.max_position_embeddings
                                                                    << " learned positions");
    h = h + stack->embed_positions(pos);
  }
  torch::Tensor cos, sin;
  if (cfg.positions == PositionKind::Rope) std::tie(cos, sin) = rope_tables(pos, cfg.head_dim, cfg.rope_theta, h.scalar_type());

  // The mask over slots [B, 1, L, S]: real keys, causal or inside the prefix, within the window.
  const auto qi = torch::arange(past, S, torch::dtype(torch::kLong).device(dev)).unsqueeze(1);  // [L, 1]
  const auto ki = torch::arange(0, S, torch::dtype(torch::kLong).device(dev)).unsqueeze(0);     // [1, S]
  const int64_t P = cache.prefix_length;
  const auto order = (ki <= qi) | ((ki < P) & (qi < P));                                          // [L, S]
  const auto keys = cache.key_mask.narrow(1, 0, S).unsqueeze(1);                                  // [B, 1, S]
  const auto allowed = (order.unsqueeze(0) & keys).unsqueeze(1);                                  // [B, 1, L, S]
  const double neg = finfo_min(h.scalar_type());  // transformers' finfo(dtype).min: fits bf16 / fp16
  const auto full_mask = torch::zeros(allowed.sizes(), h.options()).masked_fill_(allowed.logical_not(), neg);
  torch::Tensor window_mask;
  if (cfg.sliding_window > 0) {
    const auto inside = (qi - ki) < cfg.sliding_window;
    window_mask = full_mask.masked_fill((inside.logical_not()).unsqueeze(0).unsqueeze(0), neg);
  }

  const int64_t H = cfg.num_heads, Hkv = cfg.num_kv_heads, D = cfg.head_dim, G = H / Hkv;
  const double scale = cfg.attention_scale();
  for (int64_t li = 0; li < cfg.num_layers; ++li) {
    auto& layer = *stack->layers->ptr<DecoderLayerImpl>(li);
    auto& at = *layer.self_attn;
    const auto& mask = layer.sliding && window_mask.defined() ? window_mask : full_mask;

    // Attention
    auto residual = h;
    auto x = cfg.do_layer_norm_before ? layer.attn_norm(h) : h;
    auto q = at.q_proj(x).view({B, L, H, D}).transpose(1, 2);
    auto k = at.k_proj(x).view({B, L, Hkv, D}).transpose(1, 2);
    auto v = at.v_proj(x).view({B, L, Hkv, D}).transpose(1, 2);
    if (cos.defined()) {
      q = q * cos + rotate_half(q) * sin;
      k = k * cos + rotate_half(k) * sin;
    }
    cache.k[li].narrow(2, past, L).copy_(k);
    cache.v[li].narrow(2, past, L).copy_(v);
    const auto K = cache.k[li].narrow(2, 0, S), V = cache.v[li].narrow(2, 0, S);
    // Grouped queries against the shared K/V without repeating them: heads h = kv * G + g, so the
    // G query heads of one KV head become G * L rows.
    const auto qg = q.reshape({B, Hkv, G * L, D});
    const auto mg = G == 1 ? mask : mask.unsqueeze(2).expand({B, 1, G, L, S}).reshape({B, 1, G * L, S});
    torch::Tensor o;
    if (cfg.attn_logit_softcapping > 0.0) {
      auto scores = torch::matmul(qg, K.transpose(-2, -1)) * scale;
      scores = torch::tanh(scores / cfg.attn_logit_softcapping) * cfg.attn_logit_softcapping;
      scores = scores + mg;
      const auto probs = torch::softmax(scores.to(torch::kFloat32), -1).to(q.scalar_type());
      o = torch::matmul(probs, V);
    } else {
      o = attention(qg, K, V, mg, false, scale);
    }
    o = o.reshape({B, H, L, D}).transpose(1, 2).reshape({B, L, H * D});
    x = at.o_proj(o);
    if (layer.post_attn_norm) x = layer.post_attn_norm(x);
    h = residual + x;
    if (!cfg.do_layer_norm_before) h = layer.attn_norm(h);

    // MLP
    residual = h;
    x = cfg.do_layer_norm_before ? layer.mlp_norm(h) : h;
    if (layer.gate)
      x = layer.down(activate(layer.gate(x), cfg.activation) * layer.up(x));
    else
      x = layer.down(activate(layer.up(x), cfg.activation));
    if (layer.post_mlp_norm) x = layer.post_mlp_norm(x);
    h = residual + x;
    if (!cfg.do_layer_norm_before) h = layer.mlp_norm(h);
  }
  cache.length = S;
  if (in.last_only) h = h.narrow(1, L - 1, 1);
  if (stack->final_norm) {
    auto* n = dynamic_cast<NormImpl*>(stack->final_norm);
    h = n->forward(h);
  }
  if (stack->project_out) h = stack->project_out(h);
  return h;
}

torch::Tensor DecoderLMImpl::logits(const torch::Tensor& hidden) {
  auto out = lm_head ? lm_head(hidden) : loupe::nn::linear(hidden, stack->embed_tokens->weight);
  if (cfg.final_logit_softcapping > 0.0)
    out = torch::tanh(out / cfg.final_logit_softcapping) * cfg.final_logit_softcapping;
  return out;
}

torch::Tensor DecoderLMImpl::forward(const DecoderInput& in, KVCache& cache) { return logits(hidden(in, cache)); }

Stepper stepper(DecoderLM model, KVCache& cache, torch::Tensor first_logits) {
  Stepper s;
  auto first = std::make_shared<torch::Tensor>(std::move(first_logits));
  s.step = [model, &cache, first](const torch::Tensor& ids) mutable -> torch::Tensor {
    if (!ids.defined()) {
      if (!first->defined()) LOUPE_THROW(InvalidState, "decoder stepper: no prefill logits");
      auto out = *first;
      *first = torch::Tensor();
      return out.dim() == 3 ? out.select(1, out.size(1) - 1) : out;
    }
    DecoderInput in;
    in.input_ids = ids.reshape({-1, 1});
    return model->forward(in, cache).select(1, 0);
  };
  s.reorder = [&cache](const torch::Tensor& index) { cache.reorder(index); };
  return s;
}

torch::Tensor DecoderLMImpl::forward(const DecoderInput& in) {
  KVCache cache;
  return forward(in, cache);
}

}  // namespace loupe::nn
