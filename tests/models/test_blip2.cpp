// BLIP-2 with OPT against transformers' published modeling and processing code
// (Blip2ForConditionalGeneration, Blip2Processor / BlipImageProcessor, OPTForCausalLM and
// generate(), run as published by tests/fixtures/gen/make_blip2_tiny.py) on a tiny random-weight
// model in both prompt layouts (image tokens in the prompt: sharded safetensors; the older
// concatenated layout: pytorch_model.bin): the processor's pixels and ids, the vision tower, the
// Q-Former, the projection, the prompt's logits, the logits of every greedy step, greedy and beam (3)
// ids for a caption, a caption with a prefix and a question. The same for Flan-T5 (the one T5,
// nn::T5Model: T5ForConditionalGeneration run as published): the encoder's output, the decoder's
// logits, greedy and beam ids. Then sessions and bad input.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <tuple>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/runtime.h"
#include "io/checkpoint.h"
#include "models/blip2/config.h"
#include "models/blip2/modeling.h"
#include "models/blip2/processor.h"
#include "text/bpe_tokenizer.h"
#include "text/sentencepiece.h"

namespace fs = std::filesystem;
using namespace loupe;
using namespace loupe::blip2;

namespace {

const std::string fx = std::string(LOUPE_FIXTURES_DIR) + "/blip2";
// logits (|x| up to ~8 on the tiny random models): fp32 rounding through three networks
constexpr double kLogitsTol = 5e-4;
const std::vector<std::pair<std::string, std::string>> kPrompts = {
    {"caption", ""}, {"prefix", "a photo of"}, {"vqa", "Question: what is it? Answer:"}};

struct Loaded {
  Config cfg;
  Blip2 net{nullptr};
};

Loaded load(const std::string& name) {
  Loaded l;
  const std::string dir = fx + "/" + name;
  l.cfg = Config::load(dir);
  l.net = Blip2(l.cfg);
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

io::Checkpoint expected() { return io::Checkpoint::open(fx + "/expected-opt.safetensors"); }

// the prompt ids of `name` in a layout ("_ids" for the current one, "_old_ids" for the older)
std::string ids_key(const std::string& prompt, bool old) { return prompt + (old ? "_old_ids" : "_ids"); }

class Blip2Parity : public ::testing::TestWithParam<std::string> {
 protected:
  bool old() const { return GetParam() == "opt-old"; }
  std::string dir() const { return "tiny-" + GetParam(); }
};

}  // namespace

TEST(Blip2Config, ReadsBothLayouts) {
  const auto c = Config::load(fx + "/tiny-opt");
  EXPECT_EQ(c.layout, PromptLayout::ImageTokens);
  EXPECT_EQ(c.num_query_tokens, 4);
  EXPECT_EQ(c.image_token_id, 380);
  EXPECT_EQ(c.text.model_type, "opt");
  EXPECT_EQ(c.qformer.num_layers, 3);
  EXPECT_EQ(c.qformer.cross_attention_frequency, 2);
  EXPECT_EQ(c.bos_token, "</s>");
  EXPECT_TRUE(c.add_bos);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{14}));  // "\n", from generation_config.json
  EXPECT_EQ(c.pad_token_id, 1);
  EXPECT_EQ(c.image_height, 32);
  EXPECT_NEAR(c.image_mean[0], 0.48145466, 1e-9);
  EXPECT_EQ(c.variant(), "blip2-opt");
  const auto o = Config::load(fx + "/tiny-opt-old");
  EXPECT_EQ(o.layout, PromptLayout::Concatenated);
  EXPECT_EQ(o.image_token_id, -1);
}

