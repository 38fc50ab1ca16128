#include "models/flux/transformer.h"

#include <cmath>

#include "core/error.h"
#include "io/config.h"
#include "models/sd/unet.h"
#include "nn/attention.h"

namespace loupe::flux {

void FluxConfig::validate(const std::string& file) const {
  const FluxConfig& c = *this;
  if (c.inner_dim() > 65536 || c.num_layers > 1024 || c.num_single_layers > 1024)
    LOUPE_THROW(BadModel, file << ": sizes beyond any FLUX model (width " << c.inner_dim() << ", " << c.num_layers
                               << " double blocks, " << c.num_single_layers << " single blocks)");
  if (!(c.mlp_ratio > 0 && c.mlp_ratio <= 64))
    LOUPE_THROW(BadModel, file << ": MLP ratio " << c.mlp_ratio << " is outside 0 to 64");
  int64_t sum = 0;
  for (int64_t a : c.axes_dims_rope) {
    if (a <= 0 || a % 2)
      LOUPE_THROW(BadModel, file << ": \"axes_dims_rope\" has " << a << "; every axis needs a positive even size");
    sum += a;
  }
  if (c.axes_dims_rope.size() != 3 || sum != c.attention_head_dim)
    LOUPE_THROW(BadModel, file << ": \"axes_dims_rope\" must be 3 sizes summing to attention_head_dim ("
                               << c.attention_head_dim << "), found " << c.axes_dims_rope.size() << " summing to "
                               << sum);
}

FluxConfig FluxConfig::from_json(const nlohmann::json& j, const std::string& file) {
  if (!j.is_object()) LOUPE_THROW(BadModel, file << ": not a JSON object");
  FluxConfig c;
  c.patch_size = io::get_in<int64_t>(j, "patch_size", c.patch_size, file, 1, 16);
  c.in_channels = io::get_in<int64_t>(j, "in_channels", c.in_channels, file, 1, 65536);
  c.out_channels = io::get_in<int64_t>(j, "out_channels", 0, file, 0, 65536);
  c.num_layers = io::get_in<int64_t>(j, "num_layers", c.num_layers, file, 0, 1024);
  c.num_single_layers = io::get_in<int64_t>(j, "num_single_layers", c.num_single_layers, file, 0, 1024);
  c.attention_head_dim = io::get_in<int64_t>(j, "attention_head_dim", c.attention_head_dim, file, 2, 4096);
  c.num_attention_heads = io::get_in<int64_t>(j, "num_attention_heads", c.num_attention_heads, file, 1, 1024);
  c.joint_attention_dim = io::get_in<int64_t>(j, "joint_attention_dim", c.joint_attention_dim, file, 1, 65536);
  c.pooled_projection_dim = io::get_in<int64_t>(j, "pooled_projection_dim", c.pooled_projection_dim, file, 1, 65536);
  c.guidance_embeds = io::get_or<bool>(j, "guidance_embeds", c.guidance_embeds, file);
  c.axes_dims_rope = io::get_in<std::vector<int64_t>>(j, "axes_dims_rope", c.axes_dims_rope, file, 1, 4096);
  c.validate(file);
  return c;
}

std::string variant_of(const FluxConfig& c) {
  if (c.in_channels == 384) return "fill";
  return c.guidance_embeds ? "dev" : "schnell";
}

// ---- modules ------------------------------------------------------------------------------------------

RMSNormImpl::RMSNormImpl(int64_t dim, double e) : eps(e) { weight = register_parameter("weight", torch::ones({dim})); }

torch::Tensor RMSNormImpl::forward(const torch::Tensor& x) {
  // torch.nn.RMSNorm: x * rsqrt(mean(x^2) + eps) * weight, in the input's dtype
  return x * torch::rsqrt(x.pow(2).mean(-1, true) + eps) * weight;
}

TimestepEmbeddingImpl::TimestepEmbeddingImpl(int64_t in, int64_t dim) {
  linear_1 = register_module("linear_1", loupe::nn::Linear(in, dim));
  linear_2 = register_module("linear_2", loupe::nn::Linear(dim, dim));
}

torch::Tensor TimestepEmbeddingImpl::forward(const torch::Tensor& x) {
  return linear_2(torch::silu(linear_1(x)));
}

TimeTextEmbedImpl::TimeTextEmbedImpl(int64_t dim, int64_t pooled_dim, bool guidance) {
  timestep_embedder = register_module("timestep_embedder", TimestepEmbedding(256, dim));
  if (guidance) guidance_embedder = register_module("guidance_embedder", TimestepEmbedding(256, dim));
  text_embedder = register_module("text_embedder", TimestepEmbedding(pooled_dim, dim));  // same shape: linear, SiLU, linear
}

torch::Tensor TimeTextEmbedImpl::forward(const torch::Tensor& timestep, const torch::Tensor& guidance,
                                         const torch::Tensor& pooled) {
  // diffusers' Timesteps(256, flip_sin_to_cos=True, downscale_freq_shift=0), then to the pooled dtype
  auto emb = timestep_embedder(sd::timestep_embedding(timestep, 256, true, 0).to(pooled.scalar_type()));
  if (guidance_embedder) {
    LOUPE_CHECK(guidance.defined(), InvalidArgument,
                "FLUX transformer: this model has a guidance embedding (dev / Fill): a guidance scale is needed");
    emb = emb + guidance_embedder(sd::timestep_embedding(guidance, 256, true, 0).to(pooled.scalar_type()));
  }
  return emb + text_embedder(pooled);
}

FluxAttentionImpl::FluxAttentionImpl(int64_t dim, int64_t h, int64_t hd, bool added, bool pre_only, double eps)
    : heads(h), head_dim(hd) {
  const int64_t inner = h * hd;
  norm_q = register_module("norm_q", RMSNorm(hd, eps));
  norm_k = register_module("norm_k", RMSNorm(hd, eps));
  to_q = register_module("to_q", loupe::nn::Linear(dim, inner));
  to_k = register_module("to_k", loupe::nn::Linear(dim, inner));
  to_v = register_module("to_v", loupe::nn::Linear(dim, inner));
  if (!pre_only) {
    to_out = register_module("to_out", torch::nn::ModuleList());
    to_out->push_back(loupe::nn::Linear(inner, dim));
  }
  if (added) {
    norm_added_q = register_module("norm_added_q", RMSNorm(hd, eps));
    norm_added_k = register_module("norm_added_k", RMSNorm(hd, eps));
    add_q_proj = register_module("add_q_proj", loupe::nn::Linear(dim, inner));
    add_k_proj = register_module("add_k_proj", loupe::nn::Linear(dim, inner));
    add_v_proj = register_module("add_v_proj", loupe::nn::Linear(dim, inner));
    to_add_out = register_module("to_add_out", loupe::nn::Linear(inner, dim));
  }
}

namespace {

struct GeluProjImpl : torch::nn::Module {  // diffusers' GELU(dim, hidden, approximate="tanh"): proj
  GeluProjImpl(int64_t in, int64_t out) { proj = register_module("proj", loupe::nn::Linear(in, out)); }
  loupe::nn::Linear proj{nullptr};
};
TORCH_MODULE(GeluProj);

struct EmptyImpl : torch::nn::Module {};  // Dropout's slot (no parameters)
TORCH_MODULE(Empty);

// apply_rotary_emb(x [B, S, H, D], (cos, sin) [S, D]) with repeat-interleaved real pairs, in fp32.
torch::Tensor apply_rope(const torch::Tensor& x, const std::pair<torch::Tensor, torch::Tensor>& r) {
  auto cos = r.first.unsqueeze(0).unsqueeze(2), sin = r.second.unsqueeze(0).unsqueeze(2);
  auto pairs = x.reshape({x.size(0), x.size(1), x.size(2), -1, 2});
  auto re = pairs.select(-1, 0), im = pairs.select(-1, 1);
  auto rotated = torch::stack({-im, re}, -1).flatten(3);
  return (x.to(torch::kFloat32) * cos + rotated.to(torch::kFloat32) * sin).to(x.scalar_type());
}

// q/k/v [B, S, H, D] -> attention -> [B, S, H * D]
torch::Tensor attend(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) {
  auto o = loupe::nn::attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2));
  return o.transpose(1, 2).flatten(2).to(q.scalar_type());
}

