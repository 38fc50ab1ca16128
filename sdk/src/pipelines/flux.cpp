#include "pipelines/flux.h"

#include <ATen/CPUGeneratorImpl.h>

#include "core/error.h"
#include "core/runtime.h"
#include "core/torch_compat.h"
#include "pipelines/diffusion.h"

namespace loupe::pipelines::flux {

namespace F = torch::nn::functional;

torch::Tensor pack_latents(const torch::Tensor& z) {
  if (z.dim() != 4 || z.size(2) % 2 || z.size(3) % 2)
    LOUPE_THROW(Internal, "FLUX packing needs latents [B, C, H, W] with even H and W; got " << z.sizes());
  const int64_t B = z.size(0), C = z.size(1), H = z.size(2), W = z.size(3);
  return z.reshape({B, C, H / 2, 2, W / 2, 2}).permute({0, 2, 4, 1, 3, 5}).reshape({B, (H / 2) * (W / 2), C * 4});
}

torch::Tensor unpack_latents(const torch::Tensor& x, int64_t h, int64_t w) {
  if (x.dim() != 3 || x.size(1) != (h / 2) * (w / 2) || x.size(2) % 4)
    LOUPE_THROW(Internal, "FLUX unpacking: packed latents " << x.sizes() << " do not fit " << h << "x" << w << " latents");
  const int64_t B = x.size(0), C = x.size(2) / 4;
  return x.reshape({B, h / 2, w / 2, C, 2, 2}).permute({0, 3, 1, 4, 2, 5}).reshape({B, C, h, w});
}

torch::Tensor latent_image_ids(int64_t h, int64_t w) {
  auto ids = torch::zeros({h / 2, w / 2, 3}, torch::kFloat32);
  ids.select(2, 1).add_(torch::arange(h / 2, torch::kFloat32).unsqueeze(1));
  ids.select(2, 2).add_(torch::arange(w / 2, torch::kFloat32).unsqueeze(0));
  return ids.reshape({(h / 2) * (w / 2), 3});
}

torch::Tensor text_ids(int64_t tokens) { return torch::zeros({tokens, 3}, torch::kFloat32); }

torch::Tensor pack_fill_mask(const torch::Tensor& mask, int64_t f) {
  const int64_t B = mask.size(0), h = mask.size(2) / f, w = mask.size(3) / f;
  if (mask.size(2) % f || mask.size(3) % f)
    LOUPE_THROW(Internal, "the Fill mask " << mask.sizes() << " is not a multiple of the VAE's " << f << " pixels");
  auto m = mask.select(1, 0).reshape({B, h, f, w, f}).permute({0, 2, 4, 1, 3}).reshape({B, f * f, h, w});
  return pack_latents(m);
}

namespace {

torch::Tensor randn_cpu(at::IntArrayRef shape, at::Generator& gen) {
  return torch::randn(shape, gen, torch::TensorOptions().dtype(torch::kFloat32));
}

void check_size(const Models& m, int64_t width, int64_t height) {
  const int64_t f = m.vae->cfg.scale_factor() * 2;
  if (width <= 0 || height <= 0 || width % f || height % f)
    LOUPE_THROW(InvalidArgument, "FLUX needs a width and height that are positive multiples of "
                                     << f << " (got " << width << "x" << height << ")");
}

struct Loop {
  Models& m;
  const Params& p;
  const Conditioning& c;
  at::Generator gen;
  std::unique_ptr<schedulers::FlowMatchEuler> sched;
  int64_t h, w;  // latent size
  torch::Tensor img_ids, txt_ids, guidance, context, pooled;

