// LoRA for Stable Diffusion 1.x/2.x and SDXL. Files in the kohya format (sd-scripts):
// "lora_unet_<module>" and "lora_te_<module>" (SDXL: "lora_te1_" and "lora_te2_" for its two
// encoders) with lora_down / lora_up / alpha, module paths being diffusers' names with dots written
// as underscores, or for SDXL's UNet the original model's (lora_unet_input_blocks_4_1_...); and in
// diffusers / PEFT naming (unet.<path>.lora_A.weight / lora_B.weight, text_encoder(_2).*; diffusers'
// older .lora.down / .lora.up and attention-processor names). Applied by merging into the weights
// (W += w * alpha/rank * up @ down; alpha = rank when the file has none, as PEFT's default) and
// removed by restoring the original tensors kept aside, so the base model is never reloaded.
// Several files stack; each has its own weight.
#pragma once
#include <map>
#include <string>

#include <torch/torch.h>

namespace loupe::sd {

class LoraSet {
 public:
  // Sets the weight of one LoRA file (0 removes it) and re-merges all active files. On any error
  // (unreadable file, no matching module, a shape mismatch) the weights are left as they were.
  // SDXL (`text2` = text_encoder_2): kohya names the encoders lora_te1_* and lora_te2_*.
  void set(const std::string& path, float weight, torch::nn::Module& unet, torch::nn::Module& text,
           torch::nn::Module* text2 = nullptr);
  const std::map<std::string, float>& active() const { return active_; }

 private:
  void restore();
  void merge(const std::map<std::string, float>& files, torch::nn::Module& unet, torch::nn::Module& text,
             torch::nn::Module* text2);
  std::map<std::string, float> active_;
  std::map<torch::TensorImpl*, std::pair<torch::Tensor, torch::Tensor>> originals_;  // param -> (param, CPU copy)
};

}  // namespace loupe::sd