torch::Tensor heads_of(const torch::Tensor& x, int64_t head_dim) {
  return x.view({x.size(0), x.size(1), -1, head_dim});
}

torch::Tensor layer_norm(const torch::Tensor& x) {  // LayerNorm(dim, elementwise_affine=False, eps=1e-6)
  return torch::layer_norm(x, {x.size(-1)}, {}, {}, 1e-6);
}

torch::Tensor modulate(const torch::Tensor& x, const torch::Tensor& shift, const torch::Tensor& scale) {
  return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1);
}

}  // namespace

FeedForwardImpl::FeedForwardImpl(int64_t dim, int64_t hidden) {
  net = register_module("net", torch::nn::ModuleList());
  GeluProj g(dim, hidden);
  proj = g->proj;
  net->push_back(g);
  net->push_back(Empty());
  out = loupe::nn::Linear(hidden, dim);
  net->push_back(out);
}

torch::Tensor FeedForwardImpl::forward(const torch::Tensor& x) { return out(torch::gelu(proj(x), "tanh")); }

AdaNormImpl::AdaNormImpl(int64_t dim, int64_t chunks) {
  linear = register_module("linear", loupe::nn::Linear(dim, chunks * dim));
}

std::vector<torch::Tensor> AdaNormImpl::forward(const torch::Tensor& emb) {
  const int64_t n = linear->weight.size(0) / linear->weight.size(1);
  return linear(torch::silu(emb)).chunk(n, 1);
}

