// BLIP-2 configuration from the checkpoint's own files, with transformers' defaults (Blip2Config,
// Blip2VisionConfig, Blip2QFormerConfig, OPTConfig / T5Config): config.json (vision_config,
// qformer_config, text_config, num_query_tokens, image_token_index), processor_config.json
// (Blip2Processor's num_query_tokens), preprocessor_config.json (BlipImageProcessor: resize,
// rescale, OpenAI CLIP mean / std), tokenizer_config.json (bos token, add_bos_token) and
// generation_config.json (the generation defaults).
//
// Two prompt layouts, as transformers has them: the current one (config.json has
// image_token_index: the processor puts num_query_tokens <image> tokens ahead of the text, whose
// embeddings the Q-Former's projected outputs replace) and the older one (no image_token_index: the
// projected query outputs are concatenated ahead of the text's embeddings).
#pragma once
#include <array>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "nn/decoder_lm.h"
#include "nn/t5.h"

namespace loupe::blip2 {

// Blip2VisionConfig (EVA ViT-g at 224 by default).
struct VisionConfig {
  int64_t hidden_size = 1408;
  int64_t intermediate_size = 6144;
  int64_t num_layers = 39;
  int64_t num_heads = 16;
  int64_t image_size = 224;
  int64_t patch_size = 14;
  double eps = 1e-6;
  std::string activation = "gelu";
  bool qkv_bias = true;
  int64_t num_patches() const { return (image_size / patch_size) * (image_size / patch_size); }
};

// Blip2QFormerConfig (BERT-base sized by default).
struct QFormerConfig {
  int64_t hidden_size = 768;
  int64_t num_layers = 12;
  int64_t num_heads = 12;
  int64_t intermediate_size = 3072;
  double eps = 1e-12;
  std::string activation = "gelu";
  int64_t cross_attention_frequency = 2;
  int64_t encoder_hidden_size = 1408;  // the vision tower's hidden size
};

enum class PromptLayout { ImageTokens, Concatenated };

struct Config {
  VisionConfig vision;
  QFormerConfig qformer;
  std::string text_model_type = "opt";  // "opt" (decoder-only) or "t5" (encoder-decoder)
  nn::DecoderConfig text;               // OPT
  nn::T5Config t5;                      // Flan-T5
  nlohmann::json text_json;             // text_config as written
  int64_t text_hidden_size = 2560;      // the language model's hidden size (language_projection's output)
  int64_t text_vocab_size = 50272;
  int64_t num_query_tokens = 32;
  int64_t image_token_id = -1;  // image_token_index; -1: the older layout
  PromptLayout layout = PromptLayout::Concatenated;
  // image processor (BlipImageProcessor)
  int64_t image_height = 224, image_width = 224;
  double rescale_factor = 1.0 / 255.0;
  std::array<double, 3> image_mean{0.48145466, 0.4578275, 0.40821073}, image_std{0.26862954, 0.26130258, 0.27577711};
  int resample = 3;  // PIL's filter: 3 bicubic, 2 bilinear
  bool do_normalize = true, do_rescale = true, do_resize = true;
  // tokenizer: the id put before the text (OPT: "</s>" = 2), -1: none (T5)
  int64_t bos_token_id = -1;
  std::string bos_token;  // as tokenizer_config.json names it ("" = from the ids)
  bool add_bos = true;
  // generation defaults (generation_config.json, else the text config)
  int max_new_tokens = 20;
  int num_beams = 1;
  int no_repeat_ngram_size = 0;
  double length_penalty = 1.0;
  double repetition_penalty = 1.0;
  std::vector<int64_t> eos_token_ids;
  int64_t pad_token_id = -1;
  int64_t decoder_start_token_id = 0;  // T5
  std::string dir;

  bool is_t5() const { return text_model_type == "t5"; }
  // "blip2-opt", "blip2-flan-t5"
  std::string variant() const;

  // Reads the files above from `dir` (config.json required). BadModel naming the file and key for
  // wrong types, numbers out of range and sizes that do not fit together; Unsupported for a
  // language model other than OPT or T5, or a Q-Former with text input / relative positions.
  static Config load(const std::string& dir);
};

}  // namespace loupe::blip2
