// Issue 19, item 3: every number a config gives is range-checked when it is read (io::get_in /
// settings::get_in), for the Stable Diffusion and SDXL folders (unet, vae, scheduler, text encoders,
// model_index.json), the CLIP text config and the decoder-LM config: BadModel naming the file, the
// key and the value, never a crash or a tensor of a negative size later. (Florence-2 and PaliGemma
// have theirs in test_florence2.cpp and test_paligemma.cpp.)
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "families/sd.h"
#include "families/sdxl.h"
#include "io/config.h"
#include "models/clip/clip_text.h"
#include "models/sd/unet.h"
#include "models/sd/vae.h"
#include "nn/decoder_lm.h"
#include "schedulers/scheduler.h"

using namespace loupe;
namespace fs = std::filesystem;

namespace {

struct Case {
  std::string file;  // relative to the model folder
  std::string key;   // top-level key of that file
  nlohmann::json value;
  std::string expect;  // part of the message
};

// Copies the fixture folder, sets file[key] = value, loads it with the family: BadModel naming the
// file and containing `expect`.
void expect_refused(const ModelFamily& family, const std::string& fixture, const std::vector<Case>& cases) {
  const auto dir = fs::temp_directory_path() / ("loupe-ranges-" + std::to_string(::getpid()));
  for (const auto& c : cases) {
    fs::remove_all(dir);
    fs::copy(fixture, dir, fs::copy_options::recursive);
    const auto file = (dir / c.file).string();
    nlohmann::json j = io::read_json_file(file);
    j[c.key] = c.value;
    std::ofstream(file, std::ios::trunc) << j.dump(1);
    try {
      family.load(dir.string(), ModelOptions{});
      ADD_FAILURE() << c.file << ": " << c.key << " = " << c.value.dump() << " was accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.status(), Status::BadModel) << e.what();
      EXPECT_NE(std::string(e.what()).find(c.expect), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(file), std::string::npos) << e.what();
    }
  }
  fs::remove_all(dir);
}

const std::string kFixtures = LOUPE_FIXTURES_DIR;

}  // namespace

TEST(ConfigRanges, StableDiffusionFolderNumbersNameTheFileAndKey) {
  expect_refused(sd::family(), kFixtures + "/sd/tiny-sd15",
                 {
                     {"unet/config.json", "layers_per_block", -5, "\"layers_per_block\" is -5"},
                     {"unet/config.json", "block_out_channels", nlohmann::json::array({8, -16, 16}),
                      "\"block_out_channels[1]\" is -16"},
                     {"unet/config.json", "attention_head_dim", 2.5, "\"attention_head_dim\" is 2.5, not a whole number"},
                     {"unet/config.json", "cross_attention_dim", 4294967328LL, "\"cross_attention_dim\" is 4.29497e+09"},
                     {"unet/config.json", "norm_num_groups", 0, "\"norm_num_groups\" is 0"},
                     {"unet/config.json", "norm_eps", -1, "\"norm_eps\" is -1"},
                     {"vae/config.json", "latent_channels", 0, "\"latent_channels\" is 0"},
                     {"vae/config.json", "layers_per_block", -5, "\"layers_per_block\" is -5"},
                     {"vae/config.json", "scaling_factor", -0.18, "\"scaling_factor\" is -0.18"},
                     {"scheduler/scheduler_config.json", "num_train_timesteps", -5, "\"num_train_timesteps\" is -5"},
                     {"scheduler/scheduler_config.json", "beta_end", 7, "\"beta_end\" is 7"},
                     {"scheduler/scheduler_config.json", "steps_offset", -1, "\"steps_offset\" is -1"},
                     {"text_encoder/config.json", "num_hidden_layers", -5, "\"num_hidden_layers\" is -5"},
                     {"text_encoder/config.json", "vocab_size", 4294967297LL, "\"vocab_size\" is 4.29497e+09"},
                     {"text_encoder/config.json", "layer_norm_eps", -1e-5, "\"layer_norm_eps\" is -1e-05"},
                 });
}

