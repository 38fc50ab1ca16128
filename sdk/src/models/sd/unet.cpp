#include "models/sd/unet.h"

#include <cmath>

#include "core/error.h"
#include "io/config.h"

namespace loupe::sd {

using torch::nn::Conv2dOptions;

namespace {

// An int broadcast to n blocks, or a list of exactly n.
// Each number must lie in [lo, hi] (io::get_in).
std::vector<int64_t> per_block(const nlohmann::json& j, const std::string& key, int64_t def, size_t n,
                               const std::string& file, double lo, double hi) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::vector<int64_t>(n, def);
  if (it->is_number()) return std::vector<int64_t>(n, io::get_in<int64_t>(j, key, def, file, lo, hi));
  if (it->is_array()) {
    auto v = io::get_in(j, key, std::vector<int64_t>{}, file, lo, hi);
    if (v.size() != n)
      LOUPE_THROW(BadModel, file << ": \"" << key << "\" has " << v.size() << " entries for " << n << " blocks");
    return v;
  }
  LOUPE_THROW(BadModel, file << ": \"" << key << "\" must be an integer or a list of integers");
}

}  // namespace

UNetConfig UNetConfig::from_json(const nlohmann::json& j, const std::string& file) {
  UNetConfig c;
  c.in_channels = io::get_in(j, "in_channels", c.in_channels, file, 1, 1024);
  c.out_channels = io::get_in(j, "out_channels", c.out_channels, file, 1, 1024);
  c.block_out_channels = io::get_in(j, "block_out_channels", c.block_out_channels, file, 1, 65536);
  const size_t n = c.block_out_channels.size();
  c.down_block_types = io::get_or(j, "down_block_types",
      std::vector<std::string>{"CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"}, file);
  c.up_block_types = io::get_or(j, "up_block_types",
      std::vector<std::string>{"UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"}, file);
  if (n == 0 || c.down_block_types.size() != n || c.up_block_types.size() != n)
    LOUPE_THROW(BadModel, file << ": block_out_channels (" << n << "), down_block_types (" << c.down_block_types.size()
                               << ") and up_block_types (" << c.up_block_types.size() << ") must have the same length");
  for (const auto& t : c.down_block_types)
    if (t != "CrossAttnDownBlock2D" && t != "DownBlock2D")
      LOUPE_THROW(Unsupported, file << ": down block type '" << t << "' (supported: CrossAttnDownBlock2D, DownBlock2D)");
  for (const auto& t : c.up_block_types)
    if (t != "CrossAttnUpBlock2D" && t != "UpBlock2D")
      LOUPE_THROW(Unsupported, file << ": up block type '" << t << "' (supported: CrossAttnUpBlock2D, UpBlock2D)");
  c.mid_block_type = io::get_or(j, "mid_block_type", c.mid_block_type, file);
  if (c.mid_block_type != "UNetMidBlock2DCrossAttn")
    LOUPE_THROW(Unsupported, file << ": mid_block_type '" << c.mid_block_type << "' (supported: UNetMidBlock2DCrossAttn)");
  c.layers_per_block = per_block(j, "layers_per_block", 2, n, file, 1, 64);
  // diffusers' historical naming: attention_head_dim holds the number of heads when
  // num_attention_heads is not given.
  const bool has_heads = j.contains("num_attention_heads") && !j["num_attention_heads"].is_null();
  c.heads = per_block(j, has_heads ? "num_attention_heads" : "attention_head_dim", 8, n, file, 1, 1024);
  c.cross_attention_dim = per_block(j, "cross_attention_dim", 1280, n, file, 1, 65536);
  c.transformer_layers = per_block(j, "transformer_layers_per_block", 1, n, file, 1, 64);
  c.norm_num_groups = io::get_in(j, "norm_num_groups", c.norm_num_groups, file, 1, 1024);
  c.norm_eps = io::get_in(j, "norm_eps", c.norm_eps, file, 0, 1);
  c.use_linear_projection = io::get_or(j, "use_linear_projection", c.use_linear_projection, file);
  c.flip_sin_to_cos = io::get_or(j, "flip_sin_to_cos", c.flip_sin_to_cos, file);
  c.freq_shift = io::get_in(j, "freq_shift", c.freq_shift, file, -1e6, 1e6);
  c.sample_size = io::get_in(j, "sample_size", c.sample_size, file, 1, 65536);
  const auto add = io::get_or(j, "addition_embed_type", std::string(), file);
  if (!add.empty() && add != "text_time")
    LOUPE_THROW(Unsupported, file << ": addition_embed_type '" << add << "' (supported: text_time, as SDXL)");
  c.text_time = add == "text_time";
  if (c.text_time) {
    c.addition_time_embed_dim = io::get_in(j, "addition_time_embed_dim", c.addition_time_embed_dim, file, 1, 65536);
    c.projection_class_embeddings_input_dim = io::get_in(j, "projection_class_embeddings_input_dim", int64_t{0}, file, 0, 1 << 20);
    if (c.projection_class_embeddings_input_dim <= 0 || c.addition_time_embed_dim <= 0)
      LOUPE_THROW(BadModel, file << ": addition_embed_type text_time needs addition_time_embed_dim and "
                                    "projection_class_embeddings_input_dim");
  }
  for (const char* k : {"class_embed_type", "encoder_hid_dim_type", "time_cond_proj_dim"})
    if (j.contains(k) && !j[k].is_null())
      LOUPE_THROW(Unsupported, file << ": \"" << k << "\" = " << j[k].dump() << " is not supported by this UNet");
  if (j.contains("reverse_transformer_layers_per_block") && !j["reverse_transformer_layers_per_block"].is_null())
    LOUPE_THROW(Unsupported, file << ": \"reverse_transformer_layers_per_block\" is not supported");
  for (const char* k : {"only_cross_attention", "dual_cross_attention", "center_input_sample"})
    if (j.contains(k) && j[k].is_boolean() && j[k].get<bool>())
      LOUPE_THROW(Unsupported, file << ": \"" << k << "\" = true is not supported");
  const auto shift = io::get_or(j, "resnet_time_scale_shift", std::string("default"), file);
  if (shift != "default") LOUPE_THROW(Unsupported, file << ": resnet_time_scale_shift '" << shift << "'");
  for (size_t i = 0; i < n; ++i) {
    if (c.heads[i] <= 0 || c.block_out_channels[i] % c.heads[i])
      LOUPE_THROW(BadModel, file << ": block " << i << " has " << c.block_out_channels[i] << " channels, not divisible by "
                                 << c.heads[i] << " attention heads");
    if (c.block_out_channels[i] % c.norm_num_groups)
      LOUPE_THROW(BadModel, file << ": block " << i << " has " << c.block_out_channels[i]
                                 << " channels, not divisible by norm_num_groups " << c.norm_num_groups);
  }
  return c;
}