TEST_P(Blip2Parity, ProcessorMatchesTransformers) {
  auto ex = expected();
  const auto cfg = Config::load(fx + "/" + dir());
  auto tok = text::BpeTokenizer::load_from_dir(fx + "/" + dir());
  const auto pixels = preprocess_image(image_of(ex.load("image")), cfg, torch::kCPU, torch::kFloat32);
  EXPECT_LT(maxdiff(pixels, ex.load("pixel_values")), 1e-6);
  for (const auto& [name, text] : kPrompts)
    EXPECT_EQ(prompt_ids(cfg, tok.encode(text), tok.token_to_id("</s>"), -1), ids_of(ex.load(ids_key(name, old()))))
        << name;
  EXPECT_EQ(task_prompt("vqa", "what is it?"), "Question: what is it? Answer:");
  EXPECT_EQ(task_prompt("caption", "a photo of"), "a photo of");
}

TEST_P(Blip2Parity, VisionQFormerProjectionAndLogitsMatchTransformers) {
  torch::NoGradGuard ng;
  auto ex = expected();
  auto m = load(dir());
  const auto px = ex.load("pixel_values");
  const auto vis = m.net->vision_features(px);
  EXPECT_LT(maxdiff(vis, ex.load("vision")), 1e-4);
  const auto q = m.net->query_features(vis);
  EXPECT_LT(maxdiff(q, ex.load("qformer")), 1e-4);
  EXPECT_LT(maxdiff(m.net->language_projection(q), ex.load("projected")), 1e-4);
  // both layouts give the language model the same embeddings: the same logits. Logits reach ~8 on
  // these random weights: 5e-4 is ~6e-5 of that, fp32 rounding through vision tower, Q-Former and
  // decoder (oneDNN's inner products here, the BLAS's in the reference)
  for (const auto& [name, text] : kPrompts)
    EXPECT_LT(maxdiff(m.net->prompt_logits(ex.load(ids_key(name, old())), px), ex.load(name + "_logits")), kLogitsTol) << name;
}

TEST_P(Blip2Parity, GreedyIdsAndEveryStepsLogitsMatchGenerate) {
  torch::NoGradGuard ng;
  auto ex = expected();
  auto m = load(dir());
  for (const auto& [name, text] : kPrompts) {
    const auto want = ids_of(ex.load(name + (old() ? "_old_greedy" : "_greedy")));
    nn::GenerationConfig gen;
    gen.max_new_tokens = static_cast<int>(want.size());
    gen.eos_token_ids = m.cfg.eos_token_ids;
    gen.pad_token_id = m.cfg.pad_token_id;
    auto g = m.net->generate(ex.load(ids_key(name, old())), ex.load("pixel_values"), gen, {}, true);
    EXPECT_EQ(g.ids, want) << name;
    const auto steps = ex.load(name + "_steps");  // [N, V]
    ASSERT_EQ(static_cast<int64_t>(g.step_logits.size()), steps.size(0)) << name;
    for (int64_t s = 0; s < steps.size(0); ++s)
      EXPECT_LT(maxdiff(g.step_logits[s], steps[s]), kLogitsTol) << name << " step " << s;
  }
}

TEST_P(Blip2Parity, BeamSearchMatchesGenerate) {
  torch::NoGradGuard ng;
  auto ex = expected();
  auto m = load(dir());
  for (const auto& [name, text] : kPrompts) {
    const auto want = ids_of(ex.load(name + "_beam"));
    nn::GenerationConfig gen;
    gen.max_new_tokens = static_cast<int>(want.size());
    gen.num_beams = 3;
    gen.eos_token_ids = m.cfg.eos_token_ids;
    gen.pad_token_id = m.cfg.pad_token_id;
    auto g = m.net->generate(ex.load(ids_key(name, old())), ex.load("pixel_values"), gen);
    EXPECT_EQ(g.ids, want) << name;
  }
}

INSTANTIATE_TEST_SUITE_P(Tiny, Blip2Parity, ::testing::Values("opt", "opt-old"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string n = info.param;
                           for (auto& c : n)
                             if (!isalnum(static_cast<unsigned char>(c))) c = '_';
                           return n;
                         });

// --- Flan-T5 ------------------------------------------------------------------------------------

