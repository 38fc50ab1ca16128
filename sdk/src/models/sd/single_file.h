// Single-file Stable Diffusion checkpoints as model sites distribute them (the original LDM key
// layout: model.diffusion_model.*, first_stage_model.*, cond_stage_model.*), read through a
// key-mapping table onto the same diffusers-named modules.
//
// Configs: a single file holds only weights. They come from a sidecar folder "<file stem>/" (a
// diffusers folder without weights, like diffusers' from_single_file(config=...)) when present, else
// from the reference configs of the detected variant (SD 1.x, SD 2.x, SD 1.5 inpainting). The CLIP
// tokenizer files come from the sidecar's tokenizer/ or from any Stable Diffusion folder next to
// the file (the vocabulary is the same for SD 1.x and 2.x).
#pragma once
#include <string>

#include <torch/torch.h>

#include "io/checkpoint.h"
#include "io/state_dict.h"
#include "models/clip/clip_text.h"
#include "models/sd/prompt.h"
#include "models/sd/unet.h"
#include "models/sd/vae.h"
#include "schedulers/scheduler.h"
#include "text/bpe_tokenizer.h"

namespace loupe::sd {

// "sd15", "sd15-inpainting", "sd2", "sd2-inpainting" for a single-file SD checkpoint, "" otherwise.
std::string detect_single_file(const std::string& path);

// Module name -> single-file name tables.
io::KeyMap unet_single_file_keymap(const UNetConfig& c);
io::KeyMap vae_single_file_keymap(const VaeConfig& c);
io::KeyMap clip_single_file_keymap(bool open_clip, int64_t hidden);

// The pieces of a Stable Diffusion checkpoint, loaded (from a single file or a diffusers folder).
struct SingleFile {
  UNet2DConditionModel unet{nullptr};
  AutoencoderKL vae{nullptr};
  clip::ClipTextModel text{nullptr};
  text::BpeTokenizer tokenizer;
  ClipTokens ids;
  schedulers::SchedulerConfig scheduler;
};

SingleFile read_single_file(const std::string& path, const torch::Device& device, torch::ScalarType dtype);

}  // namespace loupe::sd
