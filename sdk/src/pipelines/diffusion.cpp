#include "pipelines/diffusion.h"

#include <algorithm>
#include <cmath>

#include <ATen/CPUGeneratorImpl.h>

#include "core/error.h"
#include "core/runtime.h"
#include "core/torch_compat.h"

namespace loupe::pipelines {

namespace {

void check_size(const DiffusionModels& m, int width, int height) {
  const int64_t f = m.vae->cfg.scale_factor();
  if (width <= 0 || height <= 0 || width % 8 || height % 8 || width % f || height % f)
    LOUPE_THROW(InvalidArgument, "width and height must be positive multiples of 8 (got " << width << "x" << height << ")");
}

// A 9-channel UNet takes the mask and the masked image's latents besides the latents; txt2img and
// img2img run on it as an inpaint with a full mask.
bool is_inpainting_unet(const DiffusionModels& m) { return m.unet->cfg.in_channels == 9; }

torch::Tensor full_mask(const torch::Tensor& image) {
  return torch::ones({1, 1, image.size(2), image.size(3)}, image.options().dtype(torch::kFloat32));
}

torch::Tensor randn_cpu(at::IntArrayRef shape, at::Generator& gen) {
  return torch::randn(shape, gen, torch::TensorOptions().dtype(torch::kFloat32));
}

torch::Tensor decode_latents(DiffusionModels& m, const torch::Tensor& latents, bool tiled) {
  return decode_vae(m.vae, m.device, m.vae_dtype, latents, tiled);
}

struct Loop {
  DiffusionModels& m;
  const DiffusionParams& p;
  at::Generator gen;
  std::unique_ptr<schedulers::Scheduler> sched;
  torch::Tensor context;  // [uncond; cond] or cond
  torch::Tensor text_embeds, time_ids;  // SDXL's added conditioning, batched as context
  bool cfg;

  Loop(DiffusionModels& models, const torch::Tensor& cond, const torch::Tensor& uncond, const DiffusionParams& params,
       const AddedConditioning& added)
      : m(models), p(params), gen(at::make_generator<at::CPUGeneratorImpl>(params.seed)) {
    if (p.steps < 1 || p.steps > 1000) LOUPE_THROW(InvalidArgument, "steps must be in [1, 1000] (got " << p.steps << ")");
    if (!(p.strength >= 0.0 && p.strength <= 1.0))
      LOUPE_THROW(InvalidArgument, "strength must be in [0, 1] (got " << p.strength << ")");
    sched = schedulers::make(p.sampler, m.scheduler);
    sched->set_timesteps(p.steps);
    cfg = p.guidance_scale > 1.0;
    if (cfg && !uncond.defined()) LOUPE_THROW(Internal, "guidance needs the negative prompt's embeddings");
    if (cfg && uncond.sizes() != cond.sizes())
      LOUPE_THROW(Internal, "prompt embeddings " << cond.sizes() << " and negative " << uncond.sizes() << " differ");
    context = (cfg ? torch::cat({uncond, cond}, 0) : cond).to(m.device, m.dtype);
    if (m.unet->cfg.text_time) {
      if (added.empty() || !added.time_ids.defined() || (cfg && !added.negative_pooled.defined()))
        LOUPE_THROW(Internal, "an SDXL (text_time) UNet needs the pooled embeddings and the time ids");
      const auto neg_ids = added.negative_time_ids.defined() ? added.negative_time_ids : added.time_ids;
      text_embeds = (cfg ? torch::cat({added.negative_pooled, added.pooled}, 0) : added.pooled).to(m.device, torch::kFloat32);
      time_ids = (cfg ? torch::cat({neg_ids, added.time_ids}, 0) : added.time_ids).to(m.device, torch::kFloat32);
    } else if (!added.empty()) {
      LOUPE_THROW(Internal, "added conditioning given to a UNet without addition_embed_type text_time");
    }
  }

  // The VAE posterior sample (diffusers' latent_dist.sample(generator)), scaled.
  torch::Tensor encode_sample(const torch::Tensor& image) {
    auto [mean, std] = m.vae->encode(image.to(m.device, m.vae_dtype));
    auto eps = randn_cpu(mean.sizes(), gen).to(m.device, mean.scalar_type());
    return ((mean + std * eps) * m.vae->cfg.scaling_factor).to(torch::kFloat32);
  }

