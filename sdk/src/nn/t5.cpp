#include "nn/t5.h"

#include <cmath>
#include <limits>

#include "core/error.h"
#include "core/json_get.h"
#include "nn/attention.h"
#include "nn/dtype_limits.h"

namespace loupe::nn {

// ---------------------------------------------------------------- config

using settings::get_in;
using settings::get_or;

namespace {

bool known_activation(const std::string& a) {
  return a == "relu" || a == "gelu" || a == "gelu_new" || a == "gelu_pytorch_tanh" || a == "silu" || a == "swish";
}

torch::Tensor activate(const torch::Tensor& x, const std::string& act) {
  if (act == "relu") return torch::relu(x);
  if (act == "gelu") return torch::gelu(x);
  if (act == "gelu_new" || act == "gelu_pytorch_tanh") return torch::gelu(x, "tanh");
  return torch::silu(x);  // silu, swish
}

}  // namespace

T5Config T5Config::from_json(const nlohmann::json& j, const std::string& file) {
  if (!j.is_object()) LOUPE_THROW(BadModel, file << ": the T5 configuration is not an object");
  const auto type = get_or<std::string>(j, "model_type", "t5", file);
  if (type != "t5" && type != "mt5")
    LOUPE_THROW(Unsupported, file << ": model_type \"" << type << "\" is not a T5 (t5, mt5)");
  T5Config c;  // transformers' T5Config defaults
  constexpr double kMaxCount = 1 << 20;
  c.vocab_size = get_in<int64_t>(j, "vocab_size", 32128, file, 1, 1 << 24);
  c.d_model = get_in<int64_t>(j, "d_model", 512, file, 1, 1 << 16);
  c.d_kv = get_in<int64_t>(j, "d_kv", 64, file, 1, 1 << 14);
  c.d_ff = get_in<int64_t>(j, "d_ff", 2048, file, 1, 1 << 20);
  c.num_layers = get_in<int64_t>(j, "num_layers", 6, file, 1, 1024);
  c.num_decoder_layers = get_in<int64_t>(j, "num_decoder_layers", c.num_layers, file, 1, 1024);
  c.num_heads = get_in<int64_t>(j, "num_heads", 8, file, 1, 1024);
  c.relative_attention_num_buckets = get_in<int64_t>(j, "relative_attention_num_buckets", 32, file, 4, 1 << 16);
  c.relative_attention_max_distance = get_in<int64_t>(j, "relative_attention_max_distance", 128, file, 1, kMaxCount);
  c.layer_norm_epsilon = get_in<double>(j, "layer_norm_epsilon", 1e-6, file, 0.0, 1.0);
  c.feed_forward_proj = get_or<std::string>(j, "feed_forward_proj", "relu", file);
  c.tie_word_embeddings = get_or<bool>(j, "tie_word_embeddings", true, file);
  c.pad_token_id = get_in<int64_t>(j, "pad_token_id", 0, file, 0, 1 << 24);
  c.eos_token_id = get_in<int64_t>(j, "eos_token_id", 1, file, 0, 1 << 24);
  c.decoder_start_token_id = get_in<int64_t>(j, "decoder_start_token_id", c.pad_token_id, file, 0, 1 << 24);

  // T5Config: "[gated-]ACT"; "gated-gelu" means gelu_new (the tanh approximation).
  const auto& f = c.feed_forward_proj;
  const auto dash = f.find('-');
  if (dash == std::string::npos) {
    c.is_gated_act = false;
    c.dense_act_fn = f;
  } else {
    c.is_gated_act = f.substr(0, dash) == "gated";
    c.dense_act_fn = f.substr(dash + 1);
    if (!c.is_gated_act || c.dense_act_fn.find('-') != std::string::npos)
      LOUPE_THROW(BadModel, file << ": \"feed_forward_proj\" is \"" << f
                                 << "\", not a valid activation (\"ACT\" or \"gated-ACT\", e.g. \"relu\", \"gated-gelu\")");
  }
  if (f == "gated-gelu") c.dense_act_fn = "gelu_new";
  if (!known_activation(c.dense_act_fn))
    LOUPE_THROW(Unsupported, file << ": \"feed_forward_proj\" \"" << f << "\": activation \"" << c.dense_act_fn
                                  << "\" is not supported (relu, gelu, gelu_new, gelu_pytorch_tanh, silu)");
  try {
    c.validate();
  } catch (const Error& e) {
    LOUPE_THROW(BadModel, file << ": " << e.what());
  }
  return c;
}

void T5Config::validate() const {
  auto positive = [](const char* name, int64_t v) {
    if (v <= 0) LOUPE_THROW(InvalidArgument, "T5 config: \"" << name << "\" must be positive (is " << v << ")");
  };
  positive("vocab_size", vocab_size);
  positive("d_model", d_model);
  positive("d_kv", d_kv);
  positive("d_ff", d_ff);
  positive("num_layers", num_layers);
  positive("num_decoder_layers", num_decoder_layers);
  positive("num_heads", num_heads);
  // The buckets: half exact, half logarithmic up to max_distance (a quarter each in the encoder).
  if (relative_attention_num_buckets < 4)
    LOUPE_THROW(InvalidArgument, "T5 config: \"relative_attention_num_buckets\" must be at least 4 (is "
                                     << relative_attention_num_buckets << ")");
  if (relative_attention_max_distance <= relative_attention_num_buckets / 2)
    LOUPE_THROW(InvalidArgument, "T5 config: \"relative_attention_max_distance\" ("
                                     << relative_attention_max_distance
                                     << ") must exceed half of relative_attention_num_buckets ("
                                     << relative_attention_num_buckets << ")");
  if (!(layer_norm_epsilon >= 0.0))
    LOUPE_THROW(InvalidArgument, "T5 config: \"layer_norm_epsilon\" must not be negative");
  if (!known_activation(dense_act_fn))
    LOUPE_THROW(Unsupported, "T5 config: activation \"" << dense_act_fn << "\" is not supported");
}

const std::vector<std::string>& t5_shared_aliases() {
  static const std::vector<std::string> names = {"encoder.embed_tokens.weight", "decoder.embed_tokens.weight"};
  return names;
}

GenerationConfig t5_generation_defaults(const T5Config& c) {
  GenerationConfig g;
  g.eos_token_ids = {c.eos_token_id};
  g.pad_token_id = c.pad_token_id;
  return g;
}

torch::Tensor t5_relative_position_bucket(const torch::Tensor& relative_position, bool bidirectional,
                                          int64_t num_buckets, int64_t max_distance) {
  auto rp = relative_position.to(torch::kLong);
  auto buckets = torch::zeros_like(rp);
  if (bidirectional) {
    num_buckets /= 2;
    buckets = buckets + (rp > 0).to(torch::kLong) * num_buckets;
    rp = torch::abs(rp);
  } else {
    rp = -torch::min(rp, torch::zeros_like(rp));
  }
  const int64_t max_exact = num_buckets / 2;
  const auto is_small = rp < max_exact;
  auto large = max_exact + (torch::log(rp.to(torch::kFloat32) / static_cast<double>(max_exact)) /
                            std::log(static_cast<double>(max_distance) / static_cast<double>(max_exact)) *
                            static_cast<double>(num_buckets - max_exact))
                               .to(torch::kLong);
  large = torch::min(large, torch::full_like(large, num_buckets - 1));
  return buckets + torch::where(is_small, rp, large);
}

// ---------------------------------------------------------------- modules

namespace {

// T5LayerNorm: x * rsqrt(mean(x^2) + eps) with the mean in fp32, cast to the weight's dtype when it
// is half, times the weight.
class T5NormImpl : public torch::nn::Module {
 public:
  T5NormImpl(int64_t dim, double eps) : eps(eps) { weight = register_parameter("weight", torch::ones({dim})); }
  torch::Tensor forward(const torch::Tensor& x) {
    const auto variance = x.to(torch::kFloat32).pow(2).mean(-1, true);
    auto h = x * torch::rsqrt(variance + eps);
    if (weight.scalar_type() == torch::kHalf || weight.scalar_type() == torch::kBFloat16)
      h = h.to(weight.scalar_type());
    return weight * h;
  }
  double eps;
  torch::Tensor weight;
};
TORCH_MODULE(T5Norm);

class T5AttentionImpl : public torch::nn::Module {
 public:
  T5AttentionImpl(const T5Config& c, bool relative_bias) {
    auto lin = [&](int64_t in, int64_t out) { return Linear(torch::nn::LinearOptions(in, out).bias(false)); };
    q = register_module("q", lin(c.d_model, c.inner_dim()));
    k = register_module("k", lin(c.d_model, c.inner_dim()));
    v = register_module("v", lin(c.d_model, c.inner_dim()));
    o = register_module("o", lin(c.inner_dim(), c.d_model));
    if (relative_bias)
      relative_attention_bias = register_module(
          "relative_attention_bias", torch::nn::Embedding(c.relative_attention_num_buckets, c.num_heads));
  }
  Linear q{nullptr}, k{nullptr}, v{nullptr}, o{nullptr};
  torch::nn::Embedding relative_attention_bias{nullptr};
};
TORCH_MODULE(T5Attention);

// layer.N of a block holding an attention: "SelfAttention" or "EncDecAttention", and "layer_norm".
class T5AttentionLayerImpl : public torch::nn::Module {
 public:
  T5AttentionLayerImpl(const T5Config& c, const char* name, bool relative_bias) {
    attention = register_module(name, T5Attention(c, relative_bias));
    layer_norm = register_module("layer_norm", T5Norm(c.d_model, c.layer_norm_epsilon));
  }
  T5Attention attention{nullptr};
  T5Norm layer_norm{nullptr};
};
TORCH_MODULE(T5AttentionLayer);

// layer.N holding the MLP: "DenseReluDense" (wi, or wi_0 / wi_1; wo) and "layer_norm".
class T5FeedForwardImpl : public torch::nn::Module {
 public:
  explicit T5FeedForwardImpl(const T5Config& c) : act(c.dense_act_fn) {
    auto d = register_module("DenseReluDense", std::make_shared<torch::nn::Module>());
    auto lin = [&](int64_t in, int64_t out) { return Linear(torch::nn::LinearOptions(in, out).bias(false)); };
    if (c.is_gated_act) {
      wi_0 = d->register_module("wi_0", lin(c.d_model, c.d_ff));
      wi_1 = d->register_module("wi_1", lin(c.d_model, c.d_ff));
    } else {
      wi = d->register_module("wi", lin(c.d_model, c.d_ff));
    }
    wo = d->register_module("wo", lin(c.d_ff, c.d_model));
    layer_norm = register_module("layer_norm", T5Norm(c.d_model, c.layer_norm_epsilon));
  }
  // T5LayerFF: x + DenseReluDense(layer_norm(x)); the product goes to wo's dtype (fp32 wo in fp16).
  torch::Tensor forward(const torch::Tensor& x) {
    const auto n = layer_norm(x);
    torch::Tensor h = wi_0 ? activate(wi_0(n), act) * wi_1(n) : activate(wi(n), act);
    if (h.scalar_type() != wo->weight.scalar_type()) h = h.to(wo->weight.scalar_type());
    return x + wo(h);
  }
  std::string act;
  Linear wi{nullptr}, wi_0{nullptr}, wi_1{nullptr}, wo{nullptr};
  T5Norm layer_norm{nullptr};
};
TORCH_MODULE(T5FeedForward);

class T5BlockImpl : public torch::nn::Module {
 public:
  T5BlockImpl(const T5Config& c, bool is_decoder, bool relative_bias) {
    auto list = register_module("layer", torch::nn::ModuleList());
    self_attn = T5AttentionLayer(c, "SelfAttention", relative_bias);
    list->push_back(self_attn);
    if (is_decoder) {
      cross_attn = T5AttentionLayer(c, "EncDecAttention", false);
      list->push_back(cross_attn);
    }
    ff = T5FeedForward(c);
    list->push_back(ff);
  }
  T5AttentionLayer self_attn{nullptr}, cross_attn{nullptr};
  T5FeedForward ff{nullptr};
};
TORCH_MODULE(T5Block);

// transformers' fp16 clamp after each sub-layer: to the largest finite value, minus 1000 when any
// value overflowed (without a host sync).
torch::Tensor clamp_fp16(const torch::Tensor& h) {
  if (h.scalar_type() != torch::kHalf) return h;
  const double mx = 65504.0;
  const auto v = torch::where(torch::isinf(h).any(), torch::scalar_tensor(mx - 1000.0, h.options()),
                              torch::scalar_tensor(mx, h.options()));
  return torch::clamp(h, c10::optional<torch::Tensor>(-v), c10::optional<torch::Tensor>(v));
}

// [B, H, L, D] from [B, L, H * D].
torch::Tensor heads(const torch::Tensor& x, int64_t H, int64_t D) {
  return x.view({x.size(0), x.size(1), H, D}).transpose(1, 2);
}

// Attention of q [B, H, L, D] over k, v [B, H, S, D] with the additive bias (position bias + mask),
// no scaling; softmax in fp32 as T5Attention does.
torch::Tensor attend(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, const torch::Tensor& bias) {
  const auto o = attention(q, k, v, bias, false, 1.0);
  return o.transpose(1, 2).reshape({q.size(0), q.size(2), q.size(1) * q.size(3)});
}

}  // namespace

T5StackImpl::T5StackImpl(const T5Config& c, bool is_decoder)
    : is_decoder(is_decoder), num_layers(is_decoder ? c.num_decoder_layers : c.num_layers) {
  block = register_module("block", torch::nn::ModuleList());
  for (int64_t i = 0; i < num_layers; ++i) block->push_back(T5Block(c, is_decoder, i == 0));
  final_layer_norm = register_module("final_layer_norm", T5Norm(c.d_model, c.layer_norm_epsilon)).get();
}

void T5Cache::reorder(const torch::Tensor& index) {
  if (!encoder_mask.defined()) return;
  const auto idx = index.to(encoder_mask.device(), torch::kLong);
  for (auto* list : {&self_k, &self_v, &cross_k, &cross_v})
    for (auto& t : *list)
      if (t.defined()) t = t.index_select(0, idx);
  encoder_mask = encoder_mask.index_select(0, idx);
}

// ---------------------------------------------------------------- model

namespace {

torch::Tensor final_norm(T5Stack& s, const torch::Tensor& h) {
  return dynamic_cast<T5NormImpl*>(s->final_layer_norm)->forward(h);
}

// The relative position bias of a stack [1, H, Lq, Lk] for query positions [q0, q0 + Lq) and key
// positions [0, Lk), from its first block's table.
torch::Tensor position_bias(T5Stack& s, const T5Config& c, int64_t q0, int64_t Lq, int64_t Lk) {
  auto& table = s->block->ptr<T5BlockImpl>(0)->self_attn->attention->relative_attention_bias;
  const auto dev = table->weight.device();
  const auto ctx = torch::arange(q0, q0 + Lq, torch::dtype(torch::kLong).device(dev)).unsqueeze(1);
  const auto mem = torch::arange(0, Lk, torch::dtype(torch::kLong).device(dev)).unsqueeze(0);
  const auto buckets = t5_relative_position_bucket(mem - ctx, !s->is_decoder, c.relative_attention_num_buckets,
                                                   c.relative_attention_max_distance);
  return table(buckets).permute({2, 0, 1}).unsqueeze(0);
}

}  // namespace

T5ModelImpl::T5ModelImpl(const T5Config& c, bool with_decoder) : cfg(c) {
  cfg.validate();
  shared = register_module("shared", torch::nn::Embedding(cfg.vocab_size, cfg.d_model));
  encoder = register_module("encoder", T5Stack(cfg, false));
  if (with_decoder) {
    decoder = register_module("decoder", T5Stack(cfg, true));
    if (!cfg.tie_word_embeddings)
      lm_head = register_module("lm_head", Linear(torch::nn::LinearOptions(cfg.d_model, cfg.vocab_size).bias(false)));
  }
}

torch::ScalarType T5ModelImpl::dtype() const { return shared->weight.scalar_type(); }
torch::Device T5ModelImpl::device() const { return shared->weight.device(); }

void T5ModelImpl::to_dtype(torch::ScalarType dt, c10::optional<torch::Device> dev) {
  torch::NoGradGuard ng;
  const auto target = dev.has_value() ? *dev : device();
  for (auto& p : named_parameters(true)) {
    // _keep_in_fp32_modules = ["wo"]: every parameter of a module named "wo", when the model is fp16
    const auto& name = p.key();
    const bool wo = name.size() >= 10 && name.compare(name.size() - 10, 10, ".wo.weight") == 0;
    const auto want = (dt == torch::kHalf && wo) ? torch::kFloat32 : dt;
    auto& t = p.value();
    if (t.scalar_type() != want || t.device() != target) t.set_data(t.to(target, want));
  }
  for (auto& b : named_buffers(true)) {
    auto& t = b.value();
    if (t.is_floating_point() && (t.scalar_type() != dt || t.device() != target)) t.set_data(t.to(target, dt));
  }
}

torch::Tensor T5ModelImpl::embed(const torch::Tensor& ids) {
  if (ids.dim() != 2) LOUPE_THROW(InvalidArgument, "T5: input ids must be [batch, length], got " << ids.sizes());
  if (ids.numel() > 0) {
    const auto lo = ids.min().item<int64_t>(), hi = ids.max().item<int64_t>();
    if (lo < 0 || hi >= cfg.vocab_size)
      LOUPE_THROW(InvalidArgument, "T5: token id " << (lo < 0 ? lo : hi) << " outside the vocabulary of "
                                                   << cfg.vocab_size);
  }
  return shared(ids.to(device(), torch::kLong));
}

torch::Tensor T5ModelImpl::encode(const torch::Tensor& input_ids, const torch::Tensor& attention_mask) {
  if (!input_ids.defined()) LOUPE_THROW(InvalidArgument, "T5: no input ids");
  return encode_embeds(embed(input_ids), attention_mask);
}

torch::Tensor T5ModelImpl::encode_embeds(const torch::Tensor& inputs_embeds, const torch::Tensor& attention_mask) {
  if (!inputs_embeds.defined() || inputs_embeds.dim() != 3 || inputs_embeds.size(2) != cfg.d_model)
    LOUPE_THROW(InvalidArgument, "T5: input embeddings must be [batch, length, " << cfg.d_model << "], got "
                                                                                 << (inputs_embeds.defined() ? inputs_embeds.sizes() : c10::IntArrayRef{}));
  const auto dev = device();
  const auto dt = dtype();
  auto h = inputs_embeds.to(dev, dt);
  const int64_t B = h.size(0), L = h.size(1);
  if (B == 0 || L == 0) LOUPE_THROW(InvalidArgument, "T5: no tokens to encode (input " << h.sizes() << ")");
  torch::Tensor keep;
  if (attention_mask.defined()) {
    if (attention_mask.dim() != 2 || attention_mask.size(0) != B || attention_mask.size(1) != L)
      LOUPE_THROW(InvalidArgument, "T5: attention mask must be [" << B << ", " << L << "], got "
                                                                 << attention_mask.sizes());
    keep = attention_mask.to(dev) != 0;
  }
  // position bias (once, from block 0) plus the padding mask: [B or 1, H, L, L]
  auto bias = position_bias(encoder, cfg, 0, L, L).to(dt);
  if (keep.defined())
    bias = bias + torch::zeros({B, 1, 1, L}, h.options()).masked_fill_(keep.logical_not().view({B, 1, 1, L}),
                                                                      finfo_min(dt));
  const int64_t H = cfg.num_heads, D = cfg.d_kv;
  for (int64_t i = 0; i < encoder->num_layers; ++i) {
    auto& blk = *encoder->block->ptr<T5BlockImpl>(i);
    auto& sa = *blk.self_attn;
    auto& at = *sa.attention;
    const auto x = sa.layer_norm(h);
    const auto o = attend(heads(at.q(x), H, D), heads(at.k(x), H, D), heads(at.v(x), H, D), bias);
    h = clamp_fp16(h + at.o(o));
    h = clamp_fp16(blk.ff(h));
  }
  return final_norm(encoder, h);
}

T5Cache T5ModelImpl::make_cache(const torch::Tensor& encoder_hidden, const torch::Tensor& encoder_mask) {
  if (!has_decoder()) LOUPE_THROW(InvalidState, "T5: this model was built without its decoder (encoder only)");
  if (!encoder_hidden.defined() || encoder_hidden.dim() != 3 || encoder_hidden.size(2) != cfg.d_model)
    LOUPE_THROW(InvalidArgument, "T5: encoder states must be [batch, length, " << cfg.d_model << "]");
  const auto dev = device();
  const auto enc = encoder_hidden.to(dev, dtype());
  const int64_t B = enc.size(0), S = enc.size(1);
  T5Cache c;
  if (encoder_mask.defined()) {
    if (encoder_mask.dim() != 2 || encoder_mask.size(0) != B || encoder_mask.size(1) != S)
      LOUPE_THROW(InvalidArgument, "T5: encoder mask must be [" << B << ", " << S << "], got " << encoder_mask.sizes());
    c.encoder_mask = encoder_mask.to(dev) != 0;
  } else {
    c.encoder_mask = torch::ones({B, S}, torch::dtype(torch::kBool).device(dev));
  }
  const int64_t H = cfg.num_heads, D = cfg.d_kv;
  for (int64_t i = 0; i < decoder->num_layers; ++i) {
    auto& at = *decoder->block->ptr<T5BlockImpl>(i)->cross_attn->attention;
    c.cross_k.push_back(heads(at.k(enc), H, D));
    c.cross_v.push_back(heads(at.v(enc), H, D));
    c.self_k.emplace_back();
    c.self_v.emplace_back();
  }
  return c;
}

torch::Tensor T5ModelImpl::decode_hidden(const torch::Tensor& decoder_ids, T5Cache& cache) {
  if (!has_decoder()) LOUPE_THROW(InvalidState, "T5: this model was built without its decoder (encoder only)");
  if (cache.cross_k.size() != static_cast<size_t>(decoder->num_layers))
    LOUPE_THROW(InvalidArgument, "T5: the decoder cache was not made by make_cache() of this model");
  auto h = embed(decoder_ids);
  const int64_t B = h.size(0), L = h.size(1);
  if (L == 0) LOUPE_THROW(InvalidArgument, "T5: no decoder tokens to run");
  if (B != cache.batch())
    LOUPE_THROW(InvalidArgument, "T5: the cache holds " << cache.batch() << " rows, the decoder input " << B);
  const auto dt = dtype();
  const int64_t past = cache.length, total = past + L, S = cache.encoder_mask.size(1);
  const double neg = finfo_min(dt);
  // self-attention: position bias of the new queries over every key, plus the causal mask
  auto self_bias = position_bias(decoder, cfg, past, L, total).to(dt);
  {
    const auto qi = torch::arange(past, total, torch::dtype(torch::kLong).device(h.device())).unsqueeze(1);
    const auto ki = torch::arange(0, total, torch::dtype(torch::kLong).device(h.device())).unsqueeze(0);
    self_bias = self_bias + torch::zeros({1, 1, L, total}, h.options()).masked_fill_((ki > qi).view({1, 1, L, total}), neg);
  }
  // cross-attention: no position bias, the encoder's padding mask
  const auto cross_bias = torch::zeros({B, 1, 1, S}, h.options())
                              .masked_fill_(cache.encoder_mask.logical_not().view({B, 1, 1, S}), neg);
  const int64_t H = cfg.num_heads, D = cfg.d_kv;
  for (int64_t i = 0; i < decoder->num_layers; ++i) {
    auto& blk = *decoder->block->ptr<T5BlockImpl>(i);
    {
      auto& sa = *blk.self_attn;
      auto& at = *sa.attention;
      const auto x = sa.layer_norm(h);
      auto k = heads(at.k(x), H, D), v = heads(at.v(x), H, D);
      auto& ck = cache.self_k[static_cast<size_t>(i)];
      auto& cv = cache.self_v[static_cast<size_t>(i)];
      ck = ck.defined() ? torch::cat({ck, k}, 2) : k;
      cv = cv.defined() ? torch::cat({cv, v}, 2) : v;
      h = clamp_fp16(h + at.o(attend(heads(at.q(x), H, D), ck, cv, self_bias)));
    }
    {
      auto& ca = *blk.cross_attn;
      auto& at = *ca.attention;
      const auto x = ca.layer_norm(h);
      h = clamp_fp16(h + at.o(attend(heads(at.q(x), H, D), cache.cross_k[static_cast<size_t>(i)],
                                     cache.cross_v[static_cast<size_t>(i)], cross_bias)));
    }
    h = clamp_fp16(blk.ff(h));
  }
  cache.length = total;
  return final_norm(decoder, h);
}

torch::Tensor T5ModelImpl::logits(const torch::Tensor& decoder_hidden) {
  if (!has_decoder()) LOUPE_THROW(InvalidState, "T5: this model was built without its decoder (encoder only)");
  if (cfg.tie_word_embeddings) {
    const auto h = decoder_hidden * std::pow(static_cast<double>(cfg.d_model), -0.5);
    return loupe::nn::linear(h.to(shared->weight.scalar_type()), shared->weight);
  }
  return lm_head(decoder_hidden.to(lm_head->weight.scalar_type()));
}

torch::Tensor T5ModelImpl::decode(const torch::Tensor& decoder_ids, T5Cache& cache) {
  return logits(decode_hidden(decoder_ids, cache));
}

torch::Tensor T5ModelImpl::forward(const torch::Tensor& input_ids, const torch::Tensor& attention_mask,
                                   const torch::Tensor& decoder_ids) {
  auto cache = make_cache(encode(input_ids, attention_mask), attention_mask);
  return decode(decoder_ids, cache);
}

Stepper t5_stepper(T5Model model, T5Cache& cache) {
  Stepper s;
  s.step = [model, &cache](const torch::Tensor& ids) mutable -> torch::Tensor {
    torch::Tensor in;
    if (ids.defined())
      in = ids.reshape({-1, 1});
    else
      in = torch::full({cache.batch(), 1}, model->cfg.decoder_start_token_id, torch::kLong);
    return model->decode(in, cache).select(1, in.size(1) - 1);
  };
  s.reorder = [&cache](const torch::Tensor& index) { cache.reorder(index); };
  return s;
}

}  // namespace loupe::nn
