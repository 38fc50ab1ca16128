// Building blocks shared by the Stable Diffusion UNet and VAE, named as diffusers names them
// (ResnetBlock2D, Downsample2D, Upsample2D, Attention, Transformer2DModel, BasicTransformerBlock),
// so that a diffusers checkpoint binds by name.
#pragma once
#include <string>
#include <vector>

#include <torch/torch.h>

#include "nn/conv.h"
#include "nn/linear.h"
#include "nn/norm.h"

namespace loupe::sd {

// diffusers' Attention with to_q/to_k/to_v/to_out.0; optional group norm and residual (VAE form).
struct AttentionImpl : torch::nn::Module {
  AttentionImpl(int64_t query_dim, int64_t context_dim, int64_t heads, int64_t head_dim, bool qkv_bias,
                int64_t norm_groups = 0, double norm_eps = 1e-6);
  // x [B, L, C], context [B, S, Cc] (undefined: self-attention)
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& context = {});
  // VAE form: x [B, C, H, W] with group norm and residual
  torch::Tensor forward_spatial(const torch::Tensor& x);
  loupe::nn::Linear to_q{nullptr}, to_k{nullptr}, to_v{nullptr}, out{nullptr};
  loupe::nn::GroupNorm group_norm{nullptr};
  int64_t heads, head_dim;
};
TORCH_MODULE(Attention);

struct ResnetBlock2DImpl : torch::nn::Module {
  ResnetBlock2DImpl(int64_t in, int64_t out, int64_t temb_channels, int64_t groups, double eps);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& temb = {});
  loupe::nn::GroupNorm norm1{nullptr}, norm2{nullptr};
  loupe::nn::Conv2d conv1{nullptr}, conv2{nullptr}, conv_shortcut{nullptr};
  loupe::nn::Linear time_emb_proj{nullptr};
};
TORCH_MODULE(ResnetBlock2D);

// Strided 3x3 convolution. padding 1 (UNet) or 0 with an asymmetric (0, 1, 0, 1) pad (VAE).
struct Downsample2DImpl : torch::nn::Module {
  Downsample2DImpl(int64_t channels, int64_t padding);
  torch::Tensor forward(const torch::Tensor& x);
  loupe::nn::Conv2d conv{nullptr};
  int64_t padding;
};
TORCH_MODULE(Downsample2D);

// Nearest 2x (or to `size`, for odd latent sizes) then a 3x3 convolution.
struct Upsample2DImpl : torch::nn::Module {
  explicit Upsample2DImpl(int64_t channels);
  torch::Tensor forward(const torch::Tensor& x, c10::optional<std::vector<int64_t>> size = c10::nullopt);
  loupe::nn::Conv2d conv{nullptr};
};
TORCH_MODULE(Upsample2D);

struct BasicTransformerBlockImpl : torch::nn::Module {
  BasicTransformerBlockImpl(int64_t dim, int64_t heads, int64_t head_dim, int64_t context_dim);
  torch::Tensor forward(torch::Tensor x, const torch::Tensor& context);
  loupe::nn::LayerNorm norm1{nullptr}, norm2{nullptr}, norm3{nullptr};
  Attention attn1{nullptr}, attn2{nullptr};
  loupe::nn::Linear ff_in{nullptr}, ff_out{nullptr};  // ff.net.0.proj (GEGLU), ff.net.2
};
TORCH_MODULE(BasicTransformerBlock);

// Transformer2DModel (continuous input): group norm, proj_in (1x1 conv, or linear for SD 2.x),
// transformer blocks, proj_out, residual.
struct Transformer2DImpl : torch::nn::Module {
  Transformer2DImpl(int64_t channels, int64_t heads, int64_t head_dim, int64_t context_dim, int64_t layers,
                    int64_t groups, bool linear_projection);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& context);
  loupe::nn::GroupNorm norm{nullptr};
  loupe::nn::Conv2d proj_in_conv{nullptr}, proj_out_conv{nullptr};      // SD 1.x
  loupe::nn::Linear proj_in_linear{nullptr}, proj_out_linear{nullptr};  // SD 2.x
  torch::nn::ModuleList transformer_blocks;
  bool linear;
};
TORCH_MODULE(Transformer2D);

// Adds an empty placeholder so that ModuleList indices match (e.g. dropout at to_out.1).
void add_placeholder(const torch::nn::ModuleList& list);

}  // namespace loupe::sd
