#include "models/sd/blocks.h"

#include <cmath>

#include "nn/attention.h"

namespace loupe::sd {

namespace F = torch::nn::functional;
using torch::nn::Conv2dOptions;
using torch::nn::GroupNormOptions;
using torch::nn::LinearOptions;

void add_placeholder(const torch::nn::ModuleList& list) { list.ptr()->push_back(torch::nn::Identity()); }

AttentionImpl::AttentionImpl(int64_t query_dim, int64_t context_dim, int64_t heads_, int64_t head_dim_, bool qkv_bias,
                             int64_t norm_groups, double norm_eps)
    : heads(heads_), head_dim(head_dim_) {
  const int64_t inner = heads * head_dim;
  if (norm_groups > 0)
    group_norm = register_module("group_norm", loupe::nn::GroupNorm(GroupNormOptions(norm_groups, query_dim).eps(norm_eps)));
  to_q = register_module("to_q", loupe::nn::Linear(LinearOptions(query_dim, inner).bias(qkv_bias)));
  to_k = register_module("to_k", loupe::nn::Linear(LinearOptions(context_dim, inner).bias(qkv_bias)));
  to_v = register_module("to_v", loupe::nn::Linear(LinearOptions(context_dim, inner).bias(qkv_bias)));
  auto to_out = register_module("to_out", torch::nn::ModuleList());
  out = loupe::nn::Linear(inner, query_dim);
  to_out->push_back(out);
}

torch::Tensor AttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& context) {
  const auto& c = context.defined() ? context : x;
  const int64_t B = x.size(0);
  auto split = [&](const torch::Tensor& t) { return t.view({B, -1, heads, head_dim}).transpose(1, 2); };
  auto a = loupe::nn::attention(split(to_q(x)), split(to_k(c)), split(to_v(c)), {}, false, 1.0 / std::sqrt(double(head_dim)));
  return out(a.transpose(1, 2).reshape({B, -1, heads * head_dim}));
}

torch::Tensor AttentionImpl::forward_spatial(const torch::Tensor& x) {
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  auto h = group_norm(x).view({B, C, H * W}).transpose(1, 2);
  h = forward(h);
  return h.transpose(1, 2).reshape({B, C, H, W}) + x;
}

ResnetBlock2DImpl::ResnetBlock2DImpl(int64_t in, int64_t out, int64_t temb_channels, int64_t groups, double eps) {
  norm1 = register_module("norm1", loupe::nn::GroupNorm(GroupNormOptions(groups, in).eps(eps)));
  conv1 = register_module("conv1", loupe::nn::Conv2d(Conv2dOptions(in, out, 3).padding(1)));
  if (temb_channels > 0) time_emb_proj = register_module("time_emb_proj", loupe::nn::Linear(temb_channels, out));
  norm2 = register_module("norm2", loupe::nn::GroupNorm(GroupNormOptions(groups, out).eps(eps)));
  conv2 = register_module("conv2", loupe::nn::Conv2d(Conv2dOptions(out, out, 3).padding(1)));
  if (in != out) conv_shortcut = register_module("conv_shortcut", loupe::nn::Conv2d(Conv2dOptions(in, out, 1)));
}

torch::Tensor ResnetBlock2DImpl::forward(const torch::Tensor& x, const torch::Tensor& temb) {
  // Inference only: the activations and sums go in place into tensors made here (one full-size
  // temporary fewer per step; the same values, as a + b == b + a in floating point).
  auto a = norm1(x);
  auto h = conv1(torch::silu_(a));
  if (time_emb_proj && temb.defined()) h.add_(time_emb_proj(torch::silu(temb)).unsqueeze(-1).unsqueeze(-1));
  a = norm2(h);
  h = conv2(torch::silu_(a));
  return h.add_(conv_shortcut ? conv_shortcut(x) : x);
}

Downsample2DImpl::Downsample2DImpl(int64_t channels, int64_t padding_) : padding(padding_) {
  conv = register_module("conv", loupe::nn::Conv2d(Conv2dOptions(channels, channels, 3).stride(2).padding(padding)));
}

torch::Tensor Downsample2DImpl::forward(const torch::Tensor& x) {
  if (padding == 0) return conv(F::pad(x, F::PadFuncOptions({0, 1, 0, 1})));
  return conv(x);
}

Upsample2DImpl::Upsample2DImpl(int64_t channels) {
  conv = register_module("conv", loupe::nn::Conv2d(Conv2dOptions(channels, channels, 3).padding(1)));
}

