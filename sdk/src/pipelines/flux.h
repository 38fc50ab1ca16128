// FLUX.1 pipelines as compositions (diffusers' FluxPipeline, FluxImg2ImgPipeline, FluxInpaintPipeline
// and FluxFillPipeline semantics): 2 x 2 latent packing, the latent image ids and text ids, the
// flow-matching Euler loop (no classifier-free guidance; the dev models' distilled guidance goes in
// as an embedding), the 16-channel VAE with its scale and shift. A pipeline owns no weights: the
// transformer is a callable (the family binds the FLUX transformer to it).
//
// Seeds are portable: every random draw (VAE posterior samples, the initial noise) comes from one
// CPU generator seeded with the job's seed, in the order the diffusers pipelines draw them with
// torch.Generator("cpu").manual_seed(seed).
#pragma once
#include <functional>

#include <torch/torch.h>

#include "models/sd/vae.h"
#include "schedulers/scheduler.h"

namespace loupe::pipelines::flux {

// FluxPipeline._pack_latents: [B, C, H, W] -> [B, (H/2)(W/2), 4C] (2 x 2 patches, channel-major).
torch::Tensor pack_latents(const torch::Tensor& latents);
// FluxPipeline._unpack_latents: [B, (h/2)(w/2), 4C] -> [B, C, h, w] for latents of h x w.
torch::Tensor unpack_latents(const torch::Tensor& packed, int64_t h, int64_t w);
// FluxPipeline._prepare_latent_image_ids: [(h/2)(w/2), 3] = (0, row, column) of each packed latent.
torch::Tensor latent_image_ids(int64_t h, int64_t w);
// The text ids: zeros [tokens, 3].
torch::Tensor text_ids(int64_t tokens);
// FluxFillPipeline's mask channels: a pixel mask [B, 1, 8h, 8w] -> [B, (h/2)(w/2), 4 * f * f]
// (each latent's f x f pixels as channels, then packed), f = the VAE's scale factor.
torch::Tensor pack_fill_mask(const torch::Tensor& mask, int64_t f);

// What the transformer takes in one call (diffusers' FluxTransformer2DModel.forward).
struct TransformerInputs {
  torch::Tensor hidden;    // [B, S, in_channels] packed latents (Fill: with the masked-image latents and mask)
  torch::Tensor timestep;  // [B] float32: the scheduler's timestep / 1000 (the sigma)
  torch::Tensor guidance;  // [B] float32 guidance scale (guidance_embeds models), else undefined
  torch::Tensor pooled;    // [B, 768] CLIP-L pooled output
  torch::Tensor context;   // [B, T, 4096] T5 last hidden state
  torch::Tensor txt_ids;   // [T, 3]
  torch::Tensor img_ids;   // [S, 3]
};
// Returns the predicted velocity [B, S, 4 * latent_channels] (float32 or the model's dtype).
using Transformer = std::function<torch::Tensor(const TransformerInputs&)>;

struct Models {
  Transformer transformer;
  int64_t in_channels = 64;       // the transformer's (64; 384 = FLUX.1 Fill)
  bool guidance_embeds = false;   // dev and Fill: guidance as an input
  sd::AutoencoderKL vae{nullptr};  // 16 latent channels, shift_factor
  schedulers::FlowMatchConfig scheduler;
  torch::Device device = torch::kCPU;
  torch::ScalarType dtype = torch::kFloat32;      // the transformer's input dtype
  torch::ScalarType vae_dtype = torch::kFloat32;
};

struct Params {
  int steps = 28;
  double guidance = 3.5;    // dev / Fill (ignored by schnell)
  uint64_t seed = 0;
  int width = 1024, height = 1024;  // pixels, multiples of 16
  double strength = 1.0;    // img2img / inpaint
  bool tiled_vae = false;
};

// The prompt's conditioning: T5's last hidden state [1, T, D] and CLIP's pooled output [1, P].
struct Conditioning {
  torch::Tensor context, pooled;
};

// Called after every step with (step, total, packed latents, latent h, latent w); throws to stop.
using StepFn = std::function<void(int, int, const torch::Tensor&, int64_t, int64_t)>;

// Images are [1, 3, H, W] float in [-1, 1]; masks [1, 1, H, W] (>= 0.5 = repaint). All return the
// decoded image [1, 3, H, W] in [0, 1] on the CPU in float32.
torch::Tensor txt2img(Models& m, const Conditioning& c, const Params& p, const StepFn& on_step = {});
// FluxImg2ImgPipeline: the image's latents noised to the strength's first step (scale_noise).
torch::Tensor img2img(Models& m, const Conditioning& c, const torch::Tensor& image, const Params& p,
                      const StepFn& on_step = {});
// A Fill transformer (in_channels 384): FluxFillPipeline (masked-image latents and packed mask as
// extra channels). Any other FLUX transformer: FluxInpaintPipeline (the known region's latents,
// noised to the next step, blended back after every step).
torch::Tensor inpaint(Models& m, const Conditioning& c, const torch::Tensor& image, const torch::Tensor& mask,
                      const Params& p, const StepFn& on_step = {});
// The packed latents' state as an image: a cheap decode (the latents at half size through the
// VAE) for live previews: [h, w, 3] uint8 on the CPU.
torch::Tensor latent_preview(Models& m, const torch::Tensor& packed, int64_t h, int64_t w);

}  // namespace loupe::pipelines::flux
