// Stable Diffusion pipelines as compositions (diffusers' StableDiffusion{,Img2Img,Inpaint}Pipeline
// semantics): the denoising loops on given prompt embeddings. A pipeline owns no weights.
//
// Seeds are portable: every random draw (initial noise, VAE posterior samples, ancestral noise)
// comes from one CPU generator seeded with the job's seed, in the order diffusers draws them with
// torch.Generator("cpu").manual_seed(seed), so a seed gives the same image on any device.
#pragma once
#include <functional>
#include <string>

#include <torch/torch.h>

#include "models/sd/unet.h"
#include "models/sd/vae.h"
#include "schedulers/scheduler.h"

namespace loupe::pipelines {

struct DiffusionModels {
  sd::UNet2DConditionModel unet{nullptr};
  sd::AutoencoderKL vae{nullptr};
  schedulers::SchedulerConfig scheduler;
  torch::Device device = torch::kCPU;
  torch::ScalarType dtype = torch::kFloat32;      // UNet dtype
  torch::ScalarType vae_dtype = torch::kFloat32;  // the VAE runs in fp32 when its config says force_upcast
};

struct DiffusionParams {
  std::string sampler = "euler";
  int steps = 20;
  double guidance_scale = 7.5;
  uint64_t seed = 0;
  int width = 512, height = 512;  // pixels (multiples of 8)
  double strength = 1.0;          // img2img / inpainting
  bool tiled_vae = false;         // decode in tiles (large images)
  // diffusers' denoising_end (txt2img_latents: stop once the timesteps fall below
  // round(T * (1 - denoising_end)); 1 = all steps) and denoising_start (continue: run only the
  // timesteps below round(T * (1 - denoising_start))), the SDXL base/refiner hand-over.
  double denoising_end = 1.0;
  double denoising_start = 0.0;
};

// SDXL's added conditioning (a "text_time" UNet; diffusers' StableDiffusionXLPipeline): the pooled
// embedding of the second text encoder [1, P] and the time ids [1, 6] (original height, width,
// crop top, left, target height, width), for the prompt and the negative prompt. Empty for SD
// 1.x/2.x. negative_time_ids undefined: the prompt's.
struct AddedConditioning {
  torch::Tensor pooled, negative_pooled;
  torch::Tensor time_ids, negative_time_ids;
  bool empty() const { return !pooled.defined(); }
};
// diffusers' _get_add_time_ids: original size, crop top-left, target size as one row [1, 6].
torch::Tensor time_ids(int original_h, int original_w, int crop_top, int crop_left, int target_h, int target_w);
// The refiner's (requires_aesthetics_score): original size, crop top-left, aesthetic score [1, 5].
torch::Tensor aesthetic_time_ids(int original_h, int original_w, int crop_top, int crop_left, double aesthetic_score);

// Called after every step with (step, total, latents); returns nothing, throws to stop.
using StepFn = std::function<void(int, int, const torch::Tensor&)>;

// cond / uncond: [1, S, D] prompt embeddings (uncond may be undefined when guidance_scale <= 1).
// Images are [1, 3, H, W] float in [-1, 1]; masks [1, 1, H, W] in {0, 1} (1 = repaint).
// All return the decoded image [1, 3, H, W] in [0, 1] on the CPU in float32.
// On a 9-channel (inpainting) UNet, txt2img and img2img are inpaint with a full mask (diffusers'
// StableDiffusionInpaintPipeline with mask_image all white; the web UIs' conditioning for
// inpainting models): txt2img at strength 1, img2img at its strength (strength 0 still returns the
// image through the VAE).
// `added` is required by (and only taken by) a "text_time" UNet.
torch::Tensor txt2img(DiffusionModels& m, const torch::Tensor& cond, const torch::Tensor& uncond, const DiffusionParams& p,
                      const StepFn& on_step = {}, const AddedConditioning& added = {});
torch::Tensor img2img(DiffusionModels& m, const torch::Tensor& cond, const torch::Tensor& uncond, const torch::Tensor& image,
                      const DiffusionParams& p, const StepFn& on_step = {}, const AddedConditioning& added = {});
// 9-channel UNets get the mask and masked-image latents as extra inputs; 4-channel UNets blend the
// known region back into the latents after each step.
torch::Tensor inpaint(DiffusionModels& m, const torch::Tensor& cond, const torch::Tensor& uncond, const torch::Tensor& image,
                      const torch::Tensor& mask, const DiffusionParams& p, const StepFn& on_step = {},
                      const AddedConditioning& added = {});

// The SDXL base/refiner hand-over as diffusers runs it: StableDiffusionXLPipeline(denoising_end,
// output_type="latent") gives txt2img_latents' latents (scaled, not decoded); the refiner's
// StableDiffusionXLImg2ImgPipeline(image=latents, denoising_start) is continue_from: no noise is
// added, the steps below the cut-off run, then the VAE decodes. Each call draws from its own
// generator seeded with p.seed, as two diffusers calls with manual_seed(seed) each do.
torch::Tensor txt2img_latents(DiffusionModels& m, const torch::Tensor& cond, const torch::Tensor& uncond,
                              const DiffusionParams& p, const StepFn& on_step = {}, const AddedConditioning& added = {});
torch::Tensor continue_from(DiffusionModels& m, const torch::Tensor& cond, const torch::Tensor& uncond,
                            const torch::Tensor& latents, const DiffusionParams& p, const StepFn& on_step = {},
                            const AddedConditioning& added = {});
// Latents (scaled) -> image [1, 3, H, W] in [0, 1] on the CPU, as the pipelines decode.
torch::Tensor decode(DiffusionModels& m, const torch::Tensor& latents, bool tiled = false);
// The one VAE decode of every diffusion pipeline (SD, SDXL, FLUX.1): latents / scaling_factor +
// shift_factor, decoded in `vae_dtype` on `device` (in tiles when asked, or when the whole image
// does not fit), -> [B, 3, H, W] in [0, 1], fp32 on the CPU.
torch::Tensor decode_vae(sd::AutoencoderKL& vae, torch::Device device, torch::ScalarType vae_dtype,
                         const torch::Tensor& latents, bool tiled);

// A cheap latent -> RGB approximation for live previews: [1, 4, h, w] -> [h, w, 3] uint8 (CPU).
torch::Tensor latent_preview(const torch::Tensor& latents);

}  // namespace loupe::pipelines