std::pair<torch::Tensor, torch::Tensor> rope(const torch::Tensor& ids, const std::vector<int64_t>& axes_dim,
                                             double theta) {
  // diffusers' get_1d_rotary_pos_embed(dim, pos, theta, repeat_interleave_real=True, use_real=True,
  // freqs_dtype=float64) per axis, concatenated. Positions as float32 first (ids.float()).
  const auto pos_all = ids.to(torch::kFloat32).to(torch::kFloat64);
  std::vector<torch::Tensor> coss, sins;
  for (size_t i = 0; i < axes_dim.size(); ++i) {
    const int64_t dim = axes_dim[i];
    auto freqs = 1.0 / torch::pow(theta, torch::arange(0, dim, 2, torch::dtype(torch::kFloat64).device(ids.device()))
                                                 .slice(0, 0, dim / 2) /
                                             double(dim));
    auto f = torch::outer(pos_all.select(1, int64_t(i)), freqs);  // [S, dim/2]
    coss.push_back(f.cos().repeat_interleave(2, 1).to(torch::kFloat32));
    sins.push_back(f.sin().repeat_interleave(2, 1).to(torch::kFloat32));
  }
  return {torch::cat(coss, -1), torch::cat(sins, -1)};
}

FluxTransformerBlockImpl::FluxTransformerBlockImpl(int64_t d, int64_t heads, int64_t head_dim) : dim(d) {
  norm1 = register_module("norm1", AdaNorm(d, 6));
  norm1_context = register_module("norm1_context", AdaNorm(d, 6));
  attn = register_module("attn", FluxAttention(d, heads, head_dim, true, false, 1e-6));
  ff = register_module("ff", FeedForward(d, 4 * d));
  ff_context = register_module("ff_context", FeedForward(d, 4 * d));
}

std::pair<torch::Tensor, torch::Tensor> FluxTransformerBlockImpl::forward(
    const torch::Tensor& hidden_in, const torch::Tensor& encoder_in, const torch::Tensor& temb,
    const std::pair<torch::Tensor, torch::Tensor>& r) {
  auto hidden = hidden_in, encoder = encoder_in;
  const auto m = norm1(temb);         // shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp
  const auto c = norm1_context(temb);
  auto nh = modulate(layer_norm(hidden), m[0], m[1]);
  auto ne = modulate(layer_norm(encoder), c[0], c[1]);
  const int64_t hd = attn->head_dim;
  auto q = attn->norm_q(heads_of(attn->to_q(nh), hd)), k = attn->norm_k(heads_of(attn->to_k(nh), hd));
  auto v = heads_of(attn->to_v(nh), hd);
  auto eq = attn->norm_added_q(heads_of(attn->add_q_proj(ne), hd));
  auto ek = attn->norm_added_k(heads_of(attn->add_k_proj(ne), hd));
  auto ev = heads_of(attn->add_v_proj(ne), hd);
  q = apply_rope(torch::cat({eq, q}, 1), r);
  k = apply_rope(torch::cat({ek, k}, 1), r);
  v = torch::cat({ev, v}, 1);
  auto o = attend(q, k, v);
  const int64_t t = encoder.size(1);
  auto attn_txt = o.slice(1, 0, t), attn_img = o.slice(1, t);
  attn_img = attn->to_out[0]->as<loupe::nn::Linear>()->forward(attn_img.contiguous());
  attn_txt = attn->to_add_out(attn_txt.contiguous());

  hidden = hidden + m[2].unsqueeze(1) * attn_img;
  hidden = hidden + m[5].unsqueeze(1) * ff(modulate(layer_norm(hidden), m[3], m[4]));
  encoder = encoder + c[2].unsqueeze(1) * attn_txt;
  encoder = encoder + c[5].unsqueeze(1) * ff_context(modulate(layer_norm(encoder), c[3], c[4]));
  if (encoder.scalar_type() == torch::kFloat16) encoder = encoder.clamp(-65504, 65504);
  return {encoder, hidden};
}

