#include "nn/attention.h"

#include <algorithm>
#include <cmath>

#include <ATen/Parallel.h>
#include <ATen/record_function.h>

#include "core/torch_compat.h"
#include "nn/onednn.h"

namespace loupe::nn {

namespace {
// Below this many scores per head the plain formulation is as fast (and it is what the GPU uses).
constexpr int64_t kBlockedMinScores = 512 * 512;
// With oneDNN's API: fp32 scores of one block of one head (a block runs on one thread), within a
// core's L2 cache.
constexpr int64_t kOneDnnBlockBytes = 1ll << 20;
// Through libtorch's mkldnn_linear: scores of one block of one head (fewer, larger calls pay
// for its per-call conversions).
constexpr int64_t kMkldnnBlockBytes = 16ll << 20;
// Without oneDNN: scores of one block, all heads, about 4 MiB of fp32 (stays in a large cache).
constexpr int64_t kBlockBytes = 4ll << 20;

// Rows per block for `bytes` of fp32 scores per head, halved while there are too few (head, block)
// pairs to share among the threads.
int64_t block_rows(int64_t bytes, int64_t BH, int64_t L, int64_t S) {
  int64_t rows = std::clamp<int64_t>(bytes / (S * 4), 16, L);
  while (rows > 16 && BH * ((L + rows - 1) / rows) < 4 * at::get_num_threads()) rows /= 2;
  return rows;
}

#if LOUPE_WITH_DNNL
// oneDNN's primitives on the caller's plain tensors, one (head, block of rows) per thread at a
// time: scores = q k^T in fp32, probabilities = softmax(scores) in the model's dtype, out = p v;
// a block's scores stay in the core's cache from the first product to the second. qs [BH, L, D]
// (already scaled), k [BH, S, D], v [BH, S, Dv], out [BH, L, Dv], all contiguous.
void attention_onednn(const torch::Tensor& qs, const torch::Tensor& k, const torch::Tensor& v, torch::Tensor& out,
                      int64_t rows) {
  RECORD_FUNCTION("loupe::attention", std::vector<c10::IValue>({qs}));  // seen by profilers
  using md = dnnl::memory::desc;
  const int64_t BH = qs.size(0), L = qs.size(1), D = qs.size(2), S = k.size(1), Dv = v.size(2);
  const auto t = onednn::data_type(qs.scalar_type());
  const auto f32 = dnnl::memory::data_type::f32;
  const auto& eng = onednn::cpu();
  struct Block {
    md q, k, s, p, v, o;
    dnnl::matmul::primitive_desc qk_pd, pv_pd;
    dnnl::softmax_v2_forward::primitive_desc sm_pd;
    dnnl::matmul qk, pv;
    dnnl::softmax_v2_forward sm;
  };
  auto make = [&](int64_t n) {
    Block b{md({n, D}, t, {D, 1}), md({D, S}, t, {1, D}), md({n, S}, f32, {S, 1}), md({n, S}, t, {S, 1}),
            md({S, Dv}, t, {Dv, 1}), md({n, Dv}, t, {Dv, 1})};
    const auto attr = onednn::user_scratchpad();
    b.qk_pd = dnnl::matmul::primitive_desc(dnnl::matmul::desc(b.q, b.k, b.s), attr, eng);
    b.pv_pd = dnnl::matmul::primitive_desc(dnnl::matmul::desc(b.p, b.v, b.o), attr, eng);
    b.sm_pd = dnnl::softmax_v2_forward::primitive_desc(
        dnnl::softmax_v2_forward::desc(dnnl::prop_kind::forward_inference, dnnl::algorithm::softmax_accurate, b.s, b.p, 1),
        attr, eng);
    b.qk = dnnl::matmul(b.qk_pd);
    b.pv = dnnl::matmul(b.pv_pd);
    b.sm = dnnl::softmax_v2_forward(b.sm_pd);
    return b;
  };
  const int64_t blocks = (L + rows - 1) / rows;
  const Block full = make(rows), tail = L % rows ? make(L % rows) : full;
  size_t scratch_bytes = 0;
  for (const auto* b : {&full, &tail})
    for (const auto& d : {b->qk_pd.scratchpad_desc(), b->pv_pd.scratchpad_desc(), b->sm_pd.scratchpad_desc()})
      scratch_bytes = std::max(scratch_bytes, d.get_size());
  const int64_t es = qs.element_size();
  auto* qp = static_cast<char*>(qs.data_ptr());
  auto* kp = static_cast<char*>(k.data_ptr());
  auto* vp = static_cast<char*>(v.data_ptr());
  auto* op = static_cast<char*>(out.data_ptr());
  at::parallel_for(0, BH * blocks, 1, [&](int64_t begin, int64_t end) {
    dnnl::stream s(eng);
    const auto scores = onednn::buffer(rows * S * 4), scratch = onednn::buffer(scratch_bytes);
    const auto probs = t == f32 ? scores : onednn::buffer(rows * S * es);
    for (int64_t w = begin; w < end; ++w) {
      const int64_t h = w / blocks, i = (w % blocks) * rows;
      const Block& b = i + rows <= L ? full : tail;
      const dnnl::memory sc(b.s, eng, scores.data_ptr()), pr(b.p, eng, probs.data_ptr()),
          pad(b.qk_pd.scratchpad_desc(), eng, scratch.data_ptr());
      b.qk.execute(s, {{DNNL_ARG_SRC, {b.q, eng, qp + (h * L + i) * D * es}},
                       {DNNL_ARG_WEIGHTS, {b.k, eng, kp + h * S * D * es}},
                       {DNNL_ARG_DST, sc},
                       {DNNL_ARG_SCRATCHPAD, pad}});
      b.sm.execute(s, {{DNNL_ARG_SRC, sc}, {DNNL_ARG_DST, pr}, {DNNL_ARG_SCRATCHPAD, {b.sm_pd.scratchpad_desc(), eng, scratch.data_ptr()}}});
      b.pv.execute(s, {{DNNL_ARG_SRC, pr},
                       {DNNL_ARG_WEIGHTS, {b.v, eng, vp + h * S * Dv * es}},
                       {DNNL_ARG_DST, {b.o, eng, op + (h * L + i) * Dv * es}},
                       {DNNL_ARG_SCRATCHPAD, {b.pv_pd.scratchpad_desc(), eng, scratch.data_ptr()}}});
    }
    s.wait();
  });
}
#endif
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
#if LOUPE_WITH_DNNL
  if (dt == torch::kFloat32 || dt == torch::kBFloat16) {
    attention_onednn(qs, k.reshape({BH, S, D}).contiguous(), v.reshape({BH, S, Dv}).contiguous(), out,
                     rows > 0 ? rows : block_rows(kOneDnnBlockBytes, BH, L, S));
    return out.view({B, H, L, Dv});
  }
#endif
  if (at::hasMKLDNN() && (dt == torch::kFloat32 || dt == torch::kBFloat16)) {
    // Without oneDNN's API, through libtorch's mkldnn_linear, one head at a time: scores = q k^T and
    // out = p v are inner products with k [S, D] and v^T [Dv, S] as weights, and the softmax runs
    // on oneDNN's own tensor. oneDNN's softmax accumulates in fp32 for bf16.
    // The (head, block) pairs are shared among the threads in one parallel region, each pair run
    // on one thread: one fork/join per attention instead of several per block, which matters when
    // the cores are shared with other programs.
    if (rows <= 0) rows = block_rows(kMkldnnBlockBytes, BH, L, S);
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
