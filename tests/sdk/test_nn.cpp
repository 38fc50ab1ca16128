// Shared layers: the blocked CPU attention equals the plain formulation (compat::sdpa); linear layers and
// convolutions equal fp64 products on every path.
#include <gtest/gtest.h>

#include "core/torch_compat.h"
#include "nn/attention.h"
#include "nn/conv.h"
#include "nn/linear.h"
#include "nn/norm.h"

#include "../support/scoped_env.h"

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

// nn::linear: fp32 and bf16 products of 16 rows or more go to oneDNN on the CPU (its matmul on the
// caller's tensors, or libtorch's mkldnn_linear), fewer rows to torch::linear. Against an fp64
// product: with and without bias, 3-D and non-contiguous inputs, rows on both sides of the switch.
TEST(Linear, MatchesAnFp64ProductOnEveryPath) {
  torch::NoGradGuard ng;
  torch::manual_seed(5);
  // isa: the widest instruction set the few-row kernels may use (2 AVX-512, 1 AVX2, 0 torch's path;
  // a limit above what this CPU has takes the widest it has)
  for (const int isa : {2, 1, 0}) {
    const int before = nn::testing_limit_row_kernels(isa);
    for (const auto dt : {torch::kFloat32, torch::kBFloat16}) {
      // in = 72: a 64-wide main loop and an 8-wide remainder; 100: a scalar tail as well
      for (const int64_t in : {72, 100}) {
        for (const int64_t rows : {1, 2, 3, 5, 8, 9, 15, 16, 77, 300}) {
          if (isa != 2 && rows >= 16) continue;  // the few-row kernels end at 16 rows
          for (const bool bias : {true, false}) {
            SCOPED_TRACE(std::string(dt == torch::kFloat32 ? "fp32" : "bf16") + " isa " + std::to_string(isa) + " in " +
                         std::to_string(in) + " rows " + std::to_string(rows) + (bias ? " with bias" : " without bias"));
            nn::Linear lin(torch::nn::LinearOptions(in, 40).bias(bias));
            lin->to(dt);
            // [2, rows, in] seen through a transpose: not contiguous
            const auto x = torch::randn({2, in, rows}).to(dt).transpose(1, 2);
            const auto y = lin->forward(x);
            const auto ref = torch::linear(x.to(torch::kFloat64), lin->weight.to(torch::kFloat64),
                                           bias ? lin->bias.to(torch::kFloat64) : torch::Tensor());
            ASSERT_EQ(y.sizes(), ref.sizes());
            EXPECT_EQ(y.scalar_type(), dt);
            // bf16: the output's own rounding (values ~1, 8 bits of mantissa)
            EXPECT_LT((y.to(torch::kFloat64) - ref).abs().max().item<double>(), dt == torch::kFloat32 ? 1e-5 : 0.05);
          }
        }
      }
    }
    nn::testing_limit_row_kernels(before);
  }
}

