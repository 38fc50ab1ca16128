#include "models/sd/vae.h"

#include "core/error.h"
#include "io/config.h"

namespace loupe::sd {

using torch::nn::Conv2dOptions;

VaeConfig VaeConfig::from_json(const nlohmann::json& j, const std::string& file, bool shifted_latents_ok) {
  VaeConfig c;
  c.in_channels = io::get_in(j, "in_channels", c.in_channels, file, 1, 64);
  c.out_channels = io::get_in(j, "out_channels", c.out_channels, file, 1, 64);
  c.latent_channels = io::get_in(j, "latent_channels", c.latent_channels, file, 1, 1024);
  c.block_out_channels = io::get_in(j, "block_out_channels", c.block_out_channels, file, 1, 65536);
  c.layers_per_block = io::get_in(j, "layers_per_block", c.layers_per_block, file, 1, 64);
  c.norm_num_groups = io::get_in(j, "norm_num_groups", c.norm_num_groups, file, 1, 1024);
  c.scaling_factor = io::get_in(j, "scaling_factor", c.scaling_factor, file, 1e-6, 1e6);
  c.use_quant_conv = io::get_or(j, "use_quant_conv", c.use_quant_conv, file);
  c.use_post_quant_conv = io::get_or(j, "use_post_quant_conv", c.use_post_quant_conv, file);
  c.mid_block_add_attention = io::get_or(j, "mid_block_add_attention", c.mid_block_add_attention, file);
  c.force_upcast = io::get_or(j, "force_upcast", c.force_upcast, file);
  c.sample_size = io::get_in(j, "sample_size", c.sample_size, file, 1, 65536);
  if (c.block_out_channels.empty()) LOUPE_THROW(BadModel, file << ": block_out_channels is empty");
  for (auto ch : c.block_out_channels)
    if (ch % c.norm_num_groups)
      LOUPE_THROW(BadModel, file << ": " << ch << " channels are not divisible by norm_num_groups " << c.norm_num_groups);
  c.has_shift_factor = j.contains("shift_factor") && !j["shift_factor"].is_null();
  c.shift_factor = c.has_shift_factor ? io::get_in(j, "shift_factor", c.shift_factor, file, -1e3, 1e3) : 0.0;
  if (c.has_shift_factor && !shifted_latents_ok)
    LOUPE_THROW(Unsupported, file << ": a VAE with shift_factor (SD3/FLUX latents) is not a Stable Diffusion 1.x/2.x VAE");
  return c;
}

namespace {

UNetBlock make_mid(const VaeConfig& c) {
  const int64_t ch = c.block_out_channels.back();
  auto mid = UNetBlock();
  mid->resnets = mid->register_module("resnets", torch::nn::ModuleList());
  mid->resnets->push_back(ResnetBlock2D(ch, ch, 0, c.norm_num_groups, 1e-6));
  mid->has_attn = c.mid_block_add_attention;
  if (mid->has_attn) {
    mid->attentions = mid->register_module("attentions", torch::nn::ModuleList());
    mid->attentions->push_back(Attention(ch, ch, 1, ch, true, c.norm_num_groups, 1e-6));
  }
  mid->resnets->push_back(ResnetBlock2D(ch, ch, 0, c.norm_num_groups, 1e-6));
  return mid;
}

}  // namespace

VaeCoderImpl::VaeCoderImpl(const VaeConfig& c, bool enc) : encoder(enc) {
  const auto& boc = c.block_out_channels;
  const size_t n = boc.size();
  const int64_t g = c.norm_num_groups;
  blocks = torch::nn::ModuleList();
  if (encoder) {
    conv_in = register_module("conv_in", loupe::nn::Conv2d(Conv2dOptions(c.in_channels, boc[0], 3).padding(1)));
    register_module("down_blocks", blocks.ptr());
    int64_t out = boc[0];
    for (size_t i = 0; i < n; ++i) {
      const int64_t in = out;
      out = boc[i];
      auto blk = UNetBlock();
      blk->resnets = blk->register_module("resnets", torch::nn::ModuleList());
      for (int64_t j = 0; j < c.layers_per_block; ++j) blk->resnets->push_back(ResnetBlock2D(j ? out : in, out, 0, g, 1e-6));
      if (i + 1 < n) {
        blk->samplers = blk->register_module("downsamplers", torch::nn::ModuleList());
        blk->samplers->push_back(Downsample2D(out, 0));
      }
      blocks->push_back(blk);
    }
    mid_block = register_module("mid_block", make_mid(c));
    conv_norm_out = register_module("conv_norm_out", loupe::nn::GroupNorm(torch::nn::GroupNormOptions(g, boc[n - 1]).eps(1e-6)));
    conv_out = register_module("conv_out", loupe::nn::Conv2d(Conv2dOptions(boc[n - 1], 2 * c.latent_channels, 3).padding(1)));
  } else {
    conv_in = register_module("conv_in", loupe::nn::Conv2d(Conv2dOptions(c.latent_channels, boc[n - 1], 3).padding(1)));
    mid_block = register_module("mid_block", make_mid(c));
    register_module("up_blocks", blocks.ptr());
    int64_t prev = boc[n - 1];
    for (size_t i = 0; i < n; ++i) {
      const int64_t out = boc[n - 1 - i];
      auto blk = UNetBlock();
      blk->resnets = blk->register_module("resnets", torch::nn::ModuleList());
      for (int64_t j = 0; j <= c.layers_per_block; ++j) blk->resnets->push_back(ResnetBlock2D(j ? out : prev, out, 0, g, 1e-6));
      if (i + 1 < n) {
        blk->samplers = blk->register_module("upsamplers", torch::nn::ModuleList());
        blk->samplers->push_back(Upsample2D(out));
      }
      prev = out;
      blocks->push_back(blk);
    }
    conv_norm_out = register_module("conv_norm_out", loupe::nn::GroupNorm(torch::nn::GroupNormOptions(g, boc[0]).eps(1e-6)));
    conv_out = register_module("conv_out", loupe::nn::Conv2d(Conv2dOptions(boc[0], c.out_channels, 3).padding(1)));
  }
}

torch::Tensor VaeCoderImpl::forward(torch::Tensor h) {
  h = conv_in(h);
  auto mid = [&] {
    h = mid_block->resnets[0]->as<ResnetBlock2DImpl>()->forward(h);
    if (mid_block->has_attn) h = mid_block->attentions[0]->as<AttentionImpl>()->forward_spatial(h);
    h = mid_block->resnets[1]->as<ResnetBlock2DImpl>()->forward(h);
  };
  if (!encoder) mid();
  for (const auto& m : *blocks) {
    auto* blk = m->as<UNetBlockImpl>();
    for (const auto& r : *blk->resnets) h = r->as<ResnetBlock2DImpl>()->forward(h);
    if (blk->samplers->size() > 0) {
      if (encoder) h = blk->samplers[0]->as<Downsample2DImpl>()->forward(h);
      else h = blk->samplers[0]->as<Upsample2DImpl>()->forward(h);
    }
  }
  if (encoder) mid();
  return conv_out(torch::silu(conv_norm_out(h)));
}

AutoencoderKLImpl::AutoencoderKLImpl(const VaeConfig& c) : cfg(c) {
  encoder = register_module("encoder", VaeCoder(c, true));
  decoder = register_module("decoder", VaeCoder(c, false));
  const int64_t L = c.latent_channels;
  if (c.use_quant_conv) quant_conv = register_module("quant_conv", loupe::nn::Conv2d(Conv2dOptions(2 * L, 2 * L, 1)));
  if (c.use_post_quant_conv) post_quant_conv = register_module("post_quant_conv", loupe::nn::Conv2d(Conv2dOptions(L, L, 1)));
}

std::pair<torch::Tensor, torch::Tensor> AutoencoderKLImpl::encode(const torch::Tensor& image) {
  auto moments = encoder(image);
  if (quant_conv) moments = quant_conv(moments);
  auto parts = moments.chunk(2, 1);
  auto logvar = parts[1].clamp(-30.0, 20.0);
  return {parts[0], torch::exp(0.5 * logvar)};
}

torch::Tensor AutoencoderKLImpl::decode(const torch::Tensor& z) {
  return decoder(post_quant_conv ? post_quant_conv(z) : z);
}

torch::Tensor AutoencoderKLImpl::decode_tiled(const torch::Tensor& z, int64_t tile, int64_t overlap) {
  return tiled_apply(z, tile, overlap, cfg.scale_factor(), cfg.out_channels, [this](const torch::Tensor& t) { return decode(t); });
}

torch::ScalarType vae_dtype(torch::ScalarType dtype, const torch::Device& device, const VaeConfig& cfg) {
  if (device.is_cpu()) return torch::kFloat32;
  return dtype == torch::kFloat16 && cfg.force_upcast ? torch::kFloat32 : dtype;
}

torch::Tensor tiled_apply(const torch::Tensor& z, int64_t tile, int64_t overlap, int64_t s, int64_t out_channels,
                          const std::function<torch::Tensor(const torch::Tensor&)>& fn) {
  const int64_t H = z.size(2), W = z.size(3);
  if (H <= tile && W <= tile) return fn(z);
  if (tile < 1 || overlap < 0 || overlap * 2 >= tile)
    LOUPE_THROW(InvalidArgument, "VAE tiling: tile " << tile << " with overlap " << overlap
                                                     << " (the overlap must be less than half the tile)");
  const int64_t stride = tile - overlap;
  auto starts = [&](int64_t n) {
    std::vector<int64_t> v;
    for (int64_t p = 0;; p += stride) {
      if (p + tile >= n) { v.push_back(std::max<int64_t>(0, n - tile)); break; }
      v.push_back(p);
    }
    return v;
  };
  auto out = torch::zeros({z.size(0), out_channels, H * s, W * s}, z.options());
  auto weight = torch::zeros({1, 1, H * s, W * s}, z.options());
  const int64_t ramp = std::max<int64_t>(1, overlap * s);
  for (int64_t y : starts(H)) {
    for (int64_t x : starts(W)) {
      const int64_t th = std::min(tile, H - y), tw = std::min(tile, W - x);
      auto part = fn(z.slice(2, y, y + th).slice(3, x, x + tw));
      // linear ramps on the sides that overlap a neighbour, flat elsewhere
      auto ramp_1d = [&](int64_t len, bool lo, bool hi) {
        std::vector<float> w(len, 1.0f);
        for (int64_t i = 0; i < ramp && i < len; ++i) {
          const float v = float((i + 0.5) / ramp);
          if (lo) w[i] *= v;
          if (hi) w[len - 1 - i] *= v;
        }
        return torch::tensor(w).to(z.options());
      };
      auto w = ramp_1d(th * s, y > 0, y + th < H).view({1, 1, -1, 1}) * ramp_1d(tw * s, x > 0, x + tw < W).view({1, 1, 1, -1});
      out.slice(2, y * s, (y + th) * s).slice(3, x * s, (x + tw) * s).add_(part * w);
      weight.slice(2, y * s, (y + th) * s).slice(3, x * s, (x + tw) * s).add_(w);
    }
  }
  return out / weight;
}

}  // namespace loupe::sd
