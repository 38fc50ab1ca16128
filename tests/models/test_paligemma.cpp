// PaliGemma (Gemma decoder, multi-query attention) and PaliGemma 2 (Gemma 2 decoder: grouped-query
// attention, soft-capping, sandwich norms) against transformers' published modeling code
// (PaliGemmaForConditionalGeneration, SiglipVisionModel, GemmaForCausalLM, Gemma2ForCausalLM and
// generate(), run as published by tests/fixtures/gen/make_paligemma_tiny.py), on tiny random-weight
// models in both checkpoint layouts (the published one and transformers >= 4.52's): the processor's
// pixels and ids, the vision features, the projector, the merged embeddings, the prompt's logits,
// the logits of every greedy step, the greedy and beam (3) ids. Then sessions and bad input.
#include <gtest/gtest.h>

#include <tuple>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/runtime.h"
#include "io/checkpoint.h"
#include "models/paligemma/config.h"
#include "models/paligemma/modeling.h"
#include "models/paligemma/processor.h"
#include "text/sentencepiece.h"

namespace fs = std::filesystem;
using namespace loupe;
using namespace loupe::paligemma;

namespace {

const std::string fx = std::string(LOUPE_FIXTURES_DIR) + "/paligemma";

struct Loaded {
  Config cfg;
  PaliGemma net{nullptr};
};

Loaded load(const std::string& name) {
  Loaded l;
  const std::string dir = fx + "/" + name;
  l.cfg = Config::load(dir);
  l.net = PaliGemma(l.cfg);
  l.net->eval();
  l.net->load(io::Checkpoint::open(dir), dir, torch::kCPU, torch::kFloat32);
  return l;
}

double maxdiff(const torch::Tensor& a, const torch::Tensor& b) {
  EXPECT_EQ(a.sizes(), b.sizes());
  if (a.sizes() != b.sizes()) return 1e30;
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
}

Image image_of(const torch::Tensor& hwc) {
  Image im{static_cast<int>(hwc.size(1)), static_cast<int>(hwc.size(0)), 3, {}};
  auto c = hwc.contiguous();
  im.pixels.assign(c.data_ptr<uint8_t>(), c.data_ptr<uint8_t>() + c.numel());
  return im;
}

std::vector<int64_t> ids_of(const torch::Tensor& t) {
  auto c = t.reshape({-1}).to(torch::kLong).contiguous();
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

class PaliGemmaParity : public ::testing::TestWithParam<std::string> {
 protected:
  std::string kind() const { return GetParam().substr(0, 3); }  // pg1 / pg2
  std::string dir() const { return "tiny-" + GetParam(); }
};

}  // namespace

TEST(PaliGemmaConfig, ReadsBothTinyConfigs) {
  const auto c1 = Config::load(fx + "/tiny-pg1");
  EXPECT_EQ(c1.text.model_type, "gemma");
  EXPECT_EQ(c1.text.num_kv_heads, 1);
  EXPECT_EQ(c1.num_image_tokens, 16);
  EXPECT_EQ(c1.image_height, 32);
  EXPECT_EQ(c1.vision.patch_size, 8);
  EXPECT_EQ(c1.variant(), "paligemma-32");
  const auto c2 = Config::load(fx + "/tiny-pg2");
  EXPECT_EQ(c2.text.model_type, "gemma2");
  EXPECT_EQ(c2.text.num_kv_heads, 2);
  EXPECT_DOUBLE_EQ(c2.text.attn_logit_softcapping, 5.0);
  EXPECT_DOUBLE_EQ(c2.text.final_logit_softcapping, 3.0);
  EXPECT_EQ(c2.variant(), "paligemma2-32");
}

TEST_P(PaliGemmaParity, ProcessorMatchesTransformers) {
  auto ex = io::Checkpoint::open(fx + "/expected-" + kind() + ".safetensors");
  const auto cfg = Config::load(fx + "/" + dir());
  auto tok = text::SentencePieceTokenizer::load_from_dir(fx + "/" + dir());
  const auto pixels = preprocess_image(image_of(ex.load("image_rgb")), cfg, torch::kCPU, torch::kFloat32);
  EXPECT_LT(maxdiff(pixels, ex.load("pixel_values")), 1e-6);
  EXPECT_EQ(prompt_ids(tok, cfg, "caption en"), ids_of(ex.load("input_ids")));
}

TEST_P(PaliGemmaParity, ForwardMatchesTransformers) {
  torch::NoGradGuard ng;
  auto ex = io::Checkpoint::open(fx + "/expected-" + kind() + ".safetensors");
  auto m = load(dir());
  const auto px = ex.load("pixel_values"), ids = ex.load("input_ids");
  const auto vis = m.net->vision_features(px);
  EXPECT_LT(maxdiff(vis, ex.load("vision_features")), 1e-4);
  const auto feats = m.net->multi_modal_projector->forward(vis);
  EXPECT_LT(maxdiff(feats, ex.load("projector_output")), 1e-4);
  EXPECT_LT(maxdiff(m.net->merge(ids, feats), ex.load("merged_embeds")), 1e-5);
  EXPECT_LT(maxdiff(m.net->prompt_logits(ids, px), ex.load("prefill_logits")), 1e-4);
}

TEST_P(PaliGemmaParity, GreedyIdsAndEveryStepsLogitsMatchGenerate) {
  torch::NoGradGuard ng;
  auto ex = io::Checkpoint::open(fx + "/expected-" + kind() + ".safetensors");
  auto m = load(dir());
  const auto want = ids_of(ex.load("greedy_ids"));
  nn::GenerationConfig gen;
  gen.max_new_tokens = static_cast<int>(want.size());
  gen.eos_token_ids = {1};
  gen.pad_token_id = 0;
  auto g = m.net->generate(ex.load("input_ids"), ex.load("pixel_values"), gen, {}, true);
  EXPECT_EQ(g.ids, want);
  const auto steps = ex.load("greedy_step_logits");  // [1, steps, V]
  ASSERT_EQ(static_cast<int64_t>(g.step_logits.size()), steps.size(1));
  for (int64_t s = 0; s < steps.size(1); ++s)
    EXPECT_LT(maxdiff(g.step_logits[s], steps[0][s]), 1e-4) << "step " << s;
}

TEST_P(PaliGemmaParity, BeamSearchMatchesGenerate) {
  torch::NoGradGuard ng;
  auto ex = io::Checkpoint::open(fx + "/expected-" + kind() + ".safetensors");
  auto m = load(dir());
  const auto want = ids_of(ex.load("beam_ids"));
  nn::GenerationConfig gen;
  gen.max_new_tokens = static_cast<int>(want.size());
  gen.num_beams = 3;
  gen.eos_token_ids = {1};
  gen.pad_token_id = 0;
  auto g = m.net->generate(ex.load("input_ids"), ex.load("pixel_values"), gen);
  EXPECT_EQ(g.ids, want);
  EXPECT_NEAR(g.score, ex.load("beam_sequences_scores").item<double>(), 1e-4);
}

INSTANTIATE_TEST_SUITE_P(Tiny, PaliGemmaParity, ::testing::Values("pg1", "pg1-v5", "pg2", "pg2-v5"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string n = info.param;
                           for (auto& c : n)
                             if (!isalnum(static_cast<unsigned char>(c))) c = '_';
                           return n;
                         });

TEST(PaliGemma, BothLayoutsGiveTheSameWeights) {
  for (const char* k : {"pg1", "pg2"}) {
    auto a = load(std::string("tiny-") + k), b = load(std::string("tiny-") + k + "-v5");
    EXPECT_EQ(PaliGemmaImpl::layout_of(io::Checkpoint::open(fx + "/tiny-" + k)), Layout::Published);
    EXPECT_EQ(PaliGemmaImpl::layout_of(io::Checkpoint::open(fx + "/tiny-" + k + "-v5")), Layout::Transformers5);
    auto pa = a.net->named_parameters(), pb = b.net->named_parameters();
    ASSERT_EQ(pa.size(), pb.size());
    for (const auto& p : pa) EXPECT_TRUE(torch::equal(p.value(), pb[p.key()])) << k << " " << p.key();
  }
}

// --- sessions and bad input ---------------------------------------------------------------------

namespace {

struct TempModel {
  fs::path dir;
  explicit TempModel(const std::string& from) {
    dir = fs::temp_directory_path() / ("loupe-pg-" + std::to_string(::getpid()) + "-" + std::to_string(counter()++));
    fs::remove_all(dir);
    fs::copy(fx + "/" + from, dir, fs::copy_options::recursive);
  }
  ~TempModel() { fs::remove_all(dir); }
  static int& counter() {
    static int c = 0;
    return c;
  }
  nlohmann::json config() const {
    std::ifstream f(dir / "config.json");
    return nlohmann::json::parse(f);
  }
  void write_config(const nlohmann::json& j) const { std::ofstream(dir / "config.json") << j.dump(2); }
};

std::string load_error(const std::string& dir) {
  try {
    load(dir);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

std::string config_error(const fs::path& dir) {
  try {
    Config::load(dir.string());
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(PaliGemmaErrors, ConfigProblemsNameTheFileAndKey) {
  {
    TempModel t("tiny-pg1");
    auto j = t.config();
    j["projection_dim"] = 48;
    j["vision_config"]["projection_dim"] = 48;
    t.write_config(j);
    const auto e = config_error(t.dir);
    EXPECT_NE(e.find("projection_dim"), std::string::npos) << e;
    EXPECT_NE(e.find("config.json"), std::string::npos) << e;
  }
  for (const auto& [section, key, value] :
       std::vector<std::tuple<std::string, std::string, nlohmann::json>>{{"vision_config", "num_hidden_layers", -5},
                                                                          {"vision_config", "hidden_size", 4294967328LL},
                                                                          {"", "image_token_index", -1}}) {
    TempModel t("tiny-pg1");  // numbers out of range (issue 19): refused as read, naming file and key
    auto j = t.config();
    (section.empty() ? j : j[section])[key] = value;
    t.write_config(j);
    const auto e = config_error(t.dir);
    EXPECT_NE(e.find("\"" + key + "\" is "), std::string::npos) << e;
    EXPECT_NE(e.find("config.json"), std::string::npos) << e;
  }
  {
    TempModel t("tiny-pg1");
    auto j = t.config();
    j["text_config"]["model_type"] = "llama";
    t.write_config(j);
    const auto e = config_error(t.dir);
    EXPECT_NE(e.find("text_config.model_type"), std::string::npos) << e;
  }
  {
    TempModel t("tiny-pg1");
    auto j = t.config();
    j["vision_config"]["patch_size"] = 7;  // 32 is no multiple of 7
    t.write_config(j);
    const auto e = config_error(t.dir);
    EXPECT_NE(e.find("patch_size"), std::string::npos) << e;
  }
  {
    TempModel t("tiny-pg1");
    auto j = t.config();
    j["image_token_index"] = 99999;
    t.write_config(j);
    const auto e = config_error(t.dir);
    EXPECT_NE(e.find("image_token_index"), std::string::npos) << e;
  }
  {
    TempModel t("tiny-pg1");
    auto j = t.config();
    j["vision_config"]["hidden_size"] = "wide";
    t.write_config(j);
    const auto e = config_error(t.dir);
    EXPECT_NE(e.find("hidden_size"), std::string::npos) << e;
  }
}

TEST(PaliGemmaErrors, WeightsThatDoNotFitNameTheTensor) {
  TempModel t("tiny-pg1");
  auto j = t.config();
  j["vision_config"]["intermediate_size"] = 40;  // the file's fc1 is [48, 32]
  t.write_config(j);
  Config cfg = Config::load(t.dir.string());
  PaliGemma net(cfg);
  try {
    net->load(io::Checkpoint::open(t.dir.string()), t.dir.string(), torch::kCPU, torch::kFloat32);
    FAIL() << "a shape mismatch loaded";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("vision_tower.vision_model.encoder.layers.0.mlp.fc1.weight"), std::string::npos) << m;
  }
}

TEST(PaliGemmaErrors, ImageOfTheWrongSizeIsRefused) {
  torch::NoGradGuard ng;
  auto m = load("tiny-pg1");
  try {
    m.net->vision_features(torch::zeros({1, 3, 40, 40}));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("32"), std::string::npos) << e.what();
  }
}

TEST(PaliGemmaSession, TasksRunThroughTheSessionApi) {
  RuntimeOptions o;
  o.device = "cpu";
  auto rt = Runtime::create(o, {}, LogLevel::Warning);
  auto s = rt->open_session(fx + "/tiny-pg2", "", Precision::FP32);
  EXPECT_EQ(s->model()->family(), "paligemma");
  std::vector<std::string> names;
  for (const auto& t : s->model()->tasks()) names.push_back(t.name);
  EXPECT_EQ(names, (std::vector<std::string>{"caption", "vqa", "ocr", "detect", "segment"}));
  auto ex = io::Checkpoint::open(fx + "/expected-pg2.safetensors");
  const Image im = image_of(ex.load("image_rgb"));
  {
    // caption en: the same greedy ids as generate(), decoded
    Request r;
    r.task = "caption";
    r.images.push_back(im);
    r.ints["max_new_tokens"] = 8;
    auto job = rt->submit_session(s, r, {}, false);
    ASSERT_TRUE(job->wait(600000));
    ASSERT_EQ(job->status(), Status::Ok) << job->message();
    auto res = job->take_result();
    auto tok = text::SentencePieceTokenizer::load_from_dir(fx + "/tiny-pg2");
    std::vector<int64_t> want;
    for (auto id : ids_of(ex.load("greedy_ids")))
      if (id != 1 && id != 0) want.push_back(id);
    EXPECT_EQ(res->text, tok.decode(want));
  }
  {
    Request r;  // vqa without a question: refused at submit, naming the key
    r.task = "vqa";
    r.images.push_back(im);
    try {
      auto job = rt->submit_session(s, r, {}, false);
      ASSERT_TRUE(job->wait(600000));
      EXPECT_NE(job->status(), Status::Ok);
      EXPECT_NE(job->message().find("question"), std::string::npos) << job->message();
    } catch (const Error& e) {
      EXPECT_EQ(e.status(), Status::InvalidArgument) << e.what();
      EXPECT_NE(std::string(e.what()).find("question"), std::string::npos) << e.what();
    }
  }
  {
    Request r;  // detect: boxes parsed from whatever the tiny model writes (maybe none)
    r.task = "detect";
    r.images.push_back(im);
    r.strings["text"] = "cat ; dog";
    r.ints["max_new_tokens"] = 8;
    auto job = rt->submit_session(s, r, {}, false);
    ASSERT_TRUE(job->wait(600000));
    EXPECT_EQ(job->status(), Status::Ok) << job->message();
  }
}

// Without big_vision's mask decoder weights, segment fails at once with an error naming the file and
// where it is published (a copy of the model in a temporary folder: no vae-oid.npz around it).
TEST(PaliGemmaSession, SegmentWithoutTheMaskDecoderNamesTheFile) {
  TempModel t("tiny-pg1");
  RuntimeOptions o;
  o.device = "cpu";
  auto rt = Runtime::create(o, {}, LogLevel::Warning);
  auto s = rt->open_session(t.dir.string(), "", Precision::FP32);
  Request r;
  r.task = "segment";
  r.images.push_back(Image{40, 30, 3, std::vector<uint8_t>(40 * 30 * 3, 128)});
  r.strings["text"] = "cat";
  auto job = rt->submit_session(s, r, {}, false);
  ASSERT_TRUE(job->wait(600000));
  EXPECT_EQ(job->status(), Status::NotFound) << job->message();
  EXPECT_NE(job->message().find("vae-oid.npz"), std::string::npos) << job->message();
  EXPECT_NE(job->message().find("big_vision"), std::string::npos) << job->message();
}

