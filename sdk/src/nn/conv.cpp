#include "nn/conv.h"

#include <cstdlib>
#include <cstring>
#include <vector>

#include <ATen/record_function.h>

#include "core/torch_compat.h"

#include "nn/onednn.h"

namespace loupe::nn {

namespace {

#if LOUPE_WITH_DNNL
// On unless LOUPE_CONV_WINOGRAD=0 (or off). Read on every call (cheap next to a convolution of
// 32 x 32 outputs), so that a host or a test can switch it.
bool winograd_enabled() {
  const char* v = std::getenv("LOUPE_CONV_WINOGRAD");
  return !(v && (!std::strcmp(v, "0") || !std::strcmp(v, "off")));
}

// Output pixels from which a Winograd convolution pays. Measured here against libtorch's direct
// kernels, batch 2, whole calls: 320 -> 320 channels at 64 x 64 (SD's UNet at 512 px) 103 -> 80 ms,
// 640 -> 320 184 -> 120 ms, 640 -> 640 at 32 x 32 91 -> 85 ms, but 1280 -> 1280 at 16 x 16 125 ->
// 220 ms (the weights' transform, per call, and its 4x-sized buffer weigh more there). SD 1.5's
// UNet step, paired runs: 32 x 32 and up 11.7 s, 16 x 16 and up 12.0 s with 230 MB more peak RSS.
constexpr int64_t kWinogradMinPixels = 32 * 32;

// Bytes of input per band (below): small enough that the blocked copies and the transformed tiles
// of a band stay a few tens of MB, large enough that each band still spreads over many cores.
// LOUPE_CONV_WINOGRAD_BAND_KB sets another size (tuning; the tests use it to cut small inputs into
// many bands).
int64_t winograd_band_bytes() {
  const char* v = std::getenv("LOUPE_CONV_WINOGRAD_BAND_KB");
  const long long kb = v ? std::atoll(v) : 0;
  return kb > 0 ? int64_t(kb) << 10 : int64_t(16) << 20;
}

// fp32 3 x 3 convolution, stride 1, dilation 1, one group, on the CPU, through oneDNN's Winograd
// F(4x4, 3x3) kernels: the same convolution computed with a different algorithm (rounding differs:
// max |diff| from an fp64 result ~1e-5 at outputs of magnitude ~7, against ~2e-6 for the direct
// kernels). The output is computed in bands of rows: each band reads its rows of the input (and one
// row above and below) straight from the caller's tensor, and writes its rows of the output in
// place, so the blocked copies and the transformed tiles oneDNN needs exist for one band at a time
// (at SD's VAE decode, 512 x 512 x 256: ~50 MB instead of ~2 GB per call). The weights are copied
// into oneDNN's blocked layout once per call and transformed by the primitive's own JIT kernel on
// each band (oneDNN's training-mode primitive: its inference mode wants them pre-transformed into
// a Winograd layout, and its reorder to that layout took 80 ms for 320 x 320 weights and 1 s for
// 1280 x 1280 here, more than the convolution itself; keeping them transformed would cost 4x their
// size in memory). nullopt where oneDNN has no Winograd kernel for this processor or shape.
c10::optional<torch::Tensor> winograd(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias, int64_t pad) {
  RECORD_FUNCTION("loupe::winograd_convolution", std::vector<c10::IValue>({x}));  // seen by profilers
  using tag = dnnl::memory::format_tag;
  using dt = dnnl::memory::data_type;
  using md = dnnl::memory::desc;
  const auto& eng = onednn::cpu();
  const auto xc = x.contiguous(), wc = weight.contiguous();
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), K = weight.size(0);
  const int64_t OH = H + 2 * pad - 2, OW = W + 2 * pad - 2;
  // output rows per band: a multiple of the 4-row tile, at least one tile
  const int64_t rows =
      std::min(OH, std::max<int64_t>(4, winograd_band_bytes() / std::max<int64_t>(1, N * C * W * 4) / 4 * 4));

  // The bands (output rows [r0, r0 + n), the input rows they read and the padding they need) and
  // one primitive per band shape: top, middle, bottom and a shorter last band differ only in their
  // height and padding. Every primitive first: all or none of the output goes through Winograd.
  struct Band {
    int64_t r0, n, in0, in_rows, pad_t, pad_b;
    size_t prim;
  };
  struct Prim {
    dnnl::convolution_forward::primitive_desc pd;
    dnnl::convolution_forward exec;
    torch::Tensor weights;  // in this primitive's layout
  };
  std::vector<Band> bands;
  std::vector<Prim> prims;
  for (int64_t r0 = 0; r0 < OH; r0 += rows) {
    const int64_t n = std::min(rows, OH - r0), lo = r0 - pad, hi = r0 + n + 2 - pad;  // input rows [lo, hi), unclipped
    Band b{r0, n, std::max<int64_t>(lo, 0), std::min(hi, H) - std::max<int64_t>(lo, 0), std::max<int64_t>(0, -lo),
           std::max<int64_t>(0, hi - H), prims.size()};
    for (const auto& o : bands)
      if (o.n == b.n && o.pad_t == b.pad_t && o.pad_b == b.pad_b) b.prim = o.prim;
    if (b.prim == prims.size()) {
      try {
        dnnl::convolution_forward::desc d(dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_winograd,
                                          md({N, C, b.in_rows, W}, dt::f32, tag::any), md({K, C, 3, 3}, dt::f32, tag::any),
                                          md({K}, dt::f32, tag::x), md({N, K, n, OW}, dt::f32, tag::any), {1, 1},
                                          {b.pad_t, pad}, {b.pad_b, pad});
        dnnl::convolution_forward::primitive_desc pd(d, onednn::user_scratchpad(), eng);
        prims.push_back({pd, dnnl::convolution_forward(pd), {}});
      } catch (const dnnl::error&) {
        return c10::nullopt;  // no Winograd kernel here
      }
    }
    bands.push_back(b);
  }

