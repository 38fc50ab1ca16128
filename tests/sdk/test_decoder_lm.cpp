// The decoder-only LM core (nn/decoder_lm) and the decoding strategies (nn/generation) on tiny
// random models: cached steps equal a full forward, padded batches equal single rows, the prefix-LM
// mask, grouped-query attention equals multi-head attention with repeated K/V, the module names of
// each family, and the strategies' determinism and seeds. Parity with transformers is in
// tests/models/test_decoder_lm_parity.cpp.
#include <gtest/gtest.h>

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <fstream>
#include <limits>
#include <map>
#include <set>

#include "core/error.h"
#include "nn/decoder_lm.h"
#include "nn/generation.h"

using namespace loupe;

namespace {

nn::DecoderConfig tiny(const std::string& type) {
  nlohmann::json j = {{"model_type", type},       {"vocab_size", 61},        {"hidden_size", 32},
                      {"intermediate_size", 48},  {"num_hidden_layers", 3},  {"num_attention_heads", 4},
                      {"num_key_value_heads", 2}, {"head_dim", 8},           {"max_position_embeddings", 64},
                      {"ffn_dim", 48},            {"sliding_window", 5},     {"eos_token_id", 1}};
  if (type == "opt") j["word_embed_proj_dim"] = 24;
  return nn::DecoderConfig::from_json(j, "tiny/config.json");
}

nn::DecoderLM random_model(const nn::DecoderConfig& c, uint64_t seed = 0) {
  torch::manual_seed(static_cast<int64_t>(seed));
  nn::DecoderLM m(c);
  m->eval();
  torch::NoGradGuard ng;
  for (auto& p : m->parameters()) p.normal_(0.0, 0.3);
  return m;
}

float maxdiff(const torch::Tensor& a, const torch::Tensor& b) { return (a - b).abs().max().item<float>(); }

const std::vector<std::string> kTypes{"gemma", "gemma2", "opt"};

}  // namespace

// Each family's module tree carries transformers' parameter names.
TEST(DecoderLM, ModuleNamesMirrorTransformers) {
  std::map<std::string, std::vector<std::string>> expect{
      {"gemma",
       {"model.embed_tokens.weight", "model.norm.weight", "model.layers.0.input_layernorm.weight",
        "model.layers.0.post_attention_layernorm.weight", "model.layers.2.mlp.gate_proj.weight",
        "model.layers.2.mlp.up_proj.weight", "model.layers.2.mlp.down_proj.weight", "model.layers.1.self_attn.q_proj.weight",
        "model.layers.1.self_attn.k_proj.weight", "model.layers.1.self_attn.v_proj.weight",
        "model.layers.1.self_attn.o_proj.weight"}},
      {"gemma2",
       {"model.layers.0.pre_feedforward_layernorm.weight", "model.layers.0.post_feedforward_layernorm.weight",
        "model.layers.0.post_attention_layernorm.weight", "model.layers.0.input_layernorm.weight"}},
      {"opt",
       {"model.decoder.embed_tokens.weight", "model.decoder.embed_positions.weight", "model.decoder.project_in.weight",
        "model.decoder.project_out.weight", "model.decoder.final_layer_norm.weight", "model.decoder.final_layer_norm.bias",
        "model.decoder.layers.0.self_attn.out_proj.bias", "model.decoder.layers.0.self_attn_layer_norm.weight",
        "model.decoder.layers.0.fc1.weight", "model.decoder.layers.0.fc2.bias", "model.decoder.layers.0.final_layer_norm.bias"}}};
  for (const auto& [type, names] : expect) {
    nn::DecoderLM m(tiny(type));
    std::set<std::string> have;
    for (const auto& p : m->named_parameters()) have.insert(p.key());
    for (const auto& n : names) EXPECT_TRUE(have.count(n)) << type << ": " << n;
    EXPECT_FALSE(have.count("lm_head.weight")) << type << " ties its head";
  }
  auto c = tiny("gemma");
  c.tie_word_embeddings = false;
  nn::DecoderLM m(c);
  EXPECT_EQ(m->named_parameters().find("lm_head.weight")->sizes(), (std::vector<int64_t>{61, 32}));
  // OPT positions: max_position_embeddings + 2 rows
  nn::DecoderLM o(tiny("opt"));
  EXPECT_EQ(o->named_parameters().find("model.decoder.embed_positions.weight")->size(0), 66);
}

