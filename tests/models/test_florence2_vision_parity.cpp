// Florence-2 vision features against the original remote code of the first releases (DaViT, the
// position embeddings and the projection from modeling_florence2.py, run on tiny-original's
// weights by tests/fixtures/gen/florence2_vision_reference.py). tiny and tiny-original hold the
// same weights (test_florence2.cpp: OriginalLayoutGivesTheSameModel); both layouts are checked.
#include <gtest/gtest.h>

#include "io/checkpoint.h"
#include "io/state_dict.h"
#include "models/florence2/modeling.h"

using namespace loupe;
using namespace loupe::florence2;

TEST(Florence2Parity, VisionFeaturesMatchTheOriginalCode) {
  torch::NoGradGuard ng;
  const std::string fx = std::string(LOUPE_FIXTURES_DIR) + "/florence2";
  auto ref = io::Checkpoint::open(fx + "/tiny-original-vision.safetensors");
  auto cfg = Config::load(fx + "/tiny");
  Florence2 net(cfg);
  net->eval();
  io::BindOptions o;
  o.strict = false;  // the tiny checkpoint stores tied embeddings once
  io::bind(*net, io::Checkpoint::open(fx + "/tiny"), o);
  const auto feats = net->image_features(ref.load("pixel_values"));
  const auto want = ref.load("image_features");
  ASSERT_EQ(feats.sizes(), want.sizes());
  // fp32 on CPU: 1e-4 absolute (features are O(1) after the projection's LayerNorm)
  EXPECT_LT((feats - want).abs().max().item<double>(), 1e-4);
}
