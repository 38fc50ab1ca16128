// Florence-2 configuration, parsed from the checkpoint's config.json with the reference's defaults
// (transformers' Florence2Config / Florence2VisionConfig / BartConfig). Nothing assumes base or large.
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "nn/generation.h"

namespace loupe::florence2 {

// When beam search stops (transformers' GenerationConfig.early_stopping): the shared strategies' enum.
using EarlyStopping = nn::EarlyStopping;

struct VisionConfig {
  int in_channels = 3;
  std::vector<int> depths{1, 1, 9, 1};
  std::vector<int> patch_size{7, 3, 3, 3};
  std::vector<int> patch_stride{4, 2, 2, 2};
  std::vector<int> patch_padding{3, 1, 1, 1};
  std::vector<bool> patch_prenorm{false, true, true, true};
  std::vector<int> embed_dim{128, 256, 512, 1024};
  std::vector<int> num_heads{4, 8, 16, 32};
  std::vector<int> num_groups{4, 8, 16, 32};
  int window_size = 12;
  double mlp_ratio = 4.0;
  bool qkv_bias = true;
  int projection_dim = 1024;
  int max_temporal_embeddings = 100;
  int max_position_embeddings = 50;
};

struct TextConfig {  // BART
  int vocab_size = 50265;
  int d_model = 1024;
  int encoder_layers = 12, decoder_layers = 12;
  int encoder_attention_heads = 16, decoder_attention_heads = 16;
  int encoder_ffn_dim = 4096, decoder_ffn_dim = 4096;
  int max_position_embeddings = 1024;
  bool scale_embedding = false;
  std::string activation_function = "gelu";
  int pad_token_id = 1, bos_token_id = 0, eos_token_id = 2;
  int decoder_start_token_id = 2;
  int forced_bos_token_id = -1, forced_eos_token_id = 2;
};

struct Config {
  VisionConfig vision;
  TextConfig text;
  int64_t image_token_id = 51289;
  std::string model_type;
  // The first Florence-2 releases (remote code): other parameter names, image_projection stored
  // transposed, no image placeholder token (features are simply put in front of the prompt).
  bool original_layout = false;
  // The image processor settings (defaults: 768 x 768, ImageNet mean/std), see
  // image_processor_settings().
  int image_size = 768;
  std::vector<float> image_mean{0.485f, 0.456f, 0.406f};
  std::vector<float> image_std{0.229f, 0.224f, 0.225f};
  double rescale_factor = 1.0 / 255.0;
  // generation_config.json (else the text config), with transformers' GenerationConfig defaults
  int num_beams = 3;
  int no_repeat_ngram_size = 3;
  EarlyStopping early_stopping = EarlyStopping::Heuristic;
  double length_penalty = 1.0;
  int max_new_tokens = 1024;
  // processor_config.json: phrases the grounding post-processor drops
  std::vector<std::string> banned_grounding_tokens;

  // Number of image placeholder tokens: the vision tower's output grid plus one pooled token.
  int image_tokens() const;
  static Config load(const std::string& dir);
};

// The image processor settings of a folder, as transformers reads them: processor_config.json's
// "image_processor" object (transformers 5 writes them there) when it has one, else
// preprocessor_config.json (earlier releases). Returns the file they came from ("" when neither
// has them; *out is then left alone).
std::string image_processor_settings(const std::string& dir, nlohmann::json* out);

}  // namespace loupe::florence2
