// Parity of nn/t5 (one T5 for BLIP-2's Flan-T5 and FLUX's T5-XXL encoder) with transformers'
// T5ForConditionalGeneration / T5EncoderModel and generate() (4.46, run as published by
// tests/fixtures/gen/make_t5_tiny.py): a v1.1-style gated-gelu model with an untied head and more
// decoder than encoder layers, and a v1.0-style relu model with tied embeddings, each in the newer
// layout (shared.weight only) and the older one (every tied copy saved); encoder states with a
// padded batch, without a mask, and beyond relative_attention_max_distance; decoder logits by teacher
// forcing and per cached step; greedy and beam-3 ids and the beam score; the encoder alone from an
// encoder-only file; T5Tokenizer's ids (with the appended </s>) on the Unigram fixture model. Then
// the errors a bad config or checkpoint gives. fp32 on the CPU; tolerances next to the assertions.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <unistd.h>

#include "core/error.h"
#include "io/checkpoint.h"
#include "io/config.h"
#include "io/safetensors.h"
#include "io/state_dict.h"
#include "nn/generation.h"
#include "nn/t5.h"
#include "text/sentencepiece.h"

using namespace loupe;
namespace fs = std::filesystem;

namespace {

const std::string kFix = std::string(LOUPE_FIXTURES_DIR) + "/";
const std::string kDir = kFix + "t5/";

float maxdiff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kFloat32) - b.to(torch::kFloat32)).abs().max().item<float>();
}
float maxabs(const torch::Tensor& a) { return a.abs().max().item<float>(); }

std::vector<int64_t> row(const torch::Tensor& t) {
  const auto c = t.reshape({-1}).to(torch::kLong).contiguous();
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

std::vector<int64_t> padded(std::vector<int64_t> ids, size_t n, int64_t pad) {
  ids.resize(std::max(n, ids.size()), pad);
  return ids;
}

nn::T5Config config(const std::string& kind) {
  const std::string path = kDir + kind + "/config.json";
  return nn::T5Config::from_json(io::read_json_file(path), path);
}

// The model of `kind` bound from `file` (relative to kDir), aliasing the tied embedding when the file
// holds only a copy.
nn::T5Model load(const std::string& kind, const std::string& file, bool with_decoder = true) {
  auto model = nn::T5Model(config(kind), with_decoder);
  model->eval();
  auto ckpt = io::Checkpoint::open(kDir + file);
  if (!ckpt.has("shared.weight"))
    for (const auto& n : nn::t5_shared_aliases())
      if (ckpt.has(n)) {
        ckpt.alias("shared.weight", n);
        break;
      }
  const auto report = io::bind(*model, ckpt);
  EXPECT_TRUE(report.ok()) << report.describe(file);
  return model;
}

struct Expected {
  io::Checkpoint ckpt;
  explicit Expected(const std::string& kind) : ckpt(io::Checkpoint::open(kDir + "expected-" + kind + ".safetensors")) {}
  torch::Tensor operator[](const std::string& name) const { return ckpt.load(name); }
};

// Relative tolerance for fp32 against torch 1.13's eager T5 (different BLAS / oneDNN summation order).
void expect_close(const torch::Tensor& got, const torch::Tensor& want, const std::string& what, float rel = 2e-5f) {
  ASSERT_EQ(got.sizes(), want.sizes()) << what;
  const float tol = rel * std::max(1.0f, maxabs(want));
  EXPECT_LT(maxdiff(got, want), tol) << what << " (max |want| " << maxabs(want) << ")";
}

}  // namespace

// kind ("gated" / "relu"), file
class T5Parity : public ::testing::TestWithParam<std::pair<std::string, std::string>> {};