torch::Tensor timestep_embedding(const torch::Tensor& t, int64_t dim, bool flip_sin_to_cos, double freq_shift) {
  const int64_t half = dim / 2;
  auto exponent = torch::arange(half, torch::dtype(torch::kFloat32).device(t.device())) * (-std::log(10000.0));
  exponent = exponent / (half - freq_shift);
  auto emb = t.to(torch::kFloat32).unsqueeze(1) * torch::exp(exponent).unsqueeze(0);
  emb = torch::cat({torch::sin(emb), torch::cos(emb)}, -1);
  if (flip_sin_to_cos) emb = torch::cat({emb.slice(1, half), emb.slice(1, 0, half)}, -1);
  if (dim % 2 == 1) emb = torch::nn::functional::pad(emb, torch::nn::functional::PadFuncOptions({0, 1}));
  return emb;
}

UNet2DConditionModelImpl::UNet2DConditionModelImpl(const UNetConfig& c) : cfg(c) {
  const auto& boc = c.block_out_channels;
  const size_t n = boc.size();
  const int64_t temb = boc[0] * 4, groups = c.norm_num_groups;
  const double eps = c.norm_eps;
  conv_in = register_module("conv_in", loupe::nn::Conv2d(Conv2dOptions(c.in_channels, boc[0], 3).padding(1)));
  auto te = register_module("time_embedding", std::make_shared<torch::nn::Module>());
  time_linear_1 = te->register_module("linear_1", loupe::nn::Linear(boc[0], temb));
  time_linear_2 = te->register_module("linear_2", loupe::nn::Linear(temb, temb));
  if (c.text_time) {
    auto ae = register_module("add_embedding", std::make_shared<torch::nn::Module>());
    add_linear_1 = ae->register_module("linear_1", loupe::nn::Linear(c.projection_class_embeddings_input_dim, temb));
    add_linear_2 = ae->register_module("linear_2", loupe::nn::Linear(temb, temb));
  }

  auto attn = [&](int64_t ch, size_t i) {
    return Transformer2D(ch, c.heads[i], ch / c.heads[i], c.cross_attention_dim[i], c.transformer_layers[i], groups,
                         c.use_linear_projection);
  };
  down_blocks = register_module("down_blocks", torch::nn::ModuleList());
  int64_t out_ch = boc[0];
  for (size_t i = 0; i < n; ++i) {
    const int64_t in_ch = out_ch;
    out_ch = boc[i];
    auto blk = UNetBlock();
    blk->has_attn = c.down_block_types[i] == "CrossAttnDownBlock2D";
    blk->resnets = blk->register_module("resnets", torch::nn::ModuleList());
    if (blk->has_attn) blk->attentions = blk->register_module("attentions", torch::nn::ModuleList());
    for (int64_t j = 0; j < c.layers_per_block[i]; ++j) {
      blk->resnets->push_back(ResnetBlock2D(j == 0 ? in_ch : out_ch, out_ch, temb, groups, eps));
      if (blk->has_attn) blk->attentions->push_back(attn(out_ch, i));
    }
    if (i + 1 < n) {
      blk->samplers = blk->register_module("downsamplers", torch::nn::ModuleList());
      blk->samplers->push_back(Downsample2D(out_ch, 1));
    }
    down_blocks->push_back(blk);
  }

  mid_block = register_module("mid_block", UNetBlock());
  mid_block->has_attn = true;
  mid_block->resnets = mid_block->register_module("resnets", torch::nn::ModuleList());
  mid_block->attentions = mid_block->register_module("attentions", torch::nn::ModuleList());
  mid_block->resnets->push_back(ResnetBlock2D(boc[n - 1], boc[n - 1], temb, groups, eps));
  mid_block->attentions->push_back(attn(boc[n - 1], n - 1));
  mid_block->resnets->push_back(ResnetBlock2D(boc[n - 1], boc[n - 1], temb, groups, eps));

  up_blocks = register_module("up_blocks", torch::nn::ModuleList());
  int64_t prev_out = boc[n - 1];
  for (size_t i = 0; i < n; ++i) {
    const size_t r = n - 1 - i;  // the matching down block
    const int64_t out = boc[r], in = boc[r == 0 ? 0 : r - 1];
    auto blk = UNetBlock();
    blk->has_attn = c.up_block_types[i] == "CrossAttnUpBlock2D";
    blk->resnets = blk->register_module("resnets", torch::nn::ModuleList());
    if (blk->has_attn) blk->attentions = blk->register_module("attentions", torch::nn::ModuleList());
    const int64_t layers = c.layers_per_block[r] + 1;
    for (int64_t j = 0; j < layers; ++j) {
      const int64_t skip = j == layers - 1 ? in : out;
      const int64_t res_in = j == 0 ? prev_out : out;
      blk->resnets->push_back(ResnetBlock2D(res_in + skip, out, temb, groups, eps));
      if (blk->has_attn) blk->attentions->push_back(attn(out, r));
    }
    if (i + 1 < n) {
      blk->samplers = blk->register_module("upsamplers", torch::nn::ModuleList());
      blk->samplers->push_back(Upsample2D(out));
    }
    prev_out = out;
    up_blocks->push_back(blk);
  }
  conv_norm_out = register_module("conv_norm_out",
                                  loupe::nn::GroupNorm(torch::nn::GroupNormOptions(groups, boc[0]).eps(eps)));
  conv_out = register_module("conv_out", loupe::nn::Conv2d(Conv2dOptions(boc[0], c.out_channels, 3).padding(1)));
}

