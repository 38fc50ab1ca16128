// PaliGemma / PaliGemma 2: the SigLIP vision tower, the linear projector and the Gemma / Gemma 2
// decoder (the shared decoder-only core, nn::DecoderLM), as transformers'
// PaliGemmaForConditionalGeneration of the published checkpoints: module names "vision_tower.*",
// "multi_modal_projector.linear.*", "language_model.model.*" (lm_head tied), so those files bind
// by lookup; transformers >= 4.52 / 5 files ("model.vision_tower.*", "model.multi_modal_projector.*",
// "model.language_model.*", "lm_head.*") bind through a key map (its _checkpoint_conversion_mapping).
//
// The image features (projector output / sqrt(text hidden size)) take the places of the image
// tokens in the prompt's embeddings; the prompt (image + bos + text + "\n") is a prefix the decoder
// sees in both directions; positions count from 1.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "io/checkpoint.h"
#include "models/paligemma/config.h"
#include "models/siglip/siglip.h"
#include "nn/decoder_lm.h"
#include "nn/generation.h"
#include "nn/linear.h"

namespace loupe::paligemma {

struct ProjectorImpl : torch::nn::Module {
  ProjectorImpl(int64_t in, int64_t out) { linear = register_module("linear", nn::Linear(in, out)); }
  torch::Tensor forward(const torch::Tensor& x) { return linear(x); }
  nn::Linear linear{nullptr};
};
TORCH_MODULE(Projector);

enum class Layout { Published, Transformers5 };

class PaliGemmaImpl : public torch::nn::Module {
 public:
  explicit PaliGemmaImpl(const Config& c);
  Config cfg;
  siglip::VisionModel vision_tower{nullptr};
  Projector multi_modal_projector{nullptr};
  nn::DecoderLM language_model{nullptr};

  // Which layout a checkpoint has (by its names).
  static Layout layout_of(const io::Checkpoint& ckpt);
  // Loads every weight from `ckpt` (either layout); BadModel naming the file, keys and shapes.
  void load(const io::Checkpoint& ckpt, const std::string& file, torch::Device device, torch::ScalarType dtype);

  torch::Tensor vision_features(const torch::Tensor& pixels);  // SigLIP's last hidden state
  torch::Tensor image_features(const torch::Tensor& pixels);   // projector output [B, N, hidden]
  // The prompt's input embeddings [B, L, hidden] with image features / sqrt(hidden) at the image
  // tokens (unscaled text embeddings: the decoder applies Gemma's sqrt(hidden) to all rows).
  torch::Tensor merge(const torch::Tensor& ids, const torch::Tensor& image_features);
  // Logits of every prompt position [B, L, V] (prefix-LM over the whole prompt, 1-based positions).
  torch::Tensor prompt_logits(const torch::Tensor& ids, const torch::Tensor& pixels);

  struct Generated {
    std::vector<int64_t> ids;  // new ids, up to and including the stop token
    float score = 0;           // beam search: the hypothesis' score
    std::vector<torch::Tensor> step_logits;  // when asked: the logits [V] (fp32 CPU) each step saw
  };
  // Greedy or beam search (gen.num_beams) from one prompt [1, L] and its pixels [1, 3, H, W].
  Generated generate(const torch::Tensor& ids, const torch::Tensor& pixels, const nn::GenerationConfig& gen,
                     const nn::TokenCallback& on_token = {}, bool keep_step_logits = false);
};
TORCH_MODULE(PaliGemma);

}  // namespace loupe::paligemma