  torch::Tensor predict(const torch::Tensor& latents, size_t i, const torch::Tensor& extra = {}) {
    auto in = cfg ? torch::cat({latents, latents}, 0) : latents;
    in = sched->scale_model_input(in, i);
    if (extra.defined()) in = torch::cat({in, extra}, 1);
    const double t = sched->timesteps()[i];
    auto out = m.unet->forward(in.to(m.dtype), torch::tensor({t}, torch::kFloat32).to(m.device), context, text_embeds, time_ids)
                   .to(torch::kFloat32);
    if (!cfg) return out;
    auto parts = out.chunk(2, 0);
    return parts[0] + p.guidance_scale * (parts[1] - parts[0]);
  }

  torch::Tensor decode(const torch::Tensor& latents) { return decode_latents(m, latents, p.tiled_vae); }

  // diffusers' discrete_timestep_cutoff: int(round(T - fraction * T)) (Python rounds half to even)
  int64_t cutoff(double fraction) const {
    const double T = m.scheduler.num_train_timesteps;
    return static_cast<int64_t>(std::nearbyint(T - fraction * T));
  }

  // txt2img with denoising_end: the number of steps whose timestep is at or above the cut-off.
  size_t end_index() const {
    const auto& ts = sched->timesteps();
    if (!(p.denoising_end > 0.0 && p.denoising_end < 1.0)) return ts.size();
    const int64_t c = cutoff(p.denoising_end);
    return static_cast<size_t>(std::count_if(ts.begin(), ts.end(), [&](double t) { return t >= c; }));
  }

  // img2img with denoising_start: the first step whose timestep is below the cut-off (the
  // schedulers here are first order: no 2nd-order adjustment).
  size_t start_index_from(double denoising_start) const {
    const auto& ts = sched->timesteps();
    const int64_t c = cutoff(denoising_start);
    return ts.size() - static_cast<size_t>(std::count_if(ts.begin(), ts.end(), [&](double t) { return t < c; }));
  }

