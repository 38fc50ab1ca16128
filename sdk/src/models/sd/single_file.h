// Single-file Stable Diffusion checkpoints as model sites distribute them (the original LDM key
// layout: model.diffusion_model.*, first_stage_model.*, cond_stage_model.*), read through a
// key-mapping table onto the same diffusers-named modules.
//
// Configs: a single file holds only weights. They come from a sidecar folder "<file stem>/" (a
// diffusers folder without weights, like diffusers' from_single_file(config=...)) when present, else
// from the reference configs of the detected variant (SD 1.x, SD 2.x, SD 1.5 inpainting). The CLIP
// tokenizer files come from the sidecar's tokenizer/, else from wherever find_clip_vocab finds
// them (a diffusers folder next to the file or in the models folder, Loupe's copy, the Hugging Face
// cache), else they are fetched once into Loupe's copy (clip::fetch_clip_vocab; not in offline
// mode); the vocabulary is the same for SD 1.x and 2.x.
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

// "sd15", "sd15-inpainting", "sd2", "sd2-inpainting", "sdxl", "sdxl-refiner", "sdxl-inpainting" for a
// single-file SD checkpoint (from its tensors: SDXL's UNet has label_emb, the refiner OpenCLIP-G as
// conditioner.embedders.0), "" otherwise.
std::string detect_single_file(const std::string& path);

// The folder holding the CLIP vocabulary a single file would use, found on this machine without
// fetching anything (the search of read_single_file before its fetch); "" when there is none.
std::string single_file_tokenizer(const std::string& path, const std::string& models_dir = "");

// Module name -> single-file name tables.
io::KeyMap unet_single_file_keymap(const UNetConfig& c);
io::KeyMap vae_single_file_keymap(const VaeConfig& c);
// `prefix`: where the encoder sits in the file ("" = SD 1.x's cond_stage_model.transformer. or SD
// 2.x's cond_stage_model.model.; SDXL: conditioner.embedders.N.transformer. / .model.).
io::KeyMap clip_single_file_keymap(bool open_clip, int64_t hidden, const std::string& prefix = "");

// The pieces of a Stable Diffusion checkpoint, loaded (from a single file or a diffusers folder).
struct SingleFile {
  UNet2DConditionModel unet{nullptr};
  AutoencoderKL vae{nullptr};
  clip::ClipTextModel text{nullptr};
  text::BpeTokenizer tokenizer;
  ClipTokens ids;
  schedulers::SchedulerConfig scheduler;
  // SDXL: the second text encoder (CLIPTextModelWithProjection) and its tokenizer; null otherwise.
  clip::ClipTextModel text2{nullptr};
  text::BpeTokenizer tokenizer2;
  ClipTokens ids2;
  bool force_zeros_for_empty_prompt = true;  // SDXL (model_index.json): an empty negative prompt is zeros
};

// The pieces fit together (text width, latent channels, vocabulary size); from configs only.
void check_components(const SingleFile& c, const std::string& where);

// Checks everything cheap first (tokenizer, configs, tensor names and shapes from the header), then
// reads the weights. `models_dir`: also searched for a CLIP tokenizer (see find_clip_vocab).
SingleFile read_single_file(const std::string& path, const torch::Device& device, torch::ScalarType dtype,
                            const std::string& models_dir = "");

// An external VAE: a diffusers vae/ folder (config.json + weights, or a diffusers model folder
// holding one), or one file with the VAE alone in the LDM layout ("encoder.*", "decoder.*",
// "quant_conv.*", "post_quant_conv.*", as the web UIs keep them in models/VAE; with or without
// "first_stage_model.") or in diffusers' names. A file takes the configuration `cfg` (the
// checkpoint's own VAE's); `dtype` is the model's (the VAE's own comes from vae_dtype()). Errors
// name the file, and the tensor and shapes that do not fit.
// `shifted_latents_ok`: a vae/ folder whose config has shift_factor is accepted (FLUX's VAE).
AutoencoderKL read_vae(const std::string& path, const VaeConfig& cfg, const torch::Device& device, torch::ScalarType dtype,
                       bool shifted_latents_ok = false);

}  // namespace loupe::sd