  Loop(Models& models, const Conditioning& cond, const Params& params, int64_t width, int64_t height)
      : m(models), p(params), c(cond), gen(at::make_generator<at::CPUGeneratorImpl>(params.seed)) {
    check_size(m, width, height);
    if (p.steps < 1 || p.steps > 1000) LOUPE_THROW(InvalidArgument, "steps must be in [1, 1000] (got " << p.steps << ")");
    if (!(p.strength >= 0.0 && p.strength <= 1.0))
      LOUPE_THROW(InvalidArgument, "strength must be in [0, 1] (got " << p.strength << ")");
    if (!c.context.defined() || !c.pooled.defined() || c.context.dim() != 3 || c.pooled.dim() != 2)
      LOUPE_THROW(Internal, "FLUX needs the T5 states [1, T, D] and the CLIP pooled output [1, P]");
    if (!m.transformer) LOUPE_THROW(Internal, "FLUX pipeline without a transformer");
    const int64_t f = m.vae->cfg.scale_factor();
    h = height / f;
    w = width / f;
    sched = std::make_unique<schedulers::FlowMatchEuler>(m.scheduler);
    sched->set_mu(schedulers::calculate_shift((h / 2) * (w / 2), m.scheduler));
    sched->set_timesteps(p.steps);
    img_ids = latent_image_ids(h, w).to(m.device);
    txt_ids = text_ids(c.context.size(1)).to(m.device);
    if (m.guidance_embeds) guidance = torch::full({1}, p.guidance, torch::kFloat32).to(m.device);
    context = c.context.to(m.device, m.dtype);
    pooled = c.pooled.to(m.device, m.dtype);
  }

  // The VAE posterior sample (diffusers' latent_dist.sample(generator)), shifted and scaled.
  torch::Tensor encode_sample(const torch::Tensor& image) {
    auto [mean, std] = m.vae->encode(image.to(m.device, m.vae_dtype));
    auto eps = randn_cpu(mean.sizes(), gen).to(m.device, mean.scalar_type());
    const auto& vc = m.vae->cfg;
    return ((mean + std * eps - vc.shift_factor) * vc.scaling_factor).to(torch::kFloat32);
  }

  torch::Tensor predict(const torch::Tensor& latents, size_t i, const torch::Tensor& extra = {}) {
    TransformerInputs in;
    in.hidden = (extra.defined() ? torch::cat({latents, extra}, 2) : latents).to(m.dtype);
    // FluxPipeline: timestep = t (float32) / 1000
    in.timestep = (torch::tensor({static_cast<float>(sched->timesteps()[i])}, torch::kFloat32) / 1000).to(m.device);
    in.guidance = guidance;
    in.pooled = pooled;
    in.context = context;
    in.txt_ids = txt_ids;
    in.img_ids = img_ids;
    return m.transformer(in).to(torch::kFloat32);
  }

  torch::Tensor decode(const torch::Tensor& packed) {
    return decode_vae(m.vae, m.device, m.vae_dtype, unpack_latents(packed.to(m.device, torch::kFloat32), h, w), p.tiled_vae);
  }

  size_t start_index() const { return schedulers::FlowMatchEuler::start_index(p.steps, p.strength); }

