// Shared layers: the blocked CPU attention equals the plain formulation (compat::sdpa).
#include <gtest/gtest.h>

#include "core/torch_compat.h"
#include "nn/attention.h"

using namespace loupe;

// Self-attention as in a UNet at 512 px (many query rows, blocks of rows) and cross-attention with 77
// text tokens; block sizes that do and do not divide the rows. fp32: equal up to rounding (1e-5).
TEST(Attention, BlockedEqualsPlainFormulation) {
  torch::manual_seed(3);
  for (auto [L, S] : {std::pair<int64_t, int64_t>{1000, 1000}, {1000, 77}, {4096, 64}}) {
    const auto q = torch::randn({2, 3, L, 40}), k = torch::randn({2, 3, S, 40}), v = torch::randn({2, 3, S, 40});
    const double s = 1.0 / std::sqrt(40.0);
    const auto ref = compat::sdpa(q, k, v, {}, false, s);
    for (int64_t rows : std::initializer_list<int64_t>{0, 64, 333, L}) {
      const auto got = nn::attention_blocked(q, k, v, s, rows);
      EXPECT_EQ(got.sizes(), ref.sizes());
      EXPECT_LT((got - ref).abs().max().item<float>(), 1e-5) << "L " << L << " S " << S << " rows " << rows;
    }
    // the dispatcher takes the blocked path for long CPU attention and gives the same
    EXPECT_LT((nn::attention(q, k, v, {}, false, s) - ref).abs().max().item<float>(), 1e-5);
  }
}

// bf16 inputs: scores and softmax run in fp32 per block (as fused kernels do), so the result is as
// close to the fp32 result as bf16 rounding of q, k, v and the output allows.
TEST(Attention, BlockedBf16StaysCloseToFp32) {
  torch::manual_seed(4);
  const auto q = torch::randn({1, 2, 600, 32}), k = torch::randn({1, 2, 600, 32}), v = torch::randn({1, 2, 600, 32});
  const double s = 1.0 / std::sqrt(32.0);
  const auto ref = compat::sdpa(q, k, v, {}, false, s);
  const auto got = nn::attention_blocked(q.to(torch::kBFloat16), k.to(torch::kBFloat16), v.to(torch::kBFloat16), s, 100);
  EXPECT_EQ(got.scalar_type(), torch::kBFloat16);
  EXPECT_LT((got.to(torch::kFloat32) - ref).abs().max().item<float>(), 3e-2);
}
