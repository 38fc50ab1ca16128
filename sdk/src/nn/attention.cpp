#include "nn/attention.h"

#include <algorithm>
#include <cmath>

#include <ATen/Parallel.h>

#include "core/torch_compat.h"

namespace loupe::nn {

namespace {
// Below this many scores per head the plain formulation is as fast (and it is what the GPU uses).
constexpr int64_t kBlockedMinScores = 512 * 512;
// With oneDNN: scores of one block of one head (oneDNN's path runs a head per thread).
constexpr int64_t kOneDnnBlockBytes = 16ll << 20;
// Without oneDNN: scores of one block, all heads, about 4 MiB of fp32 (stays in a large cache).
constexpr int64_t kBlockBytes = 4ll << 20;
}  // namespace

torch::Tensor attention_blocked(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, double scale,
                                int64_t rows) {
  TORCH_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4, "attention_blocked: q, k, v must be [B, H, L, D]");
  const int64_t B = q.size(0), H = q.size(1), L = q.size(2), D = q.size(3), S = k.size(2), Dv = v.size(3);
  const int64_t BH = B * H;
  const auto dt = q.scalar_type();
  // the scale goes into q once (L x D) instead of into every block of scores (L x S)
  const auto qs = (q.reshape({BH, L, D}) * scale).contiguous();
  auto out = torch::empty({BH, L, Dv}, q.options());
  if (at::hasMKLDNN() && (dt == torch::kFloat32 || dt == torch::kBFloat16)) {
    // oneDNN, one head at a time: scores = q k^T and out = p v are inner products with k [S, D] and
    // v^T [Dv, S] as weights, and the softmax runs on oneDNN's own tensor, so a block of scores
    // never leaves oneDNN (or the cache) between the two products. oneDNN's softmax accumulates in
    // fp32 for bf16.
    // The (head, block) pairs are shared among the threads in one parallel region, each pair run
    // on one thread: one fork/join per attention instead of several per block, which matters when
    // the cores are shared with other programs.
    if (rows <= 0) {
      // about 16 MiB of fp32 scores per block (1024 rows at SD's 4096 tokens: 5-15% faster than 128
      // rows per UNet step here), halved while there are too few (head, block) pairs to share out
      rows = std::clamp<int64_t>(kOneDnnBlockBytes / (S * 4), 128, L);
      while (rows > 128 && BH * ((L + rows - 1) / rows) < 4 * at::get_num_threads()) rows /= 2;
    }
    const int64_t blocks = (L + rows - 1) / rows;
    const auto kk = k.reshape({BH, S, D}).contiguous();
    const auto vt = v.reshape({BH, S, Dv}).transpose(1, 2).contiguous();  // [BH, Dv, S]
    at::parallel_for(0, BH * blocks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t w = begin; w < end; ++w) {
        const int64_t h = w / blocks, i = (w % blocks) * rows, n = std::min(rows, L - i);
        const auto scores = at::mkldnn_linear(qs[h].narrow(0, i, n).to_mkldnn(), kk[h], c10::nullopt);
        out[h].narrow(0, i, n).copy_(at::mkldnn_linear(at::softmax(scores, -1), vt[h], c10::nullopt).to_dense());
      }
    });
    return out.view({B, H, L, Dv});
  }
  // Without oneDNN: blocks of rows of every head at once through bmm, about 4 MiB of scores each.
  if (rows <= 0) rows = std::clamp<int64_t>(kBlockBytes / (BH * S * 4), 16, L);
  const bool low = dt != torch::kFloat32;
  const auto kt = k.reshape({BH, S, D}).transpose(1, 2).contiguous();  // [BH, D, S]
  const auto vv = v.reshape({BH, S, Dv}).contiguous();
  torch::Tensor scores, probs;
  for (int64_t i = 0; i < L; i += rows) {
    const int64_t n = std::min(rows, L - i);
    scores = torch::bmm(qs.narrow(1, i, n), kt);  // [BH, n, S], in cache
    if (low) {
      probs = torch::softmax(scores.to(torch::kFloat32), -1).to(dt);
    } else {
      at::_softmax_out(scores, scores, -1, false);  // in place: the kernel reads each row before writing it
      probs = scores;
    }
    out.narrow(1, i, n).copy_(torch::bmm(probs, vv));
  }
  return out.view({B, H, L, Dv});
}

torch::Tensor attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, const torch::Tensor& mask,
                        bool causal, c10::optional<double> scale) {
  const double s = scale.has_value() ? *scale : 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  if (q.device().is_cpu() && !mask.defined() && !causal && q.dim() == 4 && q.size(2) * k.size(2) >= kBlockedMinScores)
    return attention_blocked(q, k, v, s);
  return compat::sdpa(q, k, v, mask, causal, s);
}

}  // namespace loupe::nn