TEST(ConfigRanges, SdxlFolderNumbersNameTheFileAndKey) {
  expect_refused(sdxl::family(), kFixtures + "/sdxl/tiny-sdxl",
                 {
                     {"unet/config.json", "addition_time_embed_dim", -1, "\"addition_time_embed_dim\" is -1"},
                     {"unet/config.json", "transformer_layers_per_block", nlohmann::json::array({1, 0}),
                      "\"transformer_layers_per_block[1]\" is 0"},
                     {"text_encoder_2/config.json", "hidden_size", 0, "\"hidden_size\" is 0"},
                     {"text_encoder_2/config.json", "projection_dim", -32, "\"projection_dim\" is -32"},
                     {"model_index.json", "force_zeros_for_empty_prompt", 3, "\"force_zeros_for_empty_prompt\" has the wrong type"},
                 });
}

// The readers themselves, on the numbers their defaults would never show.
TEST(ConfigRanges, ReadersRefuseEachNumberOutsideItsRange) {
  auto refused = [](auto read, const std::string& expect) {
    try {
      read();
      ADD_FAILURE() << expect << ": accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.status(), Status::BadModel) << e.what();
      EXPECT_NE(std::string(e.what()).find(expect), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("x/config.json"), std::string::npos) << e.what();
    }
  };
  const std::string f = "x/config.json";
  refused([&] { sd::UNetConfig::from_json({{"in_channels", -4}}, f); }, "\"in_channels\" is -4");
  refused([&] { sd::UNetConfig::from_json({{"sample_size", 0}}, f); }, "\"sample_size\" is 0");
  refused([&] { sd::VaeConfig::from_json({{"block_out_channels", {32, 0}}}, f); }, "\"block_out_channels[1]\" is 0");
  refused([&] { sd::VaeConfig::from_json({{"norm_num_groups", -32}}, f); }, "\"norm_num_groups\" is -32");
  refused([&] { clip::TextConfig::from_json({{"num_attention_heads", -8}}, f); }, "\"num_attention_heads\" is -8");
  refused([&] { clip::TextConfig::from_json({{"max_position_embeddings", 0}}, f); }, "\"max_position_embeddings\" is 0");
  refused([&] { clip::TextConfig::from_json({{"eos_token_id", -2}}, f); }, "\"eos_token_id\" is -2");
  refused([&] { schedulers::SchedulerConfig::from_json({{"beta_start", -0.1}}, f); }, "\"beta_start\" is -0.1");
  refused([&] { schedulers::SchedulerConfig::from_json({{"num_train_timesteps", 1e12}}, f); },
          "\"num_train_timesteps\" is 1e+12");
  // the decoder LM (Gemma / Gemma 2 / OPT text configs)
  refused([&] { nn::DecoderConfig::from_json({{"model_type", "opt"}, {"num_hidden_layers", -5}}, f); },
          "\"num_hidden_layers\" is -5");
  refused([&] { nn::DecoderConfig::from_json({{"model_type", "opt"}, {"ffn_dim", 0}}, f); }, "\"ffn_dim\" is 0");
  refused([&] { nn::DecoderConfig::from_json({{"model_type", "gemma"}, {"head_dim", -256}}, f); }, "\"head_dim\" is -256");
  refused([&] { nn::DecoderConfig::from_json({{"model_type", "gemma"}, {"rope_theta", -1}}, f); }, "\"rope_theta\" is -1");
  refused([&] { nn::DecoderConfig::from_json({{"model_type", "gemma"}, {"vocab_size", 4294967297LL}}, f); },
          "\"vocab_size\" is 4.29497e+09");
  refused([&] { nn::DecoderConfig::from_json({{"model_type", "gemma"}, {"eos_token_id", {1, -3}}}, f); },
          "\"eos_token_id[1]\" is -3");
  refused([&] { nn::DecoderConfig::from_json({{"model_type", "gemma"}, {"eos_token_id", -3}}, f); },
          "\"eos_token_id\" is -3");
  refused([&] { nn::DecoderConfig::from_json({{"model_type", "gemma2"}, {"sliding_window", -1}}, f); },
          "\"sliding_window\" is -1");
  refused([&] { nn::DecoderConfig::from_json({{"model_type", "gemma2"}, {"attn_logit_softcapping", -50}}, f); },
          "\"attn_logit_softcapping\" is -50");
}