TEST_P(T5Parity, EncoderDecoderAndGenerationMatchTransformers) {
  torch::NoGradGuard ng;
  const auto& [kind, file] = GetParam();
  auto m = load(kind, file);
  const Expected ex(kind);
  const auto ids = ex["input_ids"], mask = ex["attention_mask"];

  // encoder: padded batch with its mask, the same ids without one, a sequence past max_distance
  const auto enc = m->encode(ids, mask);
  expect_close(enc, ex["encoder_hidden"], "encoder_hidden");
  expect_close(m->encode(ids), ex["encoder_hidden_nomask"], "encoder_hidden_nomask");
  expect_close(m->encode(ex["long_ids"]), ex["long_hidden"], "long_hidden");

  // decoder: teacher forcing, then one token at a time through the cache
  const auto dec = ex["decoder_input_ids"];
  // teacher-forced logits: many rows per product, summed in another order than the reference's on
  // some processors (AMD EPYC here: 3.6e-5 relative; Intel Xeon: under 2e-5)
  expect_close(m->forward(ids, mask, dec), ex["logits"], "logits", 5e-5f);
  auto cache = m->make_cache(enc, mask);
  std::vector<torch::Tensor> steps;
  for (int64_t t = 0; t < dec.size(1); ++t) steps.push_back(m->decode(dec.narrow(1, t, 1), cache).select(1, 0));
  // per cached step: the same products over one row at a time; an -O1 AddressSanitizer build sums
  // them in yet another order (CI: 2.7e-5 relative on the older layouts)
  expect_close(torch::stack(steps, 1), ex["step_logits"], "step_logits", 5e-5f);

  // greedy on the padded batch (finished rows padded with pad 0 as transformers does)
  const auto& cfg = m->cfg;
  {
    auto c = m->make_cache(enc, mask);
    auto st = nn::t5_stepper(m, c);
    auto g = nn::t5_generation_defaults(cfg);
    g.max_new_tokens = 8;
    const auto res = nn::generate(st, torch::full({2, 1}, cfg.decoder_start_token_id, torch::kLong), g);
    const auto want = ex["greedy_ids"];
    for (int64_t r = 0; r < 2; ++r)
      EXPECT_EQ(padded(res.ids[static_cast<size_t>(r)], 8, cfg.pad_token_id), row(want[r])) << "greedy row " << r;
  }
  // beam search, 3 beams, row 0
  {
    auto c = m->make_cache(enc.narrow(0, 0, 1), mask.narrow(0, 0, 1));
    auto st = nn::t5_stepper(m, c);
    auto g = nn::t5_generation_defaults(cfg);
    g.max_new_tokens = 8;
    g.num_beams = 3;
    const auto res = nn::generate(st, torch::full({1, 1}, cfg.decoder_start_token_id, torch::kLong), g);
    EXPECT_EQ(padded(res.ids.front(), 8, cfg.pad_token_id), row(ex["beam_ids"]));
    ASSERT_EQ(res.scores.size(), 1u);
    EXPECT_NEAR(res.scores.front(), ex["beam_score"].item<float>(), 1e-4);  // a log-prob sum / length
  }
}

INSTANTIATE_TEST_SUITE_P(Layouts, T5Parity,
                         ::testing::Values(std::make_pair(std::string("gated"), std::string("gated/model.safetensors")),
                                           std::make_pair(std::string("gated"), std::string("gated-old.safetensors")),
                                           std::make_pair(std::string("relu"), std::string("relu/model.safetensors")),
                                           std::make_pair(std::string("relu"), std::string("relu-old.safetensors"))),
                         [](const auto& info) {
                           return info.param.first + (info.param.second.find("-old") != std::string::npos ? "_old" : "_new");
                         });