FluxSingleTransformerBlockImpl::FluxSingleTransformerBlockImpl(int64_t d, int64_t heads, int64_t head_dim,
                                                               double mlp_ratio)
    : dim(d) {
  const int64_t mlp = static_cast<int64_t>(double(d) * mlp_ratio);
  norm = register_module("norm", AdaNorm(d, 3));
  proj_mlp = register_module("proj_mlp", loupe::nn::Linear(d, mlp));
  proj_out = register_module("proj_out", loupe::nn::Linear(d + mlp, d));
  attn = register_module("attn", FluxAttention(d, heads, head_dim, false, true, 1e-6));
}

torch::Tensor FluxSingleTransformerBlockImpl::forward(const torch::Tensor& hidden, const torch::Tensor& temb,
                                                      const std::pair<torch::Tensor, torch::Tensor>& r) {
  const auto m = norm(temb);  // shift, scale, gate
  auto nh = modulate(layer_norm(hidden), m[0], m[1]);
  auto mlp = torch::gelu(proj_mlp(nh), "tanh");
  const int64_t hd = attn->head_dim;
  auto q = apply_rope(attn->norm_q(heads_of(attn->to_q(nh), hd)), r);
  auto k = apply_rope(attn->norm_k(heads_of(attn->to_k(nh), hd)), r);
  auto v = heads_of(attn->to_v(nh), hd);
  auto o = attend(q, k, v);
  auto out = hidden + m[2].unsqueeze(1) * proj_out(torch::cat({o, mlp}, 2));
  if (out.scalar_type() == torch::kFloat16) out = out.clamp(-65504, 65504);
  return out;
}

FluxTransformer2DModelImpl::FluxTransformer2DModelImpl(const FluxConfig& c) : cfg(c) {
  const int64_t d = c.inner_dim();
  time_text_embed = register_module("time_text_embed", TimeTextEmbed(d, c.pooled_projection_dim, c.guidance_embeds));
  context_embedder = register_module("context_embedder", loupe::nn::Linear(c.joint_attention_dim, d));
  x_embedder = register_module("x_embedder", loupe::nn::Linear(c.in_channels, d));
  transformer_blocks = register_module("transformer_blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.num_layers; ++i)
    transformer_blocks->push_back(FluxTransformerBlock(d, c.num_attention_heads, c.attention_head_dim));
  single_transformer_blocks = register_module("single_transformer_blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.num_single_layers; ++i)
    single_transformer_blocks->push_back(
        FluxSingleTransformerBlock(d, c.num_attention_heads, c.attention_head_dim, c.mlp_ratio));
  norm_out = register_module("norm_out", AdaNorm(d, 2));
  proj_out = register_module("proj_out", loupe::nn::Linear(d, c.out_dim()));
}

torch::Tensor FluxTransformer2DModelImpl::forward(const torch::Tensor& hidden_in, const torch::Tensor& encoder_in,
                                                  const torch::Tensor& pooled, const torch::Tensor& timestep_in,
                                                  const torch::Tensor& img_ids_in, const torch::Tensor& txt_ids_in,
                                                  const torch::Tensor& guidance_in, const BlockHook& hook) {
  torch::NoGradGuard ng;
  auto hidden = x_embedder(hidden_in);
  const auto dt = hidden.scalar_type();
  auto timestep = timestep_in.to(dt) * 1000;
  torch::Tensor guidance;
  if (cfg.guidance_embeds && guidance_in.defined()) guidance = guidance_in.to(dt) * 1000;
  auto temb = time_text_embed(timestep, guidance, pooled);
  auto encoder = context_embedder(encoder_in);
  auto txt_ids = txt_ids_in.dim() == 3 ? txt_ids_in[0] : txt_ids_in;
  auto img_ids = img_ids_in.dim() == 3 ? img_ids_in[0] : img_ids_in;
  const auto r = rope(torch::cat({txt_ids, img_ids}, 0), cfg.axes_dims_rope, cfg.rope_theta);

  int64_t index = 0;
  for (const auto& b : *transformer_blocks) {
    if (hook) hook(index, true);
    std::tie(encoder, hidden) = b->as<FluxTransformerBlock>()->forward(hidden, encoder, temb, r);
    if (hook) hook(index, false);
    ++index;
  }
  const int64_t t = encoder.size(1);
  auto joint = torch::cat({encoder, hidden}, 1);
  for (const auto& b : *single_transformer_blocks) {
    if (hook) hook(index, true);
    joint = b->as<FluxSingleTransformerBlock>()->forward(joint, temb, r);
    if (hook) hook(index, false);
    ++index;
  }
  hidden = joint.slice(1, t);
  const auto ss = norm_out(temb.to(dt));  // AdaLayerNormContinuous: (scale, shift)
  hidden = modulate(layer_norm(hidden), ss[1], ss[0]);
  return proj_out(hidden);
}

}  // namespace loupe::flux