TEST(DecoderLM, ConfigErrorsNameTheField) {
  nlohmann::json j = {{"model_type", "gemma"}, {"num_attention_heads", 6}, {"num_key_value_heads", 4}};
  try {
    nn::DecoderConfig::from_json(j, "x/config.json");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("x/config.json"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("num_key_value_heads"), std::string::npos) << e.what();
  }
  EXPECT_THROW(nn::DecoderConfig::from_json({{"model_type", "llama4"}}, "c.json"), Error);
  // Gemma 2 defaults (transformers' Gemma2Config) and alternate sliding layers (even ones)
  const auto g2 = nn::DecoderConfig::from_json({{"model_type", "gemma2"}, {"num_hidden_layers", 4}}, "c.json");
  EXPECT_EQ(g2.attn_logit_softcapping, 50.0);
  EXPECT_EQ(g2.final_logit_softcapping, 30.0);
  EXPECT_EQ(g2.sliding_window, 4096);
  EXPECT_TRUE(g2.is_sliding(0));
  EXPECT_FALSE(g2.is_sliding(1));
  EXPECT_TRUE(g2.is_sliding(2));
}

// A full forward of a sequence equals a prefill of part of it followed by cached steps of one
// token, position by position (fp32, rounding only: 2e-5), for each family; the cache grows past
// its first capacity.
TEST(DecoderLM, CachedStepsEqualFullForward) {
  torch::NoGradGuard ng;
  for (const auto& type : kTypes) {
    auto m = random_model(tiny(type), 1);
    const auto ids = torch::randint(2, 61, {2, 11}, torch::kLong);
    nn::DecoderInput full;
    full.input_ids = ids;
    const auto ref = m->forward(full);
    ASSERT_EQ(ref.sizes(), (std::vector<int64_t>{2, 11, 61}));
    for (int64_t capacity : {4, 32}) {
      auto cache = m->make_cache(2, capacity);
      nn::DecoderInput pre;
      pre.input_ids = ids.slice(1, 0, 4);
      const auto first = m->forward(pre, cache);
      EXPECT_LT(maxdiff(first, ref.slice(1, 0, 4)), 2e-5) << type;
      for (int64_t t = 4; t < 11; ++t) {
        nn::DecoderInput step;
        step.input_ids = ids.slice(1, t, t + 1);
        const auto got = m->forward(step, cache);
        EXPECT_LT(maxdiff(got.select(1, 0), ref.select(1, t)), 2e-5) << type << " position " << t;
      }
      EXPECT_EQ(cache.length, 11);
      // last_only: the last position
      nn::DecoderInput last = full;
      last.last_only = true;
      EXPECT_LT(maxdiff(m->forward(last).select(1, 0), ref.select(1, 10)), 2e-5);
    }
  }
}

// A left-padded batch gives each row the logits it has alone (prefill and cached steps), with
// input embeddings as well as ids.
TEST(DecoderLM, PaddedBatchEqualsSingleRows) {
  torch::NoGradGuard ng;
  for (const auto& type : kTypes) {
    auto m = random_model(tiny(type), 2);
    const auto a = torch::randint(2, 61, {1, 7}, torch::kLong), b = torch::randint(2, 61, {1, 4}, torch::kLong);
    const auto steps = torch::randint(2, 61, {2, 3}, torch::kLong);
    auto batch = torch::zeros({2, 7}, torch::kLong);
    batch.select(0, 0).copy_(a.select(0, 0));
    batch.select(0, 1).slice(0, 3).copy_(b.select(0, 0));
    auto mask = torch::ones({2, 7}, torch::kLong);
    mask.select(0, 1).slice(0, 0, 3).zero_();
    for (bool embeds : {false, true}) {
      nn::KVCache cache;
      nn::DecoderInput in;
      if (embeds)
        in.inputs_embeds = m->embed(batch);
      else
        in.input_ids = batch;
      in.attention_mask = mask;
      in.last_only = true;
      std::vector<torch::Tensor> got{m->forward(in, cache).select(1, 0)};
      for (int64_t t = 0; t < 3; ++t) {
        nn::DecoderInput s;
        s.input_ids = steps.slice(1, t, t + 1);
        got.push_back(m->forward(s, cache).select(1, 0));
      }
      for (int row = 0; row < 2; ++row) {
        const auto& alone = row == 0 ? a : b;
        nn::KVCache c1;
        nn::DecoderInput in1;
        in1.input_ids = alone;
        in1.last_only = true;
        std::vector<torch::Tensor> ref{m->forward(in1, c1).select(1, 0)};
        for (int64_t t = 0; t < 3; ++t) {
          nn::DecoderInput s;
          s.input_ids = steps.slice(0, row, row + 1).slice(1, t, t + 1);
          ref.push_back(m->forward(s, c1).select(1, 0));
        }
        for (size_t t = 0; t < ref.size(); ++t)
          EXPECT_LT(maxdiff(got[t].select(0, row), ref[t].select(0, 0)), 2e-5)
              << type << " row " << row << " step " << t << (embeds ? " (embeddings)" : "");
      }
    }
  }
}