TEST(T5, EncoderAloneBindsAnEncoderOnlyFileAndAFullCheckpoint) {
  torch::NoGradGuard ng;
  const Expected ex("gated");
  const auto ids = ex["input_ids"], mask = ex["attention_mask"];
  auto enc_only = load("gated", "gated-encoder.safetensors", false);
  EXPECT_FALSE(enc_only->has_decoder());
  for (const auto& p : enc_only->named_parameters()) EXPECT_EQ(p.key().rfind("decoder.", 0), std::string::npos) << p.key();
  expect_close(enc_only->encode(ids, mask), ex["encoder_only_hidden"], "encoder_only_hidden");
  // the encoder of a full checkpoint: decoder.* and lm_head are unexpected, not an error
  auto from_full = load("gated", "gated-old.safetensors", false);
  expect_close(from_full->encode(ids, mask), ex["encoder_hidden"], "encoder_hidden (encoder-only model)");
  auto cache_fails = [&] { enc_only->make_cache(enc_only->encode(ids)); };
  EXPECT_THROW(cache_fails(), Error);
}

TEST(T5, Bf16RunsAndFp16KeepsWoInFp32) {
  torch::NoGradGuard ng;
  const Expected ex("gated");
  auto m = load("gated", "gated/model.safetensors");
  m->to_dtype(torch::kBFloat16);
  EXPECT_EQ(m->dtype(), torch::kBFloat16);
  for (const auto& p : m->named_parameters()) EXPECT_EQ(p.value().scalar_type(), torch::kBFloat16) << p.key();
  const auto enc = m->encode(ex["input_ids"], ex["attention_mask"]);
  EXPECT_EQ(enc.scalar_type(), torch::kBFloat16);
  EXPECT_TRUE(torch::isfinite(enc.to(torch::kFloat32)).all().item<bool>());
  // A sanity bound only: bf16 keeps 8 bits, and this tiny model's random weights (3 / sqrt(fan-in))
  // amplify rounding through two layers (measured: 0.29 of 3.07 here).
  EXPECT_LT(maxdiff(enc, ex["encoder_hidden"]), 0.2f * maxabs(ex["encoder_hidden"]));
  // fp16 as from_pretrained(torch_dtype=float16) leaves T5: every "wo" in fp32 (_keep_in_fp32_modules).
  // (fp16 products do not run on the CPU in libtorch 1.13: the fp16 forward is for the GPU run.)
  m->to_dtype(torch::kHalf);
  EXPECT_EQ(m->dtype(), torch::kHalf);
  for (const auto& p : m->named_parameters()) {
    const bool wo = p.key().find(".wo.") != std::string::npos;
    EXPECT_EQ(p.value().scalar_type(), wo ? torch::kFloat32 : torch::kHalf) << p.key();
  }
}

TEST(T5, RelativePositionBucketsMatchTransformers) {
  // transformers' T5Attention._relative_position_bucket at T5's defaults (32 buckets, 128) over
  // relative positions -300..300 (written by make_t5_tiny.py)
  const Expected ex("gated");
  const auto rel = ex["bucket_relative"];
  EXPECT_EQ(row(nn::t5_relative_position_bucket(rel, true, 32, 128)), row(ex["bucket_bidirectional"]));
  EXPECT_EQ(row(nn::t5_relative_position_bucket(rel, false, 32, 128)), row(ex["bucket_causal"]));
}

TEST(T5Tokenizer, IdsEqualTransformersT5TokenizerWithEos) {
  std::ifstream f(kDir + "tokenizer.json");
  ASSERT_TRUE(f.good());
  const auto j = nlohmann::json::parse(f);
  std::vector<text::SentencePieceTokenizer> toks;
  toks.push_back(text::SentencePieceTokenizer::from_model_file(kFix + j.at("model").get<std::string>()));
  toks.push_back(text::SentencePieceTokenizer::from_tokenizer_json(kFix + "text/spm/unigram.tokenizer.json"));
  ASSERT_GE(j.at("cases").size(), 40u);
  for (const auto& tok : toks) {
    EXPECT_EQ(tok.eos_id(), 1);
    for (const auto& c : j.at("cases")) {
      auto ids = tok.encode(c.at("text").get<std::string>());
      ids.push_back(tok.eos_id());  // T5Tokenizer appends </s>
      EXPECT_EQ(ids, c.at("ids").get<std::vector<int64_t>>()) << "text: " << c.at("text");
      EXPECT_EQ(text::encode_t5(tok, c.at("text").get<std::string>()), c.at("ids").get<std::vector<int64_t>>());
    }
    // padding="max_length", truncation=True (FluxPipeline's call)
    ASSERT_GE(j.at("max_length").size(), 5u);
    for (const auto& c : j.at("max_length"))
      EXPECT_EQ(text::encode_t5(tok, c.at("text").get<std::string>(), c.at("max_length").get<int64_t>(), true),
                c.at("ids").get<std::vector<int64_t>>())
          << "text: " << c.at("text");
  }
}

