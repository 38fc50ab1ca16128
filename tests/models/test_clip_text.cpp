// CLIP text encoder: loads the tiny checkpoint by its transformers names, causal attention, clip skip.
#include <gtest/gtest.h>

#include "core/error.h"
#include "io/checkpoint.h"
#include "io/state_dict.h"
#include "models/clip/clip_text.h"

using namespace loupe;

static clip::ClipTextModel load() {
  const std::string dir = std::string(LOUPE_FIXTURES_DIR) + "/sd/tiny-clip-text";
  clip::ClipTextModel m(clip::TextConfig::load(dir + "/config.json"));
  io::BindOptions o;
  o.allow_missing = [](const std::string&) { return false; };
  auto report = io::bind(*m, io::Checkpoint::open(dir), o);
  EXPECT_EQ(report.unexpected, std::vector<std::string>{"text_model.embeddings.position_ids"});  // a buffer we compute
  m->eval();
  return m;
}

TEST(ClipText, LoadsAndEncodesWithACausalMask) {
  auto m = load();
  torch::NoGradGuard ng;
  auto ids = torch::randint(0, 1000, {1, 77}, torch::kLong);
  auto h = m->forward(ids);
  EXPECT_EQ(h.sizes(), (std::vector<int64_t>{1, 77, 32}));
  // changing the last token changes nothing before it; changing the first changes everything after
  auto ids2 = ids.clone();
  ids2.index_put_({0, 76}, (ids[0][76].item<int64_t>() + 1) % 1000);
  auto h2 = m->forward(ids2);
  EXPECT_TRUE(torch::allclose(h.narrow(1, 0, 76), h2.narrow(1, 0, 76), 1e-6, 1e-6));
  EXPECT_FALSE(torch::allclose(h.narrow(1, 76, 1), h2.narrow(1, 76, 1)));
}

TEST(ClipText, ClipSkipUsesAnEarlierLayer) {
  auto m = load();
  torch::NoGradGuard ng;
  auto ids = torch::randint(0, 1000, {2, 10}, torch::kLong);
  auto last = m->forward(ids, 1), penultimate = m->forward(ids, 2);
  EXPECT_FALSE(torch::allclose(last, penultimate));
  EXPECT_THROW(m->forward(ids, 4), Error);  // 3 layers
  EXPECT_THROW(m->forward(torch::zeros({1, 78}, torch::kLong)), Error);
}