// Prefix-LM: within the first P slots attention goes both ways, after them it is causal. A change of
// a token inside the prefix changes the logits of every position; a change of a token after it
// changes only its own position and later ones. The result equals an explicit reference: the same
// model where each prefix position is computed with the whole prefix as context.
TEST(DecoderLM, PrefixMaskIsFullOverThePrefixCausalAfter) {
  torch::NoGradGuard ng;
  for (const auto& type : {"gemma", "gemma2"}) {
    auto m = random_model(tiny(type), 3);
    const int64_t P = 5, L = 9;
    const auto ids = torch::randint(2, 61, {1, L}, torch::kLong);
    auto run = [&](const torch::Tensor& x, int64_t prefix) {
      nn::DecoderInput in;
      in.input_ids = x;
      in.prefix_length = prefix;
      return m->forward(in);
    };
    const auto base = run(ids, P), causal = run(ids, 0);
    // the prefix's first position sees the later prefix tokens: differs from causal
    EXPECT_GT(maxdiff(base.select(1, 0), causal.select(1, 0)), 1e-3) << type;
    auto changed = ids.clone();
    changed[0][P - 1] = (ids[0][P - 1].item<int64_t>() + 1) % 61;
    const auto c1 = run(changed, P);
    for (int64_t t = 0; t < L; ++t) EXPECT_GT(maxdiff(c1.select(1, t), base.select(1, t)), 1e-4) << type << " " << t;
    auto later = ids.clone();
    later[0][6] = (ids[0][6].item<int64_t>() + 1) % 61;
    const auto c2 = run(later, P);
    for (int64_t t = 0; t < 6; ++t) EXPECT_EQ(maxdiff(c2.select(1, t), base.select(1, t)), 0.0f) << type << " " << t;
    EXPECT_GT(maxdiff(c2.select(1, 6), base.select(1, 6)), 1e-4) << type;
    // With the prefix in the cache, steps after it are causal: same as a full forward.
    auto cache = m->make_cache(1, L);
    nn::DecoderInput pre;
    pre.input_ids = ids.slice(1, 0, P);
    pre.prefix_length = P;
    EXPECT_LT(maxdiff(m->forward(pre, cache), base.slice(1, 0, P)), 2e-5);
    for (int64_t t = P; t < L; ++t) {
      nn::DecoderInput s;
      s.input_ids = ids.slice(1, t, t + 1);
      EXPECT_LT(maxdiff(m->forward(s, cache).select(1, 0), base.select(1, t)), 2e-5) << type << " " << t;
    }
    // The last prefix position sees the whole prefix either way: with the full prefix as
    // context, causal and prefix attention agree there in the first layer only; so compare the
    // prefix row P-1 of a model with one layer.
    auto c = tiny(type);
    c.num_layers = 1;
    c.sliding_layers.resize(1);
    auto one = random_model(c, 4);
    nn::DecoderInput a, b;
    a.input_ids = b.input_ids = ids.slice(1, 0, P);
    a.prefix_length = P;
    EXPECT_LT(maxdiff(one->forward(a).select(1, P - 1), one->forward(b).select(1, P - 1)), 2e-5) << type;
  }
}