TEST(T5Tokenizer, LoadFromDirFindsSpieceModel) {
  // T5's folders (google/flan-t5-*, FLUX's tokenizer_2/) ship spiece.model, not tokenizer.model
  const auto dir = fs::temp_directory_path() / ("loupe-test-t5-spiece-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  fs::copy_file(kFix + "text/spm/unigram.model", dir / "spiece.model", fs::copy_options::overwrite_existing);
  const auto tok = text::SentencePieceTokenizer::load_from_dir(dir.string());
  const auto want = text::SentencePieceTokenizer::from_model_file(kFix + "text/spm/unigram.model");
  fs::remove_all(dir);
  EXPECT_EQ(tok.backend(), text::SentencePieceTokenizer::Backend::Library);
  EXPECT_EQ(text::encode_t5(tok, "A photo of a cat"), text::encode_t5(want, "A photo of a cat"));
}

// ---------------------------------------------------------------- bad input

namespace {

nlohmann::json good_config() { return io::read_json_file(kDir + "gated/config.json"); }

std::string error_of(const std::function<void()>& fn, Status* status = nullptr) {
  try {
    fn();
  } catch (const Error& e) {
    if (status) *status = e.status();
    return e.what();
  }
  return "";
}

}  // namespace

TEST(T5Errors, ConfigNumbersOutOfRangeNameTheFileAndKey) {
  for (const auto& [key, value] : std::vector<std::pair<std::string, nlohmann::json>>{
           {"num_layers", -5}, {"num_heads", 0}, {"d_model", 0}, {"num_decoder_layers", -1},
           {"relative_attention_num_buckets", 2}, {"vocab_size", 1e12}, {"d_kv", 2.5}, {"num_heads", "8"}}) {
    auto j = good_config();
    j[key] = value;
    Status st = Status::Ok;
    const auto msg = error_of([&] { nn::T5Config::from_json(j, "/x/t5/config.json"); }, &st);
    EXPECT_EQ(st, Status::BadModel) << key << " = " << value << ": " << msg;
    EXPECT_NE(msg.find("/x/t5/config.json"), std::string::npos) << msg;
    EXPECT_NE(msg.find(key), std::string::npos) << msg;
  }
  {
    auto j = good_config();
    j["feed_forward_proj"] = "gated-gelu-x";
    Status st = Status::Ok;
    const auto msg = error_of([&] { nn::T5Config::from_json(j, "c.json"); }, &st);
    EXPECT_EQ(st, Status::BadModel) << msg;
    EXPECT_NE(msg.find("feed_forward_proj"), std::string::npos) << msg;
  }
  {
    auto j = good_config();
    j["feed_forward_proj"] = "gated-tanh";
    Status st = Status::Ok;
    const auto msg = error_of([&] { nn::T5Config::from_json(j, "c.json"); }, &st);
    EXPECT_EQ(st, Status::Unsupported) << msg;
    EXPECT_NE(msg.find("tanh"), std::string::npos) << msg;
  }
  {
    auto j = good_config();
    j["relative_attention_max_distance"] = 3;  // must exceed half the 8 buckets
    const auto msg = error_of([&] { nn::T5Config::from_json(j, "c.json"); });
    EXPECT_NE(msg.find("relative_attention_max_distance"), std::string::npos) << msg;
  }
  // the variants a published config can say
  auto j = good_config();
  j["feed_forward_proj"] = "gated-silu";
  EXPECT_EQ(nn::T5Config::from_json(j, "c.json").dense_act_fn, "silu");
  j.erase("num_decoder_layers");
  j.erase("decoder_start_token_id");
  const auto c = nn::T5Config::from_json(j, "c.json");
  EXPECT_EQ(c.num_decoder_layers, c.num_layers);
  EXPECT_EQ(c.decoder_start_token_id, c.pad_token_id);
  EXPECT_TRUE(nn::T5Config::from_json(good_config(), "c.json").is_gated_act);
  EXPECT_EQ(nn::T5Config::from_json(good_config(), "c.json").dense_act_fn, "gelu_new");
}

TEST(T5Errors, ShapeMismatchNamesTheTensorAndShapes) {
  auto j = good_config();
  j["d_ff"] = 64;  // the checkpoint's MLPs are 48 wide
  auto m = nn::T5Model(nn::T5Config::from_json(j, "c.json"), true);
  const auto ckpt = io::Checkpoint::open(kDir + "gated/model.safetensors");
  Status st = Status::Ok;
  const auto msg = error_of([&] { io::bind(*m, ckpt); }, &st);
  EXPECT_EQ(st, Status::BadModel) << msg;
  EXPECT_NE(msg.find("encoder.block.0.layer.1.DenseReluDense.wi_0.weight"), std::string::npos) << msg;
  EXPECT_NE(msg.find("48"), std::string::npos) << msg;
  EXPECT_NE(msg.find("64"), std::string::npos) << msg;
}

TEST(T5Errors, MissingFinalLayerNormIsABadModelNamingIt) {
  const auto src = io::Checkpoint::open(kDir + "gated/model.safetensors");
  std::vector<std::pair<std::string, torch::Tensor>> kept;
  for (const auto& n : src.names())
    if (n != "encoder.final_layer_norm.weight") kept.emplace_back(n, src.load(n));
  const auto dir = fs::temp_directory_path() / ("loupe-test-t5-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const auto path = (dir / "model.safetensors").string();
  io::save_safetensors(path, kept);
  auto m = nn::T5Model(config("gated"), false);
  Status st = Status::Ok;
  const auto msg = error_of([&] { io::bind(*m, io::Checkpoint::open(path)); }, &st);
  fs::remove_all(dir);
  EXPECT_EQ(st, Status::BadModel) << msg;
  EXPECT_NE(msg.find("encoder.final_layer_norm.weight"), std::string::npos) << msg;
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
}

TEST(T5Errors, BadInputsAreInvalidArguments) {
  torch::NoGradGuard ng;
  auto m = load("relu", "relu/model.safetensors");
  Status st = Status::Ok;
  auto msg = error_of([&] { m->encode(torch::tensor({{3, 4, 999}}, torch::kLong)); }, &st);
  EXPECT_EQ(st, Status::InvalidArgument);
  EXPECT_NE(msg.find("999"), std::string::npos) << msg;
  msg = error_of([&] { m->encode(torch::tensor({3, 4}, torch::kLong)); }, &st);
  EXPECT_EQ(st, Status::InvalidArgument) << msg;
  msg = error_of([&] { m->encode(torch::zeros({1, 0}, torch::kLong)); }, &st);
  EXPECT_EQ(st, Status::InvalidArgument) << msg;
  msg = error_of([&] { m->encode(torch::tensor({{3, 4}}, torch::kLong), torch::ones({1, 3})); }, &st);
  EXPECT_EQ(st, Status::InvalidArgument) << msg;
  auto cache = m->make_cache(m->encode(torch::tensor({{3, 4}}, torch::kLong)));
  msg = error_of([&] { m->decode(torch::zeros({2, 1}, torch::kLong), cache); }, &st);
  EXPECT_EQ(st, Status::InvalidArgument) << msg;
}