  // img2img / inpainting start: the first step index for a strength (diffusers' get_timesteps).
  size_t start_index() const {
    const int init = std::min(static_cast<int>(p.steps * p.strength), p.steps);
    return static_cast<size_t>(std::max(p.steps - init, 0));
  }
};

}  // namespace

torch::Tensor time_ids(int original_h, int original_w, int crop_top, int crop_left, int target_h, int target_w) {
  return torch::tensor({double(original_h), double(original_w), double(crop_top), double(crop_left), double(target_h),
                        double(target_w)},
                       torch::kFloat32)
      .unsqueeze(0);
}

torch::Tensor aesthetic_time_ids(int original_h, int original_w, int crop_top, int crop_left, double aesthetic_score) {
  return torch::tensor({double(original_h), double(original_w), double(crop_top), double(crop_left), aesthetic_score},
                       torch::kFloat32)
      .unsqueeze(0);
}

torch::Tensor txt2img_latents(DiffusionModels& m, const torch::Tensor& cond, const torch::Tensor& uncond,
                              const DiffusionParams& p, const StepFn& on_step, const AddedConditioning& added) {
  check_size(m, p.width, p.height);
  torch::NoGradGuard ng;
  if (is_inpainting_unet(m))
    LOUPE_THROW(Unsupported, "a hand-over (denoising_end) from an inpainting UNet is not supported; use a base model");
  Loop L(m, cond, uncond, p, added);
  const int64_t f = m.vae->cfg.scale_factor();
  auto latents = randn_cpu({1, m.unet->cfg.out_channels, p.height / f, p.width / f}, L.gen).to(m.device);
  latents = latents * L.sched->init_noise_sigma();
  const size_t n = L.end_index();
  for (size_t i = 0; i < n; ++i) {
    latents = L.sched->step(L.predict(latents, i), i, latents, &L.gen);
    if (on_step) on_step(static_cast<int>(i + 1), static_cast<int>(n), latents);
  }
  return latents;
}

torch::Tensor txt2img(DiffusionModels& m, const torch::Tensor& cond, const torch::Tensor& uncond, const DiffusionParams& p,
                      const StepFn& on_step, const AddedConditioning& added) {
  if (is_inpainting_unet(m)) {
    // StableDiffusionInpaintPipeline with a full mask at strength 1 (the web UIs' txt2img
    // conditioning for inpainting models): the masked image is all zeros, so any image will do.
    check_size(m, p.width, p.height);
    torch::NoGradGuard ng;
    DiffusionParams q = p;
    q.strength = 1.0;
    const auto gray = torch::zeros({1, 3, p.height, p.width});
    return inpaint(m, cond, uncond, gray, full_mask(gray), q, on_step, added);
  }
  return decode(m, txt2img_latents(m, cond, uncond, p, on_step, added), p.tiled_vae);
}

torch::Tensor continue_from(DiffusionModels& m, const torch::Tensor& cond, const torch::Tensor& uncond,
                            const torch::Tensor& latents_in, const DiffusionParams& p, const StepFn& on_step,
                            const AddedConditioning& added) {
  torch::NoGradGuard ng;
  if (latents_in.dim() != 4 || latents_in.size(1) != m.unet->cfg.out_channels)
    LOUPE_THROW(InvalidArgument, "the handed-over latents have shape " << latents_in.sizes() << ", this model's are [1, "
                                                                        << m.unet->cfg.out_channels << ", h, w]");
  if (is_inpainting_unet(m)) LOUPE_THROW(Unsupported, "an inpainting UNet cannot take over latents (denoising_start)");
  if (!(p.denoising_start > 0.0 && p.denoising_start < 1.0))
    LOUPE_THROW(InvalidArgument, "denoising_start must be in (0, 1) (got " << p.denoising_start << ")");
  Loop L(m, cond, uncond, p, added);
  auto latents = latents_in.to(m.device, torch::kFloat32);
  const size_t start = L.start_index_from(p.denoising_start), n = L.sched->timesteps().size();
  for (size_t i = start; i < n; ++i) {
    latents = L.sched->step(L.predict(latents, i), i, latents, &L.gen);
    if (on_step) on_step(static_cast<int>(i + 1 - start), static_cast<int>(n - start), latents);
  }
  return L.decode(latents);
}

torch::Tensor decode(DiffusionModels& m, const torch::Tensor& latents, bool tiled) {
  torch::NoGradGuard ng;
  return decode_latents(m, latents, tiled);
}

torch::Tensor img2img(DiffusionModels& m, const torch::Tensor& cond, const torch::Tensor& uncond, const torch::Tensor& image,
                      const DiffusionParams& p, const StepFn& on_step, const AddedConditioning& added) {
  check_size(m, static_cast<int>(image.size(3)), static_cast<int>(image.size(2)));
  torch::NoGradGuard ng;
  Loop L(m, cond, uncond, p, added);
  const size_t start = L.start_index(), n = L.sched->timesteps().size();
  // StableDiffusionInpaintPipeline with a full mask at this strength (the web UIs' img2img on
  // inpainting models): noised latents of the image, the masked image all zeros.
  if (is_inpainting_unet(m) && start < n) return inpaint(m, cond, uncond, image, full_mask(image), p, on_step, added);
  auto init = L.encode_sample(image);
  if (start >= n) return L.decode(init);  // strength 0: the image itself, through the VAE
  auto noise = randn_cpu(init.sizes(), L.gen).to(m.device);
  auto latents = L.sched->add_noise(init, noise, start);
  for (size_t i = start; i < n; ++i) {
    latents = L.sched->step(L.predict(latents, i), i, latents, &L.gen);
    if (on_step) on_step(static_cast<int>(i + 1 - start), static_cast<int>(n - start), latents);
  }
  return L.decode(latents);
}

torch::Tensor inpaint(DiffusionModels& m, const torch::Tensor& cond, const torch::Tensor& uncond, const torch::Tensor& image,
                      const torch::Tensor& mask, const DiffusionParams& p, const StepFn& on_step,
                      const AddedConditioning& added) {
  const int64_t H = image.size(2), W = image.size(3);
  check_size(m, static_cast<int>(W), static_cast<int>(H));
  if (mask.size(2) != H || mask.size(3) != W)
    LOUPE_THROW(InvalidArgument, "the mask is " << mask.size(3) << "x" << mask.size(2) << " but the image is " << W << "x" << H);
  torch::NoGradGuard ng;
  Loop L(m, cond, uncond, p, added);
  const int64_t ch = m.unet->cfg.in_channels;
  if (ch != 4 && ch != 9)
    LOUPE_THROW(Unsupported, "inpainting needs a 4-channel or a 9-channel (inpainting) UNet; this one has " << ch);
  const size_t start = L.start_index(), n = L.sched->timesteps().size();
  if (start >= n) LOUPE_THROW(InvalidArgument, "strength " << p.strength << " leaves no denoising step");
  const bool strength_max = p.strength == 1.0;
  const auto bin_mask = (mask >= 0.5).to(torch::kFloat32);
  torch::Tensor image_latents;
  if (ch == 4 || !strength_max) image_latents = L.encode_sample(image);
  const int64_t f = m.vae->cfg.scale_factor();
  auto noise = randn_cpu({1, 4, H / f, W / f}, L.gen).to(m.device);
  auto latents = strength_max ? noise * L.sched->init_noise_sigma() : L.sched->add_noise(image_latents, noise, start);
  // the latent-size mask (nearest) and the masked image's latents
  auto lmask = torch::nn::functional::interpolate(
                   bin_mask, torch::nn::functional::InterpolateFuncOptions().size(std::vector<int64_t>{H / f, W / f}).mode(torch::kNearest))
                   .to(m.device);
  const auto masked_image = image * (bin_mask < 0.5).to(image.scalar_type());
  auto masked_latents = L.encode_sample(masked_image);
  torch::Tensor extra;
  if (ch == 9) {
    extra = torch::cat({lmask, masked_latents}, 1);
    if (L.cfg) extra = torch::cat({extra, extra}, 0);
  }
  for (size_t i = start; i < n; ++i) {
    latents = L.sched->step(L.predict(latents, i, extra), i, latents, &L.gen);
    if (ch == 4) {
      auto known = image_latents;
      if (i + 1 < n) known = L.sched->add_noise(known, noise, i + 1);
      latents = (1 - lmask) * known + lmask * latents;
    }
    if (on_step) on_step(static_cast<int>(i + 1 - start), static_cast<int>(n - start), latents);
  }
  return L.decode(latents);
}

torch::Tensor decode_vae(sd::AutoencoderKL& vae, torch::Device device, torch::ScalarType vae_dtype,
                         const torch::Tensor& latents, bool tiled) {
  auto z = latents.to(device) / vae->cfg.scaling_factor;
  if (vae->cfg.shift_factor != 0) z = z + vae->cfg.shift_factor;
  z = z.to(vae_dtype);
  torch::Tensor img;
  if (tiled) {
    img = vae->decode_tiled(z);
  } else {
    try {
      img = vae->decode(z);
    } catch (const std::exception& e) {
      // the whole image does not fit: decode it in tiles instead of failing the job
      if (!compat::is_out_of_memory(e)) throw;
      release_cached_device_memory();
      img = vae->decode_tiled(z);
    }
  }
  return (img.to(torch::kFloat32) / 2 + 0.5).clamp(0, 1).cpu();
}

torch::Tensor latent_preview(const torch::Tensor& latents) {
  // The widely used linear approximation of the SD 1.x/2.x VAE decoder ("approx cheap").
  static const float kCoef[4][3] = {{0.298f, 0.207f, 0.208f}, {0.187f, 0.286f, 0.173f},
                                    {-0.158f, 0.189f, 0.264f}, {-0.184f, -0.271f, -0.473f}};
  auto coef = torch::from_blob(const_cast<float*>(&kCoef[0][0]), {4, 3}, torch::kFloat32).clone();
  auto z = latents[0].to(torch::kCPU, torch::kFloat32).slice(0, 0, 4);      // [4, h, w]
  auto rgb = torch::einsum("chw,cr->hwr", {z, coef});                      // [h, w, 3]
  return ((rgb.clamp(-1, 1) + 1) * 127.5).round().to(torch::kUInt8).contiguous();
}

}  // namespace loupe::pipelines