// Grouped-query attention (2 KV heads for 4 query heads) equals multi-head attention whose K/V
// projections repeat each KV head for its query heads (transformers' repeat_kv); multi-query too.
TEST(DecoderLM, GroupedQueryAttentionEqualsRepeatedKvHeads) {
  torch::NoGradGuard ng;
  for (int64_t kv : {2, 1}) {
    for (const auto& type : {"gemma", "gemma2"}) {
      auto c = tiny(type);
      c.num_kv_heads = kv;
      auto g = random_model(c, 5);
      auto mc = c;
      mc.num_kv_heads = c.num_heads;
      nn::DecoderLM mha(mc);
      mha->eval();
      const int64_t rep = c.num_heads / kv, D = c.head_dim;
      auto gp = g->named_parameters();
      for (auto& p : mha->named_parameters()) {
        const auto& src = *gp.find(p.key());
        if (p.key().find("k_proj") != std::string::npos || p.key().find("v_proj") != std::string::npos)
          p.value().copy_(src.view({kv, 1, D, -1}).expand({kv, rep, D, src.size(1)}).reshape(p.value().sizes()));
        else
          p.value().copy_(src);
      }
      const auto ids = torch::randint(2, 61, {2, 8}, torch::kLong);
      nn::DecoderInput in;
      in.input_ids = ids;
      in.prefix_length = 3;
      EXPECT_LT(maxdiff(g->forward(in), mha->forward(in)), 2e-5) << type << " kv " << kv;
    }
  }
}

// Gemma 2's sliding window: on sliding layers a query sees only the last `sliding_window` slots.
// With a window as long as the sequence, the model equals one without a window; with a shorter one
// it differs, and cached steps still equal the full forward (checked above with window 5 < 11).
TEST(DecoderLM, SlidingWindowLimitsTheContextOfAlternateLayers) {
  torch::NoGradGuard ng;
  auto c = tiny("gemma2");
  auto w = random_model(c, 6);
  auto nc = c;
  nc.sliding_window = 9;
  auto n = random_model(nc, 6);
  const auto ids = torch::randint(2, 61, {1, 9}, torch::kLong);
  nn::DecoderInput in;
  in.input_ids = ids;
  const auto a = w->forward(in), b = n->forward(in);
  EXPECT_LT(maxdiff(a.slice(1, 0, 5), b.slice(1, 0, 5)), 2e-5);  // within the window: the same
  EXPECT_GT(maxdiff(a.select(1, 8), b.select(1, 8)), 1e-4);
}

TEST(DecoderLM, BadInputsAreClearErrors) {
  torch::NoGradGuard ng;
  auto m = random_model(tiny("gemma"));
  nn::DecoderInput in;
  in.input_ids = torch::tensor({{3, 99}}, torch::kLong);
  try {
    m->forward(in);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("99"), std::string::npos) << e.what();
  }
  nn::DecoderInput e;
  e.inputs_embeds = torch::zeros({1, 3, 7});
  EXPECT_THROW(m->forward(e), Error);
  nn::DecoderInput none;
  EXPECT_THROW(m->forward(none), Error);
  nn::DecoderInput bad_mask;
  bad_mask.input_ids = torch::tensor({{3, 4}}, torch::kLong);
  bad_mask.attention_mask = torch::ones({1, 3});
  EXPECT_THROW(m->forward(bad_mask), Error);
}

// ---------------------------------------------------------------- generation

namespace {

// generate() over a model with a fresh cache and its prefill.
nn::GenerationResult run_generate(nn::DecoderLM& m, const torch::Tensor& prompt, const nn::GenerationConfig& g,
                                  const nn::TokenCallback& cb = {}) {
  auto cache = m->make_cache(prompt.size(0), prompt.size(1) + g.max_new_tokens);
  nn::DecoderInput in;
  in.input_ids = prompt;
  in.last_only = true;
  auto st = nn::stepper(m, cache, m->forward(in, cache));
  return nn::generate(st, prompt, g, cb);
}

// Greedy decoding by hand: full forwards, argmax of the last position.
std::vector<int64_t> greedy_by_full_forwards(nn::DecoderLM& m, torch::Tensor ids, int n, int64_t eos) {
  std::vector<int64_t> out;
  for (int i = 0; i < n; ++i) {
    nn::DecoderInput in;
    in.input_ids = ids;
    const auto next = m->forward(in).select(1, ids.size(1) - 1).argmax(-1);
    out.push_back(next.item<int64_t>());
    if (out.back() == eos) break;
    ids = torch::cat({ids, next.unsqueeze(1)}, 1);
  }
  return out;
}

}  // namespace

