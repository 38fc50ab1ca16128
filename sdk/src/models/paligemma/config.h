// PaliGemma / PaliGemma 2 configuration from the checkpoint's own files, with transformers'
// defaults (PaliGemmaConfig, SiglipVisionConfig, GemmaConfig / Gemma2Config): config.json for the
// model (vision_config, text_config with model_type "gemma" or "gemma2", projection_dim,
// image_token_index) and preprocessor_config.json for the image processor (SiglipImageProcessor:
// resize to size, rescale, normalise). The 224 / 448 / 896 variants differ only here.
#pragma once
#include <array>
#include <string>
#include <vector>

#include "models/siglip/siglip.h"
#include "nn/decoder_lm.h"

namespace loupe::paligemma {

struct Config {
  siglip::VisionConfig vision;
  nn::DecoderConfig text;
  int64_t image_token_id = 256000;  // "image_token_index"
  int64_t projection_dim = 2048;    // the projector's output: the text model's hidden size
  int64_t num_image_tokens = 256;   // (image_size / patch_size)^2
  // image processor (SiglipImageProcessor, as PaliGemmaProcessor uses it)
  int64_t image_height = 224, image_width = 224;
  double rescale_factor = 1.0 / 255.0;
  std::array<double, 3> image_mean{0.5, 0.5, 0.5}, image_std{0.5, 0.5, 0.5};
  int resample = 3;  // PIL's filter: 3 bicubic, 2 bilinear
  bool do_normalize = true, do_rescale = true;
  std::string dir;

  // "paligemma-224", "paligemma2-448", ...
  std::string variant() const;
  bool gemma2() const { return text.model_type == "gemma2"; }

  // Reads <dir>/config.json (required) and <dir>/preprocessor_config.json (optional: else the
  // vision tower's size, mean/std 0.5). Errors name the file and the key: BadModel for wrong types
  // or sizes that do not fit, Unsupported for a text model other than Gemma / Gemma 2.
  static Config load(const std::string& dir);
};

}  // namespace loupe::paligemma
