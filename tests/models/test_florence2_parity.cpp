// Florence-2 against its references, on tiny-original's weights (tiny and tiny-original hold the
// same weights: test_florence2.cpp OriginalLayoutGivesTheSameModel; both layouts are checked):
// - the original remote code of the first releases (modeling_florence2.py: DaViT, position
//   embeddings, projection, and the BART encoder/decoder), run by
//   tests/fixtures/gen/florence2_original_reference.py;
// - decoding against transformers' generate() semantics: greedy and beam search (early stopping
//   false / true / "never", length penalties, forced BOS, n-gram sizes, the length limit) run by
//   tests/fixtures/gen/florence2_generate_reference.py on the original code's decoder. Those use
//   the reference's encoder states, so only decoding is under test there.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <vector>

#include "core/error.h"
#include "io/checkpoint.h"
#include "io/state_dict.h"
#include "models/florence2/generate.h"
#include "models/florence2/modeling.h"

using namespace loupe;
using namespace loupe::florence2;

namespace {
const std::string fx = std::string(LOUPE_FIXTURES_DIR) + "/florence2";
Florence2 load_tiny_net() {
  Florence2 net(Config::load(fx + "/tiny"));
  net->eval();
  io::BindOptions o;
  o.strict = false;  // the tiny checkpoint stores tied embeddings once
  io::bind(*net, io::Checkpoint::open(fx + "/tiny"), o);
  return net;
}
EarlyStopping early_stopping(const nlohmann::json& v) {
  if (v.is_string()) return EarlyStopping::Never;
  return v.get<bool>() ? EarlyStopping::AllFinished : EarlyStopping::Heuristic;
}
}  // namespace

TEST(Florence2Parity, VisionFeaturesMatchTheOriginalCode) {
  torch::NoGradGuard ng;
  auto ref = io::Checkpoint::open(fx + "/tiny-original-reference.safetensors");
  auto net = load_tiny_net();
  const auto feats = net->image_features(ref.load("pixel_values"));
  const auto want = ref.load("image_features");
  ASSERT_EQ(feats.sizes(), want.sizes());
  // fp32 on CPU: 1e-4 absolute (features are O(1) after the projection's LayerNorm)
  EXPECT_LT((feats - want).abs().max().item<double>(), 1e-4);
}

// The encoder on [image features, prompt] and the decoder step by step with its KV cache, against
// the original code's teacher-forced logits at every position.
TEST(Florence2Parity, EncoderAndDecoderMatchTheOriginalCode) {
  torch::NoGradGuard ng;
  auto ref = io::Checkpoint::open(fx + "/tiny-original-reference.safetensors");
  auto net = load_tiny_net();
  const auto feats = ref.load("image_features");
  const auto text = ref.load("input_ids").to(torch::kLong);
  const int64_t B = text.size(0), n_img = feats.size(1);
  auto ids = torch::cat({torch::full({B, n_img}, net->cfg.image_token_id, torch::kLong), text}, 1);
  const auto enc = net->encode(ids, feats);
  // fp32 on CPU: 1e-4 absolute
  EXPECT_LT((enc - ref.load("encoder_last_hidden_state")).abs().max().item<double>(), 1e-4);
  const auto dec_ids = ref.load("decoder_input_ids").to(torch::kLong);
  const auto want = ref.load("decoder_logits");
  std::vector<KV> self_cache, cross_cache;
  for (int64_t t = 0; t < dec_ids.size(1); ++t) {
    const auto logits = net->decode(dec_ids.slice(1, t, t + 1), enc, self_cache, cross_cache, t).select(1, 0);
    EXPECT_LT((logits - want.select(1, t)).abs().max().item<double>(), 1e-4) << "position " << t;
  }
}

TEST(Florence2Parity, GeneratedIdsMatchTransformersGenerate) {
  torch::NoGradGuard ng;
  std::ifstream f(fx + "/generate-reference.json");
  ASSERT_TRUE(f) << "missing generate-reference.json";
  const auto cases = nlohmann::json::parse(f)["cases"];
  ASSERT_GE(cases.size(), 7u);
  auto net = load_tiny_net();
  auto ref = io::Checkpoint::open(fx + "/tiny-original-reference.safetensors");
  const auto enc = ref.load("encoder_last_hidden_state");
  int finished_early = 0;
  for (const auto& c : cases) {
    const std::string name = c["name"];
    // The case's EOS stand-in (a random tiny model rarely emits token 2); forced EOS follows it.
    net->cfg.text.eos_token_id = net->cfg.text.forced_eos_token_id = c["eos_token_id"].get<int>();
    net->cfg.text.forced_bos_token_id = c.contains("forced_bos_token_id") ? c["forced_bos_token_id"].get<int>() : -1;
    GenerateOptions o;
    o.num_beams = c["num_beams"];
    o.max_new_tokens = c["max_new_tokens"];
    o.no_repeat_ngram_size = c["no_repeat_ngram_size"];
    o.length_penalty = c["length_penalty"];
    o.early_stopping = early_stopping(c["early_stopping"]);
    for (int i = 0; i < 2; ++i) {
      const auto want = c["expected"][i].get<std::vector<int64_t>>();
      o.static_cache = false;
      EXPECT_EQ(generate(*net, enc.slice(0, i, i + 1), o), want) << name << ", image " << i;
      o.static_cache = true;  // the fixed-shape decoder (CUDA graphs' path) gives the same ids
      EXPECT_EQ(generate(*net, enc.slice(0, i, i + 1), o), want) << name << ", image " << i << ", static cache";
      o.static_cache = false;
      if (static_cast<int>(want.size()) - 1 < o.max_new_tokens) ++finished_early;
    }
    if (o.num_beams == 1) {  // the batched greedy path gives the same rows, with either decoder
      for (bool fixed : {false, true}) {
        o.static_cache = fixed;
        const auto rows = generate_greedy_batch(*net, enc, o);
        for (int i = 0; i < 2; ++i)
          EXPECT_EQ(rows[i], c["expected"][i].get<std::vector<int64_t>>()) << name << " batched, image " << i << ", static " << fixed;
      }
      o.static_cache = false;
    }
  }
  EXPECT_GE(finished_early, 8);  // the cases exercise EOS before the limit, not only the limit
}

