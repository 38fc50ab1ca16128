// Florence-2 against the original remote code of the first releases (modeling_florence2.py: DaViT,
// position embeddings, projection, and the BART encoder/decoder), run on tiny-original's weights by
// tests/fixtures/gen/florence2_original_reference.py. tiny and tiny-original hold the
// same weights (test_florence2.cpp: OriginalLayoutGivesTheSameModel); both layouts are checked.
#include <gtest/gtest.h>

#include <vector>

#include "io/checkpoint.h"
#include "io/state_dict.h"
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
