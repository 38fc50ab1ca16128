// UNet2DConditionModel (diffusers) for Stable Diffusion 1.x / 2.x, SDXL (attention-free first
// level, transformer_layers_per_block per level, the "text_time" added conditioning) and the
// 9-channel inpainting UNet. Module names are diffusers' parameter names; sizes come from unet/config.json.
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "nn/conv.h"
#include "nn/linear.h"

#include "models/sd/blocks.h"
#include "nn/norm.h"

namespace loupe::sd {

struct UNetConfig {
  int64_t in_channels = 4, out_channels = 4;
  std::vector<int64_t> block_out_channels{320, 640, 1280, 1280};
  std::vector<int64_t> layers_per_block;           // per down block
  std::vector<int64_t> heads;                      // per down block
  std::vector<int64_t> cross_attention_dim;        // per down block
  std::vector<int64_t> transformer_layers;         // per down block
  std::vector<std::string> down_block_types, up_block_types;
  std::string mid_block_type = "UNetMidBlock2DCrossAttn";
  int64_t norm_num_groups = 32;
  double norm_eps = 1e-5;
  bool use_linear_projection = false;
  bool flip_sin_to_cos = true;
  double freq_shift = 0;
  int64_t sample_size = 64;
  // addition_embed_type "text_time" (SDXL): the pooled text embedding and the time ids (original
  // size, crop top-left, target size; 6 numbers, or 5 with the refiner's aesthetic score) each
  // through a sinusoidal embedding of addition_time_embed_dim, then add_embedding.
  bool text_time = false;
  int64_t addition_time_embed_dim = 256;
  int64_t projection_class_embeddings_input_dim = 0;
  // Reads config.json with diffusers' defaults; Unsupported for options this UNet does not have
  // (class embeddings, other added conditionings...), naming the key.
  static UNetConfig from_json(const nlohmann::json& j, const std::string& file);
};

// Sinusoidal timestep embedding as diffusers' get_timestep_embedding.
torch::Tensor timestep_embedding(const torch::Tensor& t, int64_t dim, bool flip_sin_to_cos, double freq_shift);

struct UNetBlockImpl : torch::nn::Module {
  torch::nn::ModuleList resnets, attentions, samplers;  // samplers: downsamplers / upsamplers
  bool has_attn = false;
};
TORCH_MODULE(UNetBlock);

struct UNet2DConditionModelImpl : torch::nn::Module {
  explicit UNet2DConditionModelImpl(const UNetConfig& c);
  // sample [B, in, h, w], timestep [B] or [1] (float), context [B, S, D] -> [B, out, h, w].
  // A "text_time" UNet also needs text_embeds [B, P] and time_ids [B, n].
  torch::Tensor forward(const torch::Tensor& sample, const torch::Tensor& timestep, const torch::Tensor& context,
                        const torch::Tensor& text_embeds = {}, const torch::Tensor& time_ids = {});
  UNetConfig cfg;
  loupe::nn::Conv2d conv_in{nullptr}, conv_out{nullptr};
  loupe::nn::Linear time_linear_1{nullptr}, time_linear_2{nullptr};
  loupe::nn::Linear add_linear_1{nullptr}, add_linear_2{nullptr};  // add_embedding (text_time)
  torch::nn::ModuleList down_blocks, up_blocks;
  UNetBlock mid_block{nullptr};
  loupe::nn::GroupNorm conv_norm_out{nullptr};
};
TORCH_MODULE(UNet2DConditionModel);

}  // namespace loupe::sd