namespace {

io::Checkpoint expected_t5() { return io::Checkpoint::open(fx + "/expected-t5.safetensors"); }

class Blip2T5Parity : public ::testing::TestWithParam<std::string> {
 protected:
  bool old() const { return GetParam() == "t5-old"; }
  std::string dir() const { return "tiny-" + GetParam(); }
};

}  // namespace

TEST_P(Blip2T5Parity, ProcessorMatchesTransformers) {
  auto ex = expected_t5();
  const auto cfg = Config::load(fx + "/" + dir());
  EXPECT_TRUE(cfg.is_t5());
  EXPECT_EQ(cfg.variant(), "blip2-flan-t5");
  EXPECT_EQ(cfg.layout, old() ? PromptLayout::Concatenated : PromptLayout::ImageTokens);
  auto tok = text::SentencePieceTokenizer::load_from_dir(fx + "/" + dir());
  const auto pixels = preprocess_image(image_of(ex.load("image")), cfg, torch::kCPU, torch::kFloat32);
  EXPECT_LT(maxdiff(pixels, ex.load("pixel_values")), 1e-6);
  for (const auto& [name, text] : kPrompts)
    EXPECT_EQ(prompt_ids(cfg, tok.encode(text), -1, 1), ids_of(ex.load(ids_key(name, old())))) << name;
}

TEST_P(Blip2T5Parity, EncoderAndDecoderMatchTransformers) {
  torch::NoGradGuard ng;
  auto ex = expected_t5();
  auto m = load(dir());
  const auto px = ex.load("pixel_values");
  const auto vis = m.net->vision_features(px);
  EXPECT_LT(maxdiff(vis, ex.load("vision")), 1e-4);
  const auto q = m.net->query_features(vis);
  EXPECT_LT(maxdiff(q, ex.load("qformer")), 1e-4);
  EXPECT_LT(maxdiff(m.net->language_projection(q), ex.load("projected")), 1e-4);
  for (const auto& [name, text] : kPrompts) {
    const auto ids = ex.load(ids_key(name, old()));
    EXPECT_LT(maxdiff(m.net->encoder_output(ids, px), ex.load(name + "_encoder")), 1e-4) << name;
    // teacher forcing over the decoder start and the greedy ids
    auto dec = torch::cat({torch::zeros({1, 1}, torch::kLong), ex.load(name + "_greedy").to(torch::kLong)}, 1);
    EXPECT_LT(maxdiff(m.net->decoder_logits(ids, px, dec), ex.load(name + "_logits")), kLogitsTol) << name;
  }
}

TEST_P(Blip2T5Parity, GreedyAndBeamMatchGenerate) {
  torch::NoGradGuard ng;
  auto ex = expected_t5();
  auto m = load(dir());
  for (const auto& [name, text] : kPrompts) {
    const auto ids = ex.load(ids_key(name, old()));
    const auto want = ids_of(ex.load(name + (old() ? "_old_greedy" : "_greedy")));
    nn::GenerationConfig gen;
    gen.max_new_tokens = static_cast<int>(want.size());
    gen.eos_token_ids = m.cfg.eos_token_ids;
    gen.pad_token_id = m.cfg.pad_token_id;
    auto g = m.net->generate(ids, ex.load("pixel_values"), gen, {}, true);
    EXPECT_EQ(g.ids, want) << name;
    const auto steps = ex.load(name + "_steps");
    ASSERT_EQ(static_cast<int64_t>(g.step_logits.size()), steps.size(0)) << name;
    for (int64_t s = 0; s < steps.size(0); ++s)
      EXPECT_LT(maxdiff(g.step_logits[s], steps[s]), kLogitsTol) << name << " step " << s;
    const auto beam = ids_of(ex.load(name + "_beam"));
    gen.num_beams = 3;
    gen.max_new_tokens = static_cast<int>(beam.size());
    EXPECT_EQ(m.net->generate(ids, ex.load("pixel_values"), gen).ids, beam) << name;
  }
}

INSTANTIATE_TEST_SUITE_P(Tiny, Blip2T5Parity, ::testing::Values("t5", "t5-old"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string n = info.param;
                           for (auto& c : n)
                             if (!isalnum(static_cast<unsigned char>(c))) c = '_';
                           return n;
                         });