TEST(Generation, GreedyEqualsArgmaxOfFullForwardsAndBatchesEqualRows) {
  torch::NoGradGuard ng;
  for (const auto& type : kTypes) {
    auto m = random_model(tiny(type), 7);
    const auto prompt = torch::randint(2, 61, {2, 5}, torch::kLong);
    nn::GenerationConfig g;
    g.max_new_tokens = 8;
    g.eos_token_ids = {1};
    const auto res = run_generate(m, prompt, g);
    ASSERT_EQ(res.ids.size(), 2u);
    for (int r = 0; r < 2; ++r) {
      EXPECT_EQ(res.ids[r], greedy_by_full_forwards(m, prompt.slice(0, r, r + 1), 8, 1)) << type << " row " << r;
      EXPECT_EQ(run_generate(m, prompt.slice(0, r, r + 1), g).ids[0], res.ids[r]) << type << " row " << r;
    }
    EXPECT_EQ(run_generate(m, prompt, g).ids, res.ids);  // deterministic
  }
}

// Stop tokens: generation stops at any of several, the result ends with it; min_new_tokens bans
// them before; the callback sees every step and its exception stops generation.
TEST(Generation, StopTokensMinNewTokensAndCallback) {
  torch::NoGradGuard ng;
  auto m = random_model(tiny("gemma"), 8);
  const auto prompt = torch::randint(2, 61, {1, 4}, torch::kLong);
  nn::GenerationConfig g;
  g.max_new_tokens = 6;
  const auto free_run = run_generate(m, prompt, g).ids[0];
  ASSERT_EQ(free_run.size(), 6u);
  // the first token not seen before it (k >= 1) becomes a stop token, with another one listed first
  size_t k = 1;
  while (k < free_run.size() && std::count(free_run.begin(), free_run.begin() + k, free_run[k])) ++k;
  ASSERT_LT(k, free_run.size()) << "the free run repeats one token";
  int64_t other = 0;
  while (std::count(free_run.begin(), free_run.end(), other)) ++other;
  g.eos_token_ids = {other, free_run[k]};
  auto stopped = run_generate(m, prompt, g).ids[0];
  EXPECT_EQ(stopped, std::vector<int64_t>(free_run.begin(), free_run.begin() + k + 1));
  g.min_new_tokens = 6;
  const auto banned = run_generate(m, prompt, g).ids[0];
  EXPECT_EQ(banned.size(), 6u);
  for (auto t : banned) EXPECT_TRUE(t != other && t != free_run[k]);
  // streaming: one call per token, with the ids so far
  g.min_new_tokens = 0;
  std::vector<std::vector<int64_t>> seen;
  run_generate(m, prompt, g, [&](int step, int total, const std::vector<std::vector<int64_t>>& ids) {
    EXPECT_EQ(total, 6);
    EXPECT_EQ(step, static_cast<int>(seen.size()) + 1);
    seen.push_back(ids[0]);
  });
  ASSERT_EQ(seen.size(), k + 1);
  EXPECT_EQ(seen.back(), stopped);
  // cancellation: the callback's exception comes out
  EXPECT_THROW(run_generate(m, prompt, g,
                            [](int step, int, const std::vector<std::vector<int64_t>>&) {
                              if (step == 2) throw Error(Status::Cancelled, "cancelled");
                            }),
               Error);
}

// Beam search (batch-1 prefill expanded to the beams): deterministic, and the score it reports is
// the sequence's sum of log-probs over its length, recomputed by a full forward.
TEST(Generation, BeamSearchIsDeterministicAndReportsItsScore) {
  torch::NoGradGuard ng;
  for (const auto& type : kTypes) {
    auto m = random_model(tiny(type), 9);
    const auto prompt = torch::randint(2, 61, {1, 6}, torch::kLong);
    nn::GenerationConfig g;
    g.max_new_tokens = 7;
    g.eos_token_ids = {1};
    g.num_beams = 4;
    g.early_stopping = nn::EarlyStopping::Never;
    const auto a = run_generate(m, prompt, g), b = run_generate(m, prompt, g);
    EXPECT_EQ(a.ids, b.ids);
    ASSERT_EQ(a.scores.size(), 1u);
    // the score of a sequence: sum of log-probs / length
    auto score_of = [&](const std::vector<int64_t>& seq) {
      auto ids = torch::cat({prompt, torch::tensor(seq, torch::kLong).unsqueeze(0)}, 1);
      nn::DecoderInput in;
      in.input_ids = ids;
      const auto logp = torch::log_softmax(m->forward(in).to(torch::kFloat32), -1);
      double s = 0;
      for (size_t i = 0; i < seq.size(); ++i) s += logp[0][prompt.size(1) - 1 + i][seq[i]].item<float>();
      return s / seq.size();
    };
    EXPECT_NEAR(score_of(a.ids[0]), a.scores[0], 1e-4) << type;
  }
}

