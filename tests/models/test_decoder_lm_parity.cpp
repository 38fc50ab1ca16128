// Parity of the decoder-only LM core and the decoding strategies with transformers' Gemma and
// Gemma 2 (GemmaForCausalLM / Gemma2ForCausalLM 4.46, run as published by
// tests/fixtures/gen/make_paligemma_tiny.py on the language model of the tiny PaliGemma checkpoints):
// logits with the causal and the prefix-LM mask, per cached step, greedy and beam ids; and the
// language-model half of PaliGemma (merged image + text embeddings in, 1-based positions, prefix-LM
// over the whole prompt): prefill logits, per-step logits, greedy and beam ids and the beam score.
// OPT (BLIP-2) against transformers' OPTForCausalLM on tests/fixtures/lm/opt-{pre,post}.
// fp32 on the CPU; tolerances next to the assertions.
#include <gtest/gtest.h>

#include "io/checkpoint.h"
#include "io/config.h"
#include "io/state_dict.h"
#include "nn/decoder_lm.h"
#include "nn/generation.h"

using namespace loupe;

namespace {

const std::string kDir = std::string(LOUPE_FIXTURES_DIR) + "/paligemma/";

float maxdiff(const torch::Tensor& a, const torch::Tensor& b) { return (a - b).abs().max().item<float>(); }

// Our new ids padded as transformers pads finished rows (pad after the stop token) to `n`.
std::vector<int64_t> padded(std::vector<int64_t> ids, size_t n, int64_t pad) {
  ids.resize(std::max(n, ids.size()), pad);
  return ids;
}

std::vector<int64_t> row(const torch::Tensor& t) {
  const auto c = t.reshape({-1}).to(torch::kLong).contiguous();
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

struct Loaded {
  nn::DecoderLM lm{nullptr};
  nn::DecoderConfig cfg;
};

// The language model of tiny-pgN (layout "language_model.model.*"), or of tiny-pgN-v5 (transformers
// >= 4.52: "model.language_model.*" and "lm_head.weight").
Loaded load(const std::string& name, bool v5 = false) {
  const std::string dir = kDir + name + (v5 ? "-v5" : "");
  const auto j = io::read_json_file(dir + "/config.json");
  Loaded l;
  l.cfg = nn::DecoderConfig::from_json(j.at("text_config"), dir + "/config.json");
  l.lm = nn::DecoderLM(l.cfg);
  l.lm->eval();
  const auto ckpt = io::Checkpoint::open(dir + "/model.safetensors");
  io::BindOptions bo;
  if (v5)
    bo.keymap.prefix("model.", "model.language_model.");
  else
    bo.keymap.prefix("", "language_model.");
  const auto report = io::bind(*l.lm, ckpt, bo);
  EXPECT_TRUE(report.ok()) << report.describe(dir);
  return l;
}

// A Stepper that records the logits of every step.
struct Recording {
  nn::Stepper inner;
  std::vector<torch::Tensor> logits;
  nn::Stepper stepper() {
    nn::Stepper s;
    s.step = [this](const torch::Tensor& ids) {
      auto out = inner.step(ids);
      logits.push_back(out.to(torch::kFloat32));
      return out;
    };
    s.reorder = [this](const torch::Tensor& i) { inner.reorder(i); };
    return s;
  }
};

}  // namespace

class DecoderLMParity : public ::testing::TestWithParam<std::string> {};

// Gemma (pg1: MQA) and Gemma 2 (pg2: GQA, soft-capping, query_pre_attn_scalar, sandwich norms).
TEST_P(DecoderLMParity, LogitsAndIdsMatchTransformers) {
  torch::NoGradGuard ng;
  const auto name = GetParam();
  auto l = load(name);
  const auto ref = io::Checkpoint::open(kDir + "text-" + name.substr(5) + ".safetensors");
  const auto ids = ref.load("input_ids");
  const int64_t L = ids.size(1), P = ref.load("prefix_len").item<int64_t>();

  // Full forwards, causal and prefix-LM (fp32 rounding: 2e-5 on logits of magnitude ~1)
  nn::DecoderInput in;
  in.input_ids = ids;
  EXPECT_LT(maxdiff(l.lm->forward(in), ref.load("logits_causal")), 2e-5) << name << " causal";
  in.prefix_length = P;
  EXPECT_LT(maxdiff(l.lm->forward(in), ref.load("logits_prefix")), 2e-5) << name << " prefix";

  // Prefill of the prefix, then one token at a time through the cache
  const auto steps = ref.load("kv_step_logits");
  auto cache = l.lm->make_cache(1, L);
  nn::DecoderInput pre;
  pre.input_ids = ids.slice(1, 0, P);
  pre.prefix_length = P;
  pre.last_only = true;
  EXPECT_LT(maxdiff(l.lm->forward(pre, cache).select(1, 0), steps.select(1, 0)), 2e-5) << name << " prefill";
  for (int64_t t = P; t < L; ++t) {
    nn::DecoderInput s;
    s.input_ids = ids.slice(1, t, t + 1);
    EXPECT_LT(maxdiff(l.lm->forward(s, cache).select(1, 0), steps.select(1, t - P + 1)), 2e-5) << name << " step " << t;
  }

  // generate(): greedy (with the raw logits of each step) and beam search, causal prompt of P tokens
  const auto prompt = ids.slice(1, 0, P);
  nn::GenerationConfig g;
  g.max_new_tokens = 6;
  g.eos_token_ids = l.cfg.eos_token_ids;
  g.pad_token_id = l.cfg.pad_token_id;
  auto run = [&](const nn::GenerationConfig& gc, std::vector<torch::Tensor>* logits) {
    auto c = l.lm->make_cache(1, P + gc.max_new_tokens);
    nn::DecoderInput p;
    p.input_ids = prompt;
    p.last_only = true;
    Recording rec{nn::stepper(l.lm, c, l.lm->forward(p, c))};
    auto st = rec.stepper();
    auto res = nn::generate(st, prompt, gc);
    if (logits) *logits = rec.logits;
    return res;
  };
  std::vector<torch::Tensor> logits;
  const auto greedy = run(g, &logits);
  const auto expected = row(ref.load("greedy_ids"));
  EXPECT_EQ(padded(greedy.ids[0], expected.size(), g.pad_token_id), expected) << name << " greedy";
  const auto step_logits = ref.load("greedy_step_logits");
  for (size_t t = 0; t < logits.size(); ++t)
    EXPECT_LT(maxdiff(logits[t].select(0, 0), step_logits.select(1, static_cast<int64_t>(t)).select(0, 0)), 2e-5)
        << name << " greedy step " << t;
  g.num_beams = 3;
  const auto beam = run(g, nullptr);
  const auto expected_beam = row(ref.load("beam_ids"));
  EXPECT_EQ(padded(beam.ids[0], expected_beam.size(), g.pad_token_id), expected_beam) << name << " beam";
}

// The v5 layout (model.language_model.*, lm_head.weight present) binds to the same model.
TEST_P(DecoderLMParity, TransformersFiveLayoutBindsTheSameWeights) {
  torch::NoGradGuard ng;
  const auto name = GetParam();
  auto a = load(name), b = load(name, true);
  const auto ids = torch::arange(2, 12, torch::kLong).unsqueeze(0);
  nn::DecoderInput in;
  in.input_ids = ids;
  EXPECT_EQ(maxdiff(a.lm->forward(in), b.lm->forward(in)), 0.0f);
}

// PaliGemma's language-model half: the merged embeddings of the reference (image rows already
// divided by sqrt(hidden), text rows raw) go in as inputs_embeds with 1-based positions and the
// whole prompt as the prefix; then greedy and beam search continue from the prefill.
TEST_P(DecoderLMParity, PaliGemmaLanguageModelHalfMatchesTransformers) {
  torch::NoGradGuard ng;
  const auto name = GetParam();
  auto l = load(name);
  const auto ref = io::Checkpoint::open(kDir + "expected-" + name.substr(5) + ".safetensors");
  const auto ids = ref.load("input_ids"), embeds = ref.load("merged_embeds");
  const int64_t L = ids.size(1);
  auto prefill = [&](nn::KVCache& cache, bool last_only) {
    nn::DecoderInput in;
    in.inputs_embeds = embeds;
    in.attention_mask = ref.load("attention_mask");
    in.position_ids = torch::arange(1, L + 1, torch::kLong).unsqueeze(0);
    in.prefix_length = L;
    in.last_only = last_only;
    return l.lm->forward(in, cache);
  };
  {
    nn::KVCache cache;
    EXPECT_LT(maxdiff(prefill(cache, false), ref.load("prefill_logits")), 2e-5) << name << " prefill";
  }
  for (int beams : {1, 3}) {
    nn::GenerationConfig g;
    g.max_new_tokens = 8;
    g.num_beams = beams;
    g.eos_token_ids = l.cfg.eos_token_ids;
    g.pad_token_id = l.cfg.pad_token_id;
    auto cache = l.lm->make_cache(1, L + g.max_new_tokens);
    Recording rec{nn::stepper(l.lm, cache, prefill(cache, true))};
    auto st = rec.stepper();
    const auto res = nn::generate(st, ids, g);
    const auto expected = row(ref.load(beams == 1 ? "greedy_ids" : "beam_ids"));
    EXPECT_EQ(padded(res.ids[0], expected.size(), g.pad_token_id), expected) << name << " beams " << beams;
    if (beams == 1) {
      const auto step_logits = ref.load("greedy_step_logits");
      for (size_t t = 0; t < rec.logits.size(); ++t)
        EXPECT_LT(maxdiff(rec.logits[t].select(0, 0), step_logits.select(1, static_cast<int64_t>(t)).select(0, 0)), 2e-5)
            << name << " step " << t;
    } else {
      ASSERT_EQ(res.scores.size(), 1u);
      EXPECT_NEAR(res.scores[0], ref.load("beam_sequences_scores").item<float>(), 1e-5) << name;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Gemma, DecoderLMParity, ::testing::Values("tiny-pg1", "tiny-pg2"));

// OPT (BLIP-2's decoder): pre-norm with word_embed_proj_dim = hidden, and post-norm with
// project_in / project_out (OPT-350m's shape), against transformers' OPTForCausalLM 4.46 run by
// gen/make_opt_tiny.py: a left-padded batch (learned positions from the attention mask, offset 2),
// cached steps, greedy ids of the padded batch, beam ids and score, and repetition penalty with
// no-repeat n-grams.
class OptParity : public ::testing::TestWithParam<std::string> {};

TEST_P(OptParity, LogitsAndIdsMatchTransformers) {
  torch::NoGradGuard ng;
  const auto name = GetParam();
  const std::string dir = std::string(LOUPE_FIXTURES_DIR) + "/lm/" + name;
  const auto cfg = nn::DecoderConfig::from_json(io::read_json_file(dir + "/config.json"), dir + "/config.json");
  nn::DecoderLM lm(cfg);
  lm->eval();
  const auto report = io::bind(*lm, io::Checkpoint::open(dir + "/model.safetensors"));
  ASSERT_TRUE(report.ok()) << report.describe(dir);
  const auto ref = io::Checkpoint::open(std::string(LOUPE_FIXTURES_DIR) + "/lm/expected-" + name + ".safetensors");
  const auto ids = ref.load("input_ids"), mask = ref.load("attention_mask");
  const int64_t B = ids.size(0), L = ids.size(1);

  // One forward of the padded batch: compare the real positions (padding rows' outputs are unused)
  nn::DecoderInput in;
  in.input_ids = ids;
  in.attention_mask = mask;
  const auto real = mask.to(torch::kBool).unsqueeze(-1);
  const auto logits = lm->forward(in), expected = ref.load("logits");
  EXPECT_LT(maxdiff(logits.masked_select(real), expected.masked_select(real)), 2e-5) << name;

  // Prefill of 5 columns, then one column at a time
  const auto steps = ref.load("step_logits");
  auto cache = lm->make_cache(B, L);
  nn::DecoderInput pre;
  pre.input_ids = ids.slice(1, 0, 5);
  pre.attention_mask = mask.slice(1, 0, 5);
  pre.last_only = true;
  EXPECT_LT(maxdiff(lm->forward(pre, cache).select(1, 0), steps.select(1, 0)), 2e-5) << name << " prefill";
  for (int64_t t = 5; t < L; ++t) {
    nn::DecoderInput s;
    s.input_ids = ids.slice(1, t, t + 1);
    EXPECT_LT(maxdiff(lm->forward(s, cache).select(1, 0), steps.select(1, t - 4)), 2e-5) << name << " step " << t;
  }

  auto run = [&](const torch::Tensor& prompt, const torch::Tensor& pmask, nn::GenerationConfig g) {
    g.eos_token_ids = cfg.eos_token_ids;
    g.pad_token_id = cfg.pad_token_id;
    auto c = lm->make_cache(prompt.size(0), prompt.size(1) + g.max_new_tokens);
    nn::DecoderInput p;
    p.input_ids = prompt;
    p.attention_mask = pmask;
    p.last_only = true;
    auto st = nn::stepper(lm, c, lm->forward(p, c));
    return nn::generate(st, prompt, g);
  };
  nn::GenerationConfig g;
  g.max_new_tokens = 7;
  const auto greedy = run(ids, mask, g);
  const auto eg = ref.load("greedy_ids");
  for (int64_t b = 0; b < B; ++b)
    EXPECT_EQ(padded(greedy.ids[b], 7, cfg.pad_token_id), row(eg.select(0, b))) << name << " greedy row " << b;
  g.num_beams = 3;
  const auto beam = run(ids.slice(0, 0, 1), mask.slice(0, 0, 1), g);
  EXPECT_EQ(padded(beam.ids[0], 7, cfg.pad_token_id), row(ref.load("beam_ids"))) << name << " beam";
  ASSERT_EQ(beam.scores.size(), 1u);
  EXPECT_NEAR(beam.scores[0], ref.load("beam_score").item<float>(), 1e-5) << name;
  g.num_beams = 1;
  g.repetition_penalty = 1.5;
  g.no_repeat_ngram_size = 2;
  const auto rep = run(ids.slice(0, 0, 1), mask.slice(0, 0, 1), g);
  EXPECT_EQ(padded(rep.ids[0], 7, cfg.pad_token_id), row(ref.load("rep_ids"))) << name << " repetition";
}

INSTANTIATE_TEST_SUITE_P(Opt, OptParity, ::testing::Values("opt-pre", "opt-post"));