// nn::GroupNorm / nn::LayerNorm: bf16 on the CPU is normalised in fp32 and rounded once, so the
// result is the fp32 norm of the same (bf16) input up to one bf16 rounding of the output; fp32 is
// torch's own norm.
TEST(Norms, Bf16IsTheFp32NormRoundedOnce) {
  torch::NoGradGuard ng;
  torch::manual_seed(6);
  nn::GroupNorm gn(torch::nn::GroupNormOptions(8, 32).eps(1e-5));
  nn::LayerNorm ln(torch::nn::LayerNormOptions({32}).eps(1e-5));
  for (auto* p : {&gn->weight, &gn->bias, &ln->weight, &ln->bias}) p->uniform_(-2, 2);
  const auto x = (torch::randn({2, 32, 6, 6}) * 3 + 1).to(torch::kBFloat16).to(torch::kFloat32);
  const auto xt = x.permute({0, 2, 3, 1}).contiguous();  // [2, 6, 6, 32] for the layer norm
  const auto gref = gn->forward(x), lref = ln->forward(xt);  // fp32: torch's
  EXPECT_TRUE(torch::equal(gref, torch::group_norm(x, 8, gn->weight, gn->bias, 1e-5)));
  gn->to(torch::kBFloat16);
  ln->to(torch::kBFloat16);
  const auto g = gn->forward(x.to(torch::kBFloat16)), l = ln->forward(xt.to(torch::kBFloat16));
  EXPECT_EQ(g.scalar_type(), torch::kBFloat16);
  EXPECT_EQ(l.scalar_type(), torch::kBFloat16);
  // the parameters went through bf16 too; outputs up to ~8, one rounding: 2^-8 relative
  const auto gb = torch::group_norm(x, 8, gn->weight.to(torch::kFloat32), gn->bias.to(torch::kFloat32), 1e-5);
  const auto lb = torch::layer_norm(xt, {32}, ln->weight.to(torch::kFloat32), ln->bias.to(torch::kFloat32), 1e-5);
  EXPECT_TRUE(torch::equal(g, gb.to(torch::kBFloat16)));
  EXPECT_TRUE(torch::equal(l, lb.to(torch::kBFloat16)));
  EXPECT_LT((g.to(torch::kFloat32) - gref).abs().max().item<float>(), 0.1);
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

// By default (LOUPE_CONV_WINOGRAD unset or 1), every 3 x 3 fp32 convolution with 32 x 32 outputs or
// more runs through oneDNN's Winograd kernels where the build has oneDNN (LOUPE_WITH_DNNL): the same
// convolution, rounded differently. The test runs with it on and off (0).
// Against an fp64 result, with and without padding and bias, batch 2, channel counts that are not
// multiples of 16; and the direct path below the size threshold. Winograd computes its output in
// bands of rows: whole (the default band size) and cut into many bands, the last one shorter than a
// 4-row tile (bands of 200 KB of input).
TEST(Conv2d, MatchesAnFp64ConvolutionOnEveryPath) {
  struct Mode {
    const char *winograd, *band_kb;
  };
  for (const auto& mode : {Mode{"1", nullptr}, Mode{"1", "200"}, Mode{"0", nullptr}}) {
  SCOPED_TRACE(std::string("LOUPE_CONV_WINOGRAD=") + mode.winograd + " LOUPE_CONV_WINOGRAD_BAND_KB=" +
               (mode.band_kb ? mode.band_kb : "(default)"));
  Env env("LOUPE_CONV_WINOGRAD", mode.winograd);
  Env band("LOUPE_CONV_WINOGRAD_BAND_KB", mode.band_kb);
  torch::NoGradGuard ng;
  torch::manual_seed(3);
  struct Case {
    int64_t n, c, k, hw, pad;
    bool bias;
  };
  for (const auto& t : {Case{1, 64, 64, 128, 1, true}, Case{2, 3, 5, 130, 1, false}, Case{1, 32, 48, 140, 0, true},
                        Case{1, 16, 16, 40, 1, true}, Case{2, 32, 32, 24, 1, true}}) {
    SCOPED_TRACE(std::to_string(t.c) + "->" + std::to_string(t.k) + " at " + std::to_string(t.hw));
    loupe::nn::Conv2d conv(torch::nn::Conv2dOptions(t.c, t.k, 3).padding(t.pad).bias(t.bias));
    const auto x = torch::randn({t.n, t.c, t.hw, t.hw});
    const auto y = conv->forward(x);
    const auto ref = torch::conv2d(x.to(torch::kFloat64), conv->weight.to(torch::kFloat64),
                                   t.bias ? conv->bias.to(torch::kFloat64) : torch::Tensor(), 1, t.pad);
    ASSERT_EQ(y.sizes(), ref.sizes());
    const double err = (y.to(torch::kFloat64) - ref).abs().max().item<double>();
    EXPECT_LT(err, 1e-4 * std::max(1.0, ref.abs().max().item<double>())) << err;
    // a weight changed in place (a LoRA merged) is used at once
    conv->weight.data().mul_(2);
    const auto y2 = conv->forward(x);
    const auto ref2 = torch::conv2d(x.to(torch::kFloat64), conv->weight.to(torch::kFloat64),
                                    t.bias ? conv->bias.to(torch::kFloat64) : torch::Tensor(), 1, t.pad);
    EXPECT_LT((y2.to(torch::kFloat64) - ref2).abs().max().item<double>(), 2e-4 * std::max(1.0, ref2.abs().max().item<double>()));
  }
}
}