TEST(Blip2, ShardedSafetensorsAndTorchBinGiveTheSameWeights) {
  auto a = load("tiny-opt"), b = load("tiny-opt-old");
  auto pa = a.net->named_parameters(), pb = b.net->named_parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (const auto& p : pa) EXPECT_TRUE(torch::equal(p.value(), pb[p.key()])) << p.key();
}

// --- sessions and bad input ---------------------------------------------------------------------

namespace {

struct TempModel {
  fs::path dir;
  explicit TempModel(const std::string& from) {
    dir = fs::temp_directory_path() / ("loupe-blip2-" + std::to_string(::getpid()) + "-" + std::to_string(counter()++));
    fs::remove_all(dir);
    fs::copy(fx + "/" + from, dir, fs::copy_options::recursive);
  }
  ~TempModel() { fs::remove_all(dir); }
  static int& counter() {
    static int c = 0;
    return c;
  }
  nlohmann::json json(const std::string& name = "config.json") const {
    std::ifstream f(dir / name);
    return nlohmann::json::parse(f);
  }
  void write(const nlohmann::json& j, const std::string& name = "config.json") const {
    std::ofstream(dir / name) << j.dump(2);
  }
};

std::string config_error(const fs::path& dir) {
  try {
    Config::load(dir.string());
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

std::string decoded(const std::string& dir, const std::vector<int64_t>& ids, const std::vector<int64_t>& drop) {
  auto tok = text::BpeTokenizer::load_from_dir(dir);
  std::vector<int64_t> keep;
  for (auto id : ids)
    if (std::find(drop.begin(), drop.end(), id) == drop.end()) keep.push_back(id);
  return tok.decode(keep, true);
}

std::string trim(const std::string& s) {
  const auto a = s.find_first_not_of(" \t\r\n");
  if (a == std::string::npos) return "";
  return s.substr(a, s.find_last_not_of(" \t\r\n") - a + 1);
}

}  // namespace

TEST(Blip2Session, CaptionPrefixAndVqaRunThroughTheSessionApi) {
  RuntimeOptions o;
  o.device = "cpu";
  auto rt = Runtime::create(o, {}, LogLevel::Warning);
  for (const char* folder : {"tiny-opt", "tiny-opt-old"}) {
    SCOPED_TRACE(folder);
    auto s = rt->open_session(fx + "/" + folder, "", Precision::FP32);
    EXPECT_EQ(s->model()->family(), "blip2");
    EXPECT_EQ(s->model()->variant(), "blip2-opt");
    std::vector<std::string> names;
    for (const auto& t : s->model()->tasks()) {
      names.push_back(t.name);
      EXPECT_EQ(t.find("language"), nullptr) << "BLIP-2 writes English only";
      EXPECT_EQ(t.find("num_beams")->def, 1) << "generation_config.json's default";
    }
    EXPECT_EQ(names, (std::vector<std::string>{"caption", "vqa"}));
    auto ex = expected();
    const Image im = image_of(ex.load("image"));
    const std::vector<int64_t> drop = {14, 1};  // eos ("\n") and pad
    for (const auto& [name, task, text] : std::vector<std::tuple<std::string, std::string, std::string>>{
             {"caption", "caption", ""}, {"prefix", "caption", "a photo of"}, {"vqa", "vqa", "what is it?"}}) {
      Request r;
      r.task = task;
      r.images.push_back(im);
      r.ints["max_new_tokens"] = 8;
      if (task == "vqa") r.strings["question"] = text;
      if (name == "prefix") r.strings["prefix"] = text;
      auto job = rt->submit_session(s, r, {}, false);
      ASSERT_TRUE(job->wait(600000));
      ASSERT_EQ(job->status(), Status::Ok) << job->message();
      auto res = job->take_result();
      const std::string cont = decoded(fx + "/" + folder, ids_of(ex.load(name + "_greedy")), drop);
      // a caption reads with its prefix; an answer is the continuation alone
      EXPECT_EQ(res->text, trim(task == "caption" ? text + cont : cont)) << name;
    }
    {
      Request r;  // vqa without a question: refused, naming the key
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
  }
}

TEST(Blip2Session, FlanT5CaptionsAndAnswers) {
  RuntimeOptions o;
  o.device = "cpu";
  auto rt = Runtime::create(o, {}, LogLevel::Warning);
  auto ex = expected_t5();
  auto tok = text::SentencePieceTokenizer::load_from_dir(fx + "/tiny-t5");
  for (const char* folder : {"tiny-t5", "tiny-t5-old"}) {
    SCOPED_TRACE(folder);
    auto s = rt->open_session(fx + "/" + folder, "", Precision::FP32);
    EXPECT_EQ(s->model()->family(), "blip2");
    EXPECT_EQ(s->model()->variant(), "blip2-flan-t5");
    for (const auto& [name, task, text] : std::vector<std::tuple<std::string, std::string, std::string>>{
             {"caption", "caption", ""}, {"prefix", "caption", "a photo of"}, {"vqa", "vqa", "what is it?"}}) {
      Request r;
      r.task = task;
      r.images.push_back(image_of(ex.load("image")));
      r.ints["max_new_tokens"] = 8;
      if (task == "vqa") r.strings["question"] = text;
      if (name == "prefix") r.strings["prefix"] = text;
      auto job = rt->submit_session(s, r, {}, false);
      ASSERT_TRUE(job->wait(600000));
      ASSERT_EQ(job->status(), Status::Ok) << job->message();
      // the decoder's text alone (the prompt went to the encoder); eos, pad, extra ids and <image> skipped
      std::vector<int64_t> keep;
      for (auto id : ids_of(ex.load(name + "_greedy")))
        if (id > 1 && id < static_cast<int64_t>(tok.vocab_size())) keep.push_back(id);
      EXPECT_EQ(job->take_result()->text, trim(tok.decode(keep))) << name;
    }
  }
}

TEST(Blip2, ShardedTorchBinLoads) {
  // pytorch_model.bin.index.json with two shards (each a copy of the whole file: a shard may hold
  // more than the index says) instead of pytorch_model.bin
  TempModel t("tiny-opt-old");
  fs::rename(t.dir / "pytorch_model.bin", t.dir / "pytorch_model-00001-of-00002.bin");
  fs::copy_file(t.dir / "pytorch_model-00001-of-00002.bin", t.dir / "pytorch_model-00002-of-00002.bin");
  nlohmann::json wm = nlohmann::json::object();
  auto ref = load("tiny-opt-old");
  int k = 0;
  for (const auto& p : ref.net->named_parameters())
    wm[p.key()] = (k++ % 2) ? "pytorch_model-00002-of-00002.bin" : "pytorch_model-00001-of-00002.bin";
  t.write({{"metadata", nlohmann::json::object()}, {"weight_map", wm}}, "pytorch_model.bin.index.json");
  RuntimeOptions o;
  o.device = "cpu";
  auto rt = Runtime::create(o, {}, LogLevel::Warning);
  auto s = rt->open_session(t.dir.string(), "", Precision::FP32);
  EXPECT_EQ(s->model()->family(), "blip2");
  // a shard index naming a file outside the folder is refused
  wm[wm.begin().key()] = "../elsewhere.bin";
  t.write({{"metadata", nlohmann::json::object()}, {"weight_map", wm}}, "pytorch_model.bin.index.json");
  try {
    rt->open_session(t.dir.string(), "", Precision::FP32);
    FAIL() << "a shard outside the folder was opened";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("outside the folder"), std::string::npos) << e.what();
  }
}

TEST(Blip2Errors, ConfigProblemsNameTheFileAndKey) {
  for (const auto& [section, key, value] : std::vector<std::tuple<std::string, std::string, nlohmann::json>>{
           {"vision_config", "num_hidden_layers", -5},
           {"vision_config", "hidden_size", 4294967328LL},
           {"qformer_config", "cross_attention_frequency", 0},
           {"", "num_query_tokens", -1},
           {"", "image_token_index", -1}}) {
    TempModel t("tiny-opt");  // numbers out of range: refused as read, naming file and key
    auto j = t.json();
    (section.empty() ? j : j[section])[key] = value;
    t.write(j);
    const auto e = config_error(t.dir);
    EXPECT_NE(e.find("\"" + key + "\" is "), std::string::npos) << e;
    EXPECT_NE(e.find("config.json"), std::string::npos) << e;
  }
  {
    TempModel t("tiny-opt");
    auto j = t.json();
    j["text_config"]["model_type"] = "llama";
    t.write(j);
    EXPECT_NE(config_error(t.dir).find("text_config.model_type"), std::string::npos);
  }
  {
    TempModel t("tiny-opt");
    auto j = t.json();
    j["image_token_index"] = 99999;
    t.write(j);
    const auto e = config_error(t.dir);
    EXPECT_NE(e.find("image_token_index"), std::string::npos) << e;
  }
  {
    TempModel t("tiny-opt");
    auto j = t.json();
    j["qformer_config"]["encoder_hidden_size"] = 48;
    t.write(j);
    EXPECT_NE(config_error(t.dir).find("encoder_hidden_size"), std::string::npos);
  }
  {
    TempModel t("tiny-opt");
    auto j = t.json();
    j["vision_config"]["patch_size"] = 7;  // 32 is no multiple of 7
    t.write(j);
    EXPECT_NE(config_error(t.dir).find("patch_size"), std::string::npos);
  }
  {
    TempModel t("tiny-opt");
    auto j = t.json();
    j["qformer_config"]["hidden_size"] = "wide";
    t.write(j);
    EXPECT_NE(config_error(t.dir).find("hidden_size"), std::string::npos);
  }
  {
    TempModel t("tiny-opt");  // the processor expands 8 image tokens, the model has 4 queries
    auto p = t.json("processor_config.json");
    p["num_query_tokens"] = 8;
    t.write(p, "processor_config.json");
    const auto e = config_error(t.dir);
    EXPECT_NE(e.find("processor_config.json"), std::string::npos) << e;
    EXPECT_NE(e.find("num_query_tokens"), std::string::npos) << e;
  }
  {
    TempModel t("tiny-opt");
    auto g = t.json("generation_config.json");
    g["eos_token_id"] = 100000;
    t.write(g, "generation_config.json");
    EXPECT_NE(config_error(t.dir).find("eos_token_id"), std::string::npos);
  }
  {
    TempModel t("tiny-opt");
    auto p = t.json("preprocessor_config.json");
    p["image_std"] = {0.5, 0, 0.5};
    t.write(p, "preprocessor_config.json");
    const auto e = config_error(t.dir);
    EXPECT_NE(e.find("image_std"), std::string::npos) << e;
    EXPECT_NE(e.find("preprocessor_config.json"), std::string::npos) << e;
  }
}

TEST(Blip2Errors, WeightsThatDoNotFitNameTheTensor) {
  TempModel t("tiny-opt");
  auto j = t.json();
  j["qformer_config"]["intermediate_size"] = 48;  // the file's intermediate_query.dense is [40, 32]
  t.write(j);
  Config cfg = Config::load(t.dir.string());
  Blip2 net(cfg);
  try {
    net->load(io::Checkpoint::open(t.dir.string()), t.dir.string(), torch::kCPU, torch::kFloat32);
    FAIL() << "a shape mismatch loaded";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("qformer.encoder.layer.0.intermediate_query.dense.weight"), std::string::npos) << m;
  }
}

TEST(Blip2Errors, ImageOfTheWrongSizeIsRefused) {
  torch::NoGradGuard ng;
  auto m = load("tiny-opt");
  try {
    m.net->vision_features(torch::zeros({1, 3, 40, 40}));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("32"), std::string::npos) << e.what();
  }
}
