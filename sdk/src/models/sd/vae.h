// AutoencoderKL (diffusers): the Stable Diffusion VAE. Module names are diffusers' parameter names.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "models/sd/blocks.h"
#include "models/sd/unet.h"
#include "nn/norm.h"

namespace loupe::sd {

struct VaeConfig {
  int64_t in_channels = 3, out_channels = 3, latent_channels = 4;
  std::vector<int64_t> block_out_channels{64};
  int64_t layers_per_block = 1;
  int64_t norm_num_groups = 32;
  double scaling_factor = 0.18215;
  // FLUX / SD3 latents: scaled = (z - shift_factor) * scaling_factor (0 and absent for SD 1.x/2.x/XL)
  double shift_factor = 0.0;
  bool has_shift_factor = false;
  bool use_quant_conv = true, use_post_quant_conv = true, mid_block_add_attention = true;
  bool force_upcast = true;
  int64_t sample_size = 512;
  // A config with shift_factor (FLUX/SD3 latents) is refused unless `shifted_latents_ok` (the FLUX family).
  static VaeConfig from_json(const nlohmann::json& j, const std::string& file, bool shifted_latents_ok = false);
  // pixels per latent in each direction (8 for Stable Diffusion)
  int64_t scale_factor() const { return int64_t(1) << (block_out_channels.size() - 1); }
};

struct VaeCoderImpl : torch::nn::Module {
  VaeCoderImpl(const VaeConfig& c, bool encoder);
  torch::Tensor forward(torch::Tensor x);
  bool encoder;
  loupe::nn::Conv2d conv_in{nullptr}, conv_out{nullptr};
  torch::nn::ModuleList blocks;  // down_blocks / up_blocks (UNetBlock: resnets + samplers)
  UNetBlock mid_block{nullptr};
  loupe::nn::GroupNorm conv_norm_out{nullptr};
};
TORCH_MODULE(VaeCoder);

// Applies `fn` (latents -> pixels, `scale` pixels per latent) to overlapping tiles of `tile` latents
// with `overlap` latents shared by neighbours, blending the overlaps with linear ramps.
torch::Tensor tiled_apply(const torch::Tensor& z, int64_t tile, int64_t overlap, int64_t scale, int64_t out_channels,
                          const std::function<torch::Tensor(const torch::Tensor&)>& fn);

struct AutoencoderKLImpl : torch::nn::Module {
  explicit AutoencoderKLImpl(const VaeConfig& c);
  // image [B, 3, H, W] in [-1, 1] -> (mean, std) of the latent distribution (unscaled)
  std::pair<torch::Tensor, torch::Tensor> encode(const torch::Tensor& image);
  // unscaled latents -> image in [-1, 1] (not clamped)
  torch::Tensor decode(const torch::Tensor& z);
  // Decodes overlapping latent tiles of `tile` latents (overlap `overlap`) and blends them linearly:
  // large images without running out of memory.
  torch::Tensor decode_tiled(const torch::Tensor& z, int64_t tile = 64, int64_t overlap = 16);
  VaeConfig cfg;
  VaeCoder encoder{nullptr}, decoder{nullptr};
  loupe::nn::Conv2d quant_conv{nullptr}, post_quant_conv{nullptr};
};
TORCH_MODULE(AutoencoderKL);

// The dtype a VAE runs in, for a model of `dtype` on `device`: fp32 where fp16 would overflow
// (force_upcast, as diffusers upcasts it), and fp32 on the CPU always: there its fp32 3 x 3
// convolutions take oneDNN's Winograd kernels (nn/conv.h), faster than bf16's direct ones (SD 1.5
// decode at 512 px here: 12.7 s against 15.9 s), and the image is fp32's.
torch::ScalarType vae_dtype(torch::ScalarType dtype, const torch::Device& device, const VaeConfig& cfg);

}  // namespace loupe::sd