  dnnl::stream s(eng);
  using onednn::buffer;
  // the weights in each primitive's layout, once per layout; one set of buffers for every band (the largest's)
  size_t src_bytes = 0, dst_bytes = 0, scratch_bytes = 0;
  for (size_t i = 0; i < prims.size(); ++i) {
    auto& p = prims[i];
    for (size_t j = 0; j < i && !p.weights.defined(); ++j)
      if (prims[j].pd.weights_desc() == p.pd.weights_desc()) p.weights = prims[j].weights;
    if (!p.weights.defined()) {
      p.weights = buffer(p.pd.weights_desc().get_size());
      dnnl::memory w_user({{K, C, 3, 3}, dt::f32, tag::oihw}, eng, wc.data_ptr()), w(p.pd.weights_desc(), eng, p.weights.data_ptr());
      dnnl::reorder(w_user, w).execute(s, w_user, w);
    }
    src_bytes = std::max(src_bytes, p.pd.src_desc().get_size());
    dst_bytes = std::max(dst_bytes, p.pd.dst_desc().get_size());
    scratch_bytes = std::max(scratch_bytes, p.pd.scratchpad_desc().get_size());
  }
  const auto src_buf = buffer(src_bytes), dst_buf = buffer(dst_bytes), scratch_buf = buffer(scratch_bytes);
  const auto bc = bias.defined() ? bias.contiguous() : torch::zeros({K}, x.options());
  dnnl::memory b_mem({{K}, dt::f32, tag::x}, eng, bc.data_ptr());
  auto out = torch::empty({N, K, OH, OW}, x.options());
  for (const auto& b : bands) {
    const auto& pd = prims[b.prim].pd;
    dnnl::memory src(pd.src_desc(), eng, src_buf.data_ptr()), dst(pd.dst_desc(), eng, dst_buf.data_ptr()),
        scratch(pd.scratchpad_desc(), eng, scratch_buf.data_ptr()), w(pd.weights_desc(), eng, prims[b.prim].weights.data_ptr());
    // this band's rows of the input and of the output, in the caller's NCHW tensors
    dnnl::memory x_user(md({N, C, b.in_rows, W}, dt::f32, {C * H * W, H * W, W, 1}), eng, xc.data_ptr<float>() + b.in0 * W);
    dnnl::memory o_user(md({N, K, b.n, OW}, dt::f32, {K * OH * OW, OH * OW, OW, 1}), eng, out.data_ptr<float>() + b.r0 * OW);
    dnnl::reorder(x_user, src).execute(s, x_user, src);
    prims[b.prim].exec.execute(s, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, w}, {DNNL_ARG_BIAS, b_mem}, {DNNL_ARG_DST, dst},
                                   {DNNL_ARG_SCRATCHPAD, scratch}});
    dnnl::reorder(dst, o_user).execute(s, dst, o_user);
  }
  s.wait();  // an in-order stream: each band's work ends before the next one reuses the buffers
  return out;
}
#endif

}  // namespace

torch::Tensor Conv2dImpl::forward(const torch::Tensor& x) {
  const auto* pad = compat::variant_get_if<torch::ExpandingArray<2>>(options.padding());
  const auto dt = x.scalar_type();
  if (pad && x.is_cpu() && x.dim() == 4 && (dt == torch::kFloat32 || dt == torch::kBFloat16) &&
      weight.scalar_type() == dt && at::hasMKLDNN() && compat::variant_get_if<torch::enumtype::kZeros>(options.padding_mode()) &&
      !(at::GradMode::is_enabled() && (x.requires_grad() || weight.requires_grad()))) {
#if LOUPE_WITH_DNNL
    const auto& k = *options.kernel_size();
    const auto& st = *options.stride();
    const auto& dil = *options.dilation();
    if (dt == torch::kFloat32 && k[0] == 3 && k[1] == 3 && st[0] == 1 && st[1] == 1 && dil[0] == 1 && dil[1] == 1 &&
        options.groups() == 1 && (**pad)[0] == (**pad)[1] && (**pad)[0] <= 1 && x.size(2) * x.size(3) >= kWinogradMinPixels &&
        (!bias.defined() || bias.scalar_type() == dt) && winograd_enabled())
      if (auto y = winograd(x, weight, bias, (**pad)[0])) return *y;
#endif
    return at::mkldnn_convolution(x.contiguous(), weight, bias.defined() ? c10::optional<at::Tensor>(bias) : c10::nullopt,
                                  *pad, *options.stride(), *options.dilation(), options.groups());
  }
  return torch::nn::Conv2dImpl::forward(x);
}

}  // namespace loupe::nn