// Generation settings come from generation_config.json when present, else from the text config,
// with transformers' meanings of early_stopping (false / true / "never"); a bad value names the file.
TEST(Florence2Config, GenerationSettingsFollowTransformers) {
  namespace fs = std::filesystem;
  const auto dir = fs::temp_directory_path() / ("loupe-fl2-gen-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  fs::copy_file(fx + "/tiny/config.json", dir / "config.json", fs::copy_options::overwrite_existing);
  EXPECT_EQ(Config::load(dir.string()).early_stopping, EarlyStopping::Heuristic);  // GenerationConfig default
  auto write = [&](const std::string& text) { std::ofstream(dir / "generation_config.json") << text; };
  write(R"({"num_beams": 4, "early_stopping": "never", "length_penalty": 2.0, "no_repeat_ngram_size": 2})");
  auto c = Config::load(dir.string());
  EXPECT_EQ(c.early_stopping, EarlyStopping::Never);
  EXPECT_EQ(c.num_beams, 4);
  EXPECT_EQ(c.no_repeat_ngram_size, 2);
  EXPECT_DOUBLE_EQ(c.length_penalty, 2.0);
  write(R"({"early_stopping": true})");
  EXPECT_EQ(Config::load(dir.string()).early_stopping, EarlyStopping::AllFinished);
  write(R"({"early_stopping": "sometimes"})");
  try {
    Config::load(dir.string());
    ADD_FAILURE() << "accepted early_stopping \"sometimes\"";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), Status::BadModel);
    EXPECT_NE(std::string(e.what()).find("generation_config.json: early_stopping"), std::string::npos) << e.what();
  }
  fs::remove_all(dir);
}

// Against the real transformers package: tests/fixtures/florence2/tiny-expected.safetensors is made
// on the GPU machine by tests/fixtures/gen/florence2_reference.py (bench/run_on_device.sh) from the
// tiny checkpoint; until it is committed this test is skipped. fp32 on CPU: 1e-4 absolute.
TEST(Florence2Parity, MatchesTransformersWhenItsFixtureIsPresent) {
  const std::string path = fx + "/tiny-expected.safetensors";
  if (!std::filesystem::exists(path)) GTEST_SKIP() << path << " is made on the GPU machine (florence2_reference.py)";
  torch::NoGradGuard ng;
  auto ref = io::Checkpoint::open(path);
  auto net = load_tiny_net();
  const auto feats = net->image_features(ref.load("pixel_values"));
  EXPECT_LT((feats - ref.load("image_features")).abs().max().item<double>(), 1e-4);
  const auto enc = net->encode(ref.load("input_ids").to(torch::kLong), feats);
  EXPECT_LT((enc - ref.load("encoder_last_hidden_state")).abs().max().item<double>(), 1e-4);
  std::vector<KV> self_cache, cross_cache;
  const auto start = torch::full({1, 1}, net->cfg.text.decoder_start_token_id, torch::kLong);
  const auto logits = net->decode(start, enc, self_cache, cross_cache, 0).select(1, 0);
  EXPECT_LT((logits - ref.load("first_step_logits")).abs().max().item<double>(), 1e-4);
  auto ids = [](const torch::Tensor& t) {
    const auto c = t.to(torch::kLong).flatten().contiguous();
    return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
  };
  GenerateOptions o;  // as florence2_reference.py calls generate(): 20 new tokens
  o.max_new_tokens = 20;
  o.early_stopping = net->cfg.early_stopping;
  o.length_penalty = net->cfg.length_penalty;
  o.num_beams = 1;
  o.no_repeat_ngram_size = 0;  // greedy without the n-gram rule (not passed there)
  EXPECT_EQ(generate(*net, enc, o), ids(ref.load("greedy_ids")));
  o.num_beams = 3;
  o.no_repeat_ngram_size = 3;
  EXPECT_EQ(generate(*net, enc, o), ids(ref.load("beam_ids")));
}