  void report(const StepFn& on_step, size_t i, size_t start, const torch::Tensor& latents) {
    const size_t n = sched->timesteps().size();
    if (on_step) on_step(static_cast<int>(i + 1 - start), static_cast<int>(n - start), latents, h, w);
  }
};

void check_image(const torch::Tensor& image) {
  if (image.dim() != 4 || image.size(0) != 1 || image.size(1) != 3)
    LOUPE_THROW(Internal, "FLUX pipelines take an image [1, 3, H, W]; got " << image.sizes());
}

}  // namespace

torch::Tensor txt2img(Models& m, const Conditioning& c, const Params& p, const StepFn& on_step) {
  torch::NoGradGuard ng;
  if (m.in_channels != 4 * m.vae->cfg.latent_channels) {
    // FLUX.1 Fill: FluxFillPipeline with an all-white mask (any image: it is masked out entirely)
    const auto gray = torch::zeros({1, 3, p.height, p.width});
    Params q = p;
    q.strength = 1.0;
    return inpaint(m, c, gray, torch::ones({1, 1, p.height, p.width}), q, on_step);
  }
  Loop L(m, c, p, p.width, p.height);
  auto latents = pack_latents(randn_cpu({1, m.vae->cfg.latent_channels, L.h, L.w}, L.gen)).to(m.device);
  const size_t n = L.sched->timesteps().size();
  for (size_t i = 0; i < n; ++i) {
    latents = L.sched->step(L.predict(latents, i), i, latents, nullptr);
    L.report(on_step, i, 0, latents);
  }
  return L.decode(latents);
}

torch::Tensor img2img(Models& m, const Conditioning& c, const torch::Tensor& image, const Params& p, const StepFn& on_step) {
  torch::NoGradGuard ng;
  check_image(image);
  if (m.in_channels != 4 * m.vae->cfg.latent_channels)
    return inpaint(m, c, image, torch::ones({1, 1, image.size(2), image.size(3)}), p, on_step);
  Loop L(m, c, p, image.size(3), image.size(2));
  const size_t start = L.start_index(), n = L.sched->timesteps().size();
  auto init = L.encode_sample(image);
  if (start >= n) return L.decode(pack_latents(init));  // strength 0: the image itself, through the VAE
  auto noise = randn_cpu(init.sizes(), L.gen).to(m.device);
  auto latents = pack_latents(L.sched->add_noise(init, noise, start));
  for (size_t i = start; i < n; ++i) {
    latents = L.sched->step(L.predict(latents, i), i, latents, nullptr);
    L.report(on_step, i, start, latents);
  }
  return L.decode(latents);
}

torch::Tensor inpaint(Models& m, const Conditioning& c, const torch::Tensor& image, const torch::Tensor& mask,
                      const Params& p, const StepFn& on_step) {
  torch::NoGradGuard ng;
  check_image(image);
  const int64_t H = image.size(2), W = image.size(3);
  if (mask.dim() != 4 || mask.size(2) != H || mask.size(3) != W)
    LOUPE_THROW(InvalidArgument, "the mask is " << mask.sizes() << " but the image is " << W << "x" << H);
  Loop L(m, c, p, W, H);
  const int64_t C = m.vae->cfg.latent_channels, f = m.vae->cfg.scale_factor();
  const bool fill = m.in_channels != 4 * C;
  if (fill && m.in_channels != 4 * C * 2 + 4 * f * f)
    LOUPE_THROW(Unsupported, "a FLUX transformer with " << m.in_channels << " input channels (64: FLUX.1; "
                                                        << 4 * C * 2 + 4 * f * f << ": FLUX.1 Fill)");
  const size_t start = L.start_index(), n = L.sched->timesteps().size();
  if (start >= n) LOUPE_THROW(InvalidArgument, "strength " << p.strength << " leaves no denoising step");
  const auto bin = (mask >= 0.5).to(torch::kFloat32);
  // prepare_latents: the image's latents (a posterior sample), the noise, scale_noise to the start
  auto image_latents = L.encode_sample(image);
  auto noise = randn_cpu(image_latents.sizes(), L.gen).to(m.device);
  auto latents = pack_latents(L.sched->add_noise(image_latents, noise, start));
  torch::Tensor extra, lmask, known, pnoise;
  if (fill) {
    // FluxFillPipeline: masked image = image * (1 - mask); its latents and the mask as channels
    auto masked_latents = L.encode_sample(image * (1 - bin));
    extra = torch::cat({pack_latents(masked_latents), pack_fill_mask(bin, f).to(m.device)}, 2);
  } else {
    // FluxInpaintPipeline on a 64-channel transformer: the latent-size mask (nearest), packed
    auto lm = F::interpolate(bin, F::InterpolateFuncOptions().size(std::vector<int64_t>{L.h, L.w}).mode(torch::kNearest));
    lmask = pack_latents(lm.repeat({1, C, 1, 1})).to(m.device);
    known = pack_latents(image_latents);
    pnoise = pack_latents(noise);
  }
  for (size_t i = start; i < n; ++i) {
    latents = L.sched->step(L.predict(latents, i, extra), i, latents, nullptr);
    if (!fill) {
      auto k = i + 1 < n ? L.sched->add_noise(known, pnoise, i + 1) : known;
      latents = (1 - lmask) * k + lmask * latents;
    }
    L.report(on_step, i, start, latents);
  }
  return L.decode(latents);
}

torch::Tensor latent_preview(Models& m, const torch::Tensor& packed, int64_t h, int64_t w) {
  torch::NoGradGuard ng;
  const auto& vc = m.vae->cfg;
  auto z = unpack_latents(packed.to(m.device, torch::kFloat32), h, w);
  const int64_t k = std::max<int64_t>(1, std::max(h, w) / 32);  // previews of at most 32 latents a side
  if (k > 1) z = F::avg_pool2d(z, F::AvgPool2dFuncOptions(k).ceil_mode(true));
  auto img = m.vae->decode((z / vc.scaling_factor + vc.shift_factor).to(m.vae_dtype));
  img = (img.to(torch::kFloat32) / 2 + 0.5).clamp(0, 1);
  return (img[0].permute({1, 2, 0}) * 255).round().to(torch::kCPU, torch::kUInt8).contiguous();
}

}  // namespace loupe::pipelines::flux