torch::Tensor UNet2DConditionModelImpl::forward(const torch::Tensor& sample, const torch::Tensor& timestep,
                                                const torch::Tensor& context, const torch::Tensor& text_embeds,
                                                const torch::Tensor& time_ids) {
  if (sample.dim() != 4 || sample.size(1) != cfg.in_channels)
    LOUPE_THROW(InvalidArgument, "UNet: the input has shape " << sample.sizes() << ", expected [B, " << cfg.in_channels
                                                              << ", h, w]");
  const int64_t B = sample.size(0);
  auto t = timestep.dim() == 0 ? timestep.reshape({1}) : timestep;
  t = t.to(sample.device()).expand({B});
  auto emb = timestep_embedding(t, cfg.block_out_channels[0], cfg.flip_sin_to_cos, cfg.freq_shift).to(sample.scalar_type());
  emb = time_linear_2(torch::silu(time_linear_1(emb)));
  if (cfg.text_time) {
    if (!text_embeds.defined() || !time_ids.defined())
      LOUPE_THROW(InvalidArgument, "UNet: this UNet (addition_embed_type text_time) needs text_embeds and time_ids");
    if (text_embeds.dim() != 2 || time_ids.dim() != 2 || text_embeds.size(0) != B || time_ids.size(0) != B ||
        text_embeds.size(1) + time_ids.size(1) * cfg.addition_time_embed_dim != cfg.projection_class_embeddings_input_dim)
      LOUPE_THROW(InvalidArgument, "UNet: text_embeds " << text_embeds.sizes() << " and time_ids " << time_ids.sizes()
                                   << " do not make the " << cfg.projection_class_embeddings_input_dim
                                   << " added-conditioning inputs this UNet takes for a batch of " << B);
    // diffusers: add_time_proj(time_ids.flatten()).reshape(B, -1), after the pooled text embedding
    auto tid = timestep_embedding(time_ids.to(sample.device()).flatten(), cfg.addition_time_embed_dim, cfg.flip_sin_to_cos,
                                  cfg.freq_shift)
                   .reshape({B, -1});
    auto add = torch::cat({text_embeds.to(sample.device(), torch::kFloat32), tid}, -1).to(emb.scalar_type());
    emb = emb + add_linear_2(torch::silu(add_linear_1(add)));
  }

  auto h = conv_in(sample);
  std::vector<torch::Tensor> skips{h};
  for (const auto& m : *down_blocks) {
    auto* blk = m->as<UNetBlockImpl>();
    for (size_t j = 0; j < blk->resnets->size(); ++j) {
      h = blk->resnets[j]->as<ResnetBlock2DImpl>()->forward(h, emb);
      if (blk->has_attn) h = blk->attentions[j]->as<Transformer2DImpl>()->forward(h, context);
      skips.push_back(h);
    }
    if (blk->samplers->size() > 0) {
      h = blk->samplers[0]->as<Downsample2DImpl>()->forward(h);
      skips.push_back(h);
    }
  }
  h = mid_block->resnets[0]->as<ResnetBlock2DImpl>()->forward(h, emb);
  h = mid_block->attentions[0]->as<Transformer2DImpl>()->forward(h, context);
  h = mid_block->resnets[1]->as<ResnetBlock2DImpl>()->forward(h, emb);
  for (const auto& m : *up_blocks) {
    auto* blk = m->as<UNetBlockImpl>();
    for (size_t j = 0; j < blk->resnets->size(); ++j) {
      h = torch::cat({h, skips.back()}, 1);
      skips.pop_back();
      h = blk->resnets[j]->as<ResnetBlock2DImpl>()->forward(h, emb);
      if (blk->has_attn) h = blk->attentions[j]->as<Transformer2DImpl>()->forward(h, context);
    }
    if (blk->samplers->size() > 0) {
      // upsample to the size of the next skip connection (odd latent sizes)
      const auto& next = skips.back();
      h = blk->samplers[0]->as<Upsample2DImpl>()->forward(h, std::vector<int64_t>{next.size(2), next.size(3)});
    }
  }
  return conv_out(torch::silu(conv_norm_out(h)));
}

}  // namespace loupe::sd