// Sampling: a seed gives the same ids (and batches draw row by row from one generator); another
// seed gives others; with top_k 1 it is greedy.
TEST(Generation, SamplingIsReproducibleFromTheSeed) {
  torch::NoGradGuard ng;
  auto m = random_model(tiny("gemma2"), 10);
  const auto prompt = torch::randint(2, 61, {2, 5}, torch::kLong);
  nn::GenerationConfig g;
  g.max_new_tokens = 12;
  g.do_sample = true;
  g.top_k = 0;
  g.temperature = 1.5;
  g.seed = 1234;
  const auto a = run_generate(m, prompt, g);
  EXPECT_EQ(run_generate(m, prompt, g).ids, a.ids);
  g.seed = 1235;
  EXPECT_NE(run_generate(m, prompt, g).ids, a.ids);
  g.top_k = 1;
  nn::GenerationConfig greedy;
  greedy.max_new_tokens = 12;
  EXPECT_EQ(run_generate(m, prompt, g).ids, run_generate(m, prompt, greedy).ids);
}

// The draws follow softmax(scores): frequencies over 40000 draws within 4 standard errors; -inf
// never drawn; the first draws of seed 42 are fixed (the portable generator: mt19937's 64-bit
// draws, the same on every machine).
TEST(Generation, SampleFollowsTheDistribution) {
  const auto scores = torch::tensor({{0.0f, 1.0f, -std::numeric_limits<float>::infinity(), 2.0f, -1.0f}});
  const auto p = torch::softmax(scores, -1);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(42);
  std::vector<int> count(5, 0);
  const int n = 40000;
  for (int i = 0; i < n; ++i) count[nn::sample(scores, gen).item<int64_t>()]++;
  EXPECT_EQ(count[2], 0);
  for (int i = 0; i < 5; ++i) {
    const double pi = p[0][i].item<float>();
    EXPECT_NEAR(count[i] / double(n), pi, 4 * std::sqrt(pi * (1 - pi) / n) + 1e-9) << i;
  }
  auto g1 = at::make_generator<at::CPUGeneratorImpl>(7), g2 = at::make_generator<at::CPUGeneratorImpl>(7);
  const auto many = scores.expand({16, 5});
  EXPECT_TRUE(torch::equal(nn::sample(many, g1), nn::sample(many, g2)));
}

// ---------------------------------------------------------------- processors against transformers

namespace {

torch::Tensor scores_from_json(const nlohmann::json& rows) {
  std::vector<float> v;
  int64_t n = 0, V = 0;
  for (const auto& r : rows) {
    V = static_cast<int64_t>(r.size());
    ++n;
    for (const auto& x : r) v.push_back(x.is_string() ? -std::numeric_limits<float>::infinity() : x.get<float>());
  }
  return torch::tensor(v).view({n, V});
}

}  // namespace

