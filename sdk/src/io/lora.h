// The one reader of LoRA files, whatever the trainer named their tensors: each module's down (A) and
// up (B) matrices and alpha, keyed by kohya's target name ("lora_unet_<path>", "lora_te_<path>",
// "lora_te1_/lora_te2_<path>": a module path with dots written as underscores). The families map
// those names to their modules and apply the update w * alpha / rank * up @ down their own way
// (Stable Diffusion / SDXL merge it into the weights; FLUX.1 adds it when a block is materialised).
// Names read:
//  - kohya (sd-scripts) and ComfyUI: <module>.lora_down.weight, <module>.lora_up.weight, <module>.alpha;
//  - diffusers / PEFT: [base_model.model.]<component>.<path>.lora_A.weight / .lora_B.weight, optional
//    <path>.alpha; components unet., transformer., diffusion_model., model.diffusion_model. (the
//    denoiser: lora_unet_), text_encoder. (lora_te_, or lora_te1_ for two-encoder models),
//    text_encoder_2. (lora_te2_); a path without a component is the denoiser's;
//  - diffusers' older names: <path>.lora.down.weight / .lora.up.weight, attention processors'
//    <attn>.processor.to_q_lora.down.weight (to_k, to_v, to_out -> to_out.0), text encoders'
//    self_attn.to_q_lora.down.weight (-> q_proj ...) and mlp.fc1.lora_linear_layer.down.weight.
// DoRA files are refused (Unsupported, naming the tensor).
#pragma once
#include <map>
#include <string>
#include <vector>

#include "io/checkpoint.h"

namespace loupe::io {

// One module of a LoRA file: the checkpoint names of its matrices ("" when the file lacks one).
struct LoraModule {
  std::string down, up, alpha;
};

// The file's modules by kohya target name. `two_text_encoders`: "text_encoder." is lora_te1_ (SDXL,
// FLUX) rather than lora_te_. Tensors that are none of the above (LoCon / LoHa parts, biases) are
// listed in `other` when given, else skipped.
std::map<std::string, LoraModule> lora_modules(const Checkpoint& ck, const std::string& file, bool two_text_encoders,
                                               std::vector<std::string>* other = nullptr);

// alpha / rank of a module (alpha = rank when the file has none, as PEFT's default).
double lora_scale(const Checkpoint& ck, const LoraModule& m, int64_t rank);

}  // namespace loupe::io