torch::Tensor Upsample2DImpl::forward(const torch::Tensor& x, c10::optional<std::vector<int64_t>> size) {
  if (!size) {
    // Nearest 2x is each pixel repeated 2 x 2: one copy through a broadcast view, in any dtype (the
    // interpolation kernel would need a float32 round trip for bfloat16), same values exactly.
    const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
    return conv(x.reshape({B, C, H, 1, W, 1}).expand({B, C, H, 2, W, 2}).reshape({B, C, 2 * H, 2 * W}));
  }
  auto opts = F::InterpolateFuncOptions().mode(torch::kNearest).size(*size);
  // bfloat16 nearest upsampling is not implemented everywhere: go through float32 as diffusers does
  auto h = x.scalar_type() == torch::kBFloat16 ? F::interpolate(x.to(torch::kFloat32), opts).to(x.scalar_type())
                                               : F::interpolate(x, opts);
  return conv(h);
}

BasicTransformerBlockImpl::BasicTransformerBlockImpl(int64_t dim, int64_t heads, int64_t head_dim, int64_t context_dim) {
  auto ln = [&] { return loupe::nn::LayerNorm(torch::nn::LayerNormOptions({dim}).eps(1e-5)); };
  norm1 = register_module("norm1", ln());
  attn1 = register_module("attn1", Attention(dim, dim, heads, head_dim, false));
  norm2 = register_module("norm2", ln());
  attn2 = register_module("attn2", Attention(dim, context_dim, heads, head_dim, false));
  norm3 = register_module("norm3", ln());
  auto ff = register_module("ff", std::make_shared<torch::nn::Module>());
  auto net = ff->register_module("net", torch::nn::ModuleList());
  auto geglu = std::make_shared<torch::nn::Module>();
  ff_in = geglu->register_module("proj", loupe::nn::Linear(dim, dim * 4 * 2));
  net->push_back(geglu);
  add_placeholder(net);  // dropout
  ff_out = loupe::nn::Linear(dim * 4, dim);
  net->push_back(ff_out);
}

torch::Tensor BasicTransformerBlockImpl::forward(torch::Tensor x, const torch::Tensor& context) {
  // sums and the gate in place into tensors made here (as in ResnetBlock2D)
  x = attn1(norm1(x)).add_(x);
  x = attn2(norm2(x), context).add_(x);
  auto hg = ff_in(norm3(x)).chunk(2, -1);
  return ff_out(torch::gelu(hg[1]).mul_(hg[0])).add_(x);
}

Transformer2DImpl::Transformer2DImpl(int64_t channels, int64_t heads, int64_t head_dim, int64_t context_dim,
                                     int64_t layers, int64_t groups, bool linear_projection)
    : linear(linear_projection) {
  const int64_t inner = heads * head_dim;
  norm = register_module("norm", loupe::nn::GroupNorm(GroupNormOptions(groups, channels).eps(1e-6)));
  if (linear) proj_in_linear = register_module("proj_in", loupe::nn::Linear(channels, inner));
  else proj_in_conv = register_module("proj_in", loupe::nn::Conv2d(Conv2dOptions(channels, inner, 1)));
  transformer_blocks = register_module("transformer_blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < layers; ++i) transformer_blocks->push_back(BasicTransformerBlock(inner, heads, head_dim, context_dim));
  if (linear) proj_out_linear = register_module("proj_out", loupe::nn::Linear(inner, channels));
  else proj_out_conv = register_module("proj_out", loupe::nn::Conv2d(Conv2dOptions(inner, channels, 1)));
}

torch::Tensor Transformer2DImpl::forward(const torch::Tensor& x, const torch::Tensor& context) {
  const int64_t B = x.size(0), H = x.size(2), W = x.size(3);
  auto h = norm(x);
  if (!linear) h = proj_in_conv(h);
  const int64_t C = h.size(1);
  h = h.permute({0, 2, 3, 1}).reshape({B, H * W, C});
  if (linear) h = proj_in_linear(h);
  for (const auto& blk : *transformer_blocks) h = blk->as<BasicTransformerBlockImpl>()->forward(h, context);
  if (linear) h = proj_out_linear(h);
  h = h.reshape({B, H, W, h.size(-1)}).permute({0, 3, 1, 2});
  if (!linear) h = proj_out_conv(h.contiguous());
  return h + x;
}

}  // namespace loupe::sd