// Each case of tests/fixtures/lm/processors.json (transformers' logits_process.py run as published by
// gen/make_lm_processors.py on hand-built scores) through process_logits with the same settings:
// equal up to float rounding (1e-6), -inf in the same places.
TEST(Processors, MatchTransformersLogitsProcessors) {
  std::ifstream f(std::string(LOUPE_FIXTURES_DIR) + "/lm/processors.json");
  ASSERT_TRUE(f) << "missing tests/fixtures/lm/processors.json (gen/make_lm_processors.py)";
  const auto doc = nlohmann::json::parse(f);
  int checked = 0;
  for (const auto& c : doc["cases"]) {
    nn::GenerationConfig g;
    g.top_k = 0;
    g.max_new_tokens = 1000;
    int64_t prompt_length = 0;
    bool warp = false;
    for (const auto& p : c["chain"]) {
      const auto name = p["name"].get<std::string>();
      const auto& a = p["args"];
      if (name == "repetition_penalty") g.repetition_penalty = a["penalty"].get<double>();
      if (name == "no_repeat_ngram") g.no_repeat_ngram_size = a["n"].get<int>();
      if (name == "min_new_tokens") {
        prompt_length = a["prompt_length"].get<int64_t>();
        g.min_new_tokens = a["min_new_tokens"].get<int>();
        g.eos_token_ids = a["eos"].get<std::vector<int64_t>>();
      }
      if (name == "forced_bos") g.forced_bos_token_id = a["token"].get<int64_t>();
      if (name == "forced_eos") {
        g.forced_eos_token_id = a["token"].get<int64_t>();
        g.max_new_tokens = a["max_length"].get<int>();  // prompt_length 0
      }
      if (name == "temperature") warp = true, g.temperature = a["t"].get<double>();
      if (name == "top_k") warp = true, g.top_k = a["k"].get<int>();
      if (name == "top_p") warp = true, g.top_p = a["p"].get<double>();
      if (a.contains("min_keep")) {
        // generate() keeps 1 token (eos count + 1 with beams): drive the warper directly
        auto s = scores_from_json(c["scores"]);
        if (name == "top_k") nn::top_k(s, a["k"].get<int>(), a["min_keep"].get<int>());
        if (name == "top_p") nn::top_p(s, a["p"].get<double>(), a["min_keep"].get<int>());
        const auto e = scores_from_json(c["expected"]);
        EXPECT_TRUE(torch::equal(torch::isinf(s), torch::isinf(e))) << c["name"];
        ++checked;
        goto next;
      }
    }
    {
      auto s = scores_from_json(c["scores"]);
      const auto all = c["input_ids"].get<std::vector<std::vector<int64_t>>>();
      auto idt = torch::empty({static_cast<int64_t>(all.size()), static_cast<int64_t>(all[0].size())}, torch::kLong);
      for (size_t r = 0; r < all.size(); ++r)
        for (size_t k = 0; k < all[r].size(); ++k) idt[r][k] = all[r][k];
      nn::process_logits(s, idt, prompt_length, g, warp);
      const auto e = scores_from_json(c["expected"]);
      const auto inf_s = torch::isinf(s), inf_e = torch::isinf(e);
      EXPECT_TRUE(torch::equal(inf_s, inf_e)) << c["name"] << "\n" << s << "\n" << e;
      const auto fin = inf_e.logical_not();
      if (fin.any().item<bool>()) {
        EXPECT_LT((s.masked_select(fin) - e.masked_select(fin)).abs().max().item<float>(), 1e-6) << c["name"];
      }
      ++checked;
    }
  next:;
  }
  EXPECT_EQ(checked, 18);
}

// In bf16 (and fp16, as on CUDA) masked scores are filled with the dtype's own lowest finite value
// (transformers' finfo(dtype).min): -FLT_MAX does not fit there and every forward used to throw.
// A left-padded batch with a sliding window runs and stays close to fp32.
TEST(DecoderLM, RunsInBf16WithMasks) {
  torch::NoGradGuard ng;
  for (const auto& type : kTypes) {
    auto m = random_model(tiny(type), 2);
    const auto ids = torch::randint(2, 61, {2, 9}, torch::kLong);
    auto mask = torch::ones({2, 9}, torch::kLong);
    mask[1].slice(0, 0, 3).zero_();  // row 1 left-padded
    nn::DecoderInput in;
    in.input_ids = ids;
    in.attention_mask = mask;
    const auto ref = m->forward(in);
    m->to(torch::kBFloat16);
    torch::Tensor got;
    ASSERT_NO_THROW(got = m->forward(in)) << type;
    EXPECT_TRUE(torch::isfinite(got).all().item<bool>()) << type;
    const auto real = mask.to(torch::kBool).unsqueeze(-1);  // positions that are not padding
    const auto diff = (got.to(torch::kFloat32) - ref).abs().masked_select(real);
    EXPECT_LT(diff.max().item<float>(), 0.1f * std::max(1.0f, ref.abs().max().item<float>())) << type;
  }
}
