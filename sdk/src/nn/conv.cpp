#include "nn/conv.h"

#include <cstdlib>
#include <cstring>

#include "core/torch_compat.h"

#if LOUPE_WITH_DNNL
#include <dnnl.hpp>
#endif

namespace loupe::nn {

namespace {

#if LOUPE_WITH_DNNL
// Off unless LOUPE_CONV_WINOGRAD=1: faster, but each call holds blocked copies of its input and
// output and the transformed tiles (SD 1.5's VAE decode at 512 px, with the CPU block cache: 11.9 s
// instead of 19.9 s, peak RSS 6.1 GB instead of 3.1 GB). Read on every call (cheap next to a
// convolution of 128 x 128 outputs), so that a host or a test can switch it.
bool winograd_enabled() {
  const char* v = std::getenv("LOUPE_CONV_WINOGRAD");
  return v && (!std::strcmp(v, "1") || !std::strcmp(v, "on"));
}

// Output pixels from which a Winograd convolution pays for transforming its weights on every call
// (measured here: at 64 x 64 the transform costs more than the faster product saves; from 128 x
// 128 on, the whole call is 2.5-4x faster than the direct kernels).
constexpr int64_t kWinogradMinPixels = 128 * 128;

// fp32 3 x 3 convolution, stride 1, dilation 1, one group, on the CPU, through oneDNN's Winograd
// F(4x4, 3x3) kernels: the same convolution computed with a different algorithm (rounding differs:
// max |diff| from an fp64 result ~1e-5 at outputs of magnitude ~7, against ~2e-6 for the direct
// kernels). The weights are transformed on each call, not kept (4x their size). nullopt where
// oneDNN has no Winograd kernel for this processor or shape.
c10::optional<torch::Tensor> winograd(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias, int64_t pad) {
  using tag = dnnl::memory::format_tag;
  using dt = dnnl::memory::data_type;
  static const dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), K = weight.size(0);
  const dnnl::memory::dims src_d{N, C, H, W}, w_d{K, C, 3, 3}, dst_d{N, K, H + 2 * pad - 2, W + 2 * pad - 2};
  dnnl::convolution_forward::primitive_desc pd;
  try {
    dnnl::convolution_forward::desc d(dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_winograd,
                                      dnnl::memory::desc(src_d, dt::f32, tag::any), dnnl::memory::desc(w_d, dt::f32, tag::any),
                                      dnnl::memory::desc({K}, dt::f32, tag::x), dnnl::memory::desc(dst_d, dt::f32, tag::any),
                                      {1, 1}, {pad, pad}, {pad, pad});
    dnnl::primitive_attr attr;  // the scratchpad comes from libtorch's allocator (the CPU block cache)
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    pd = dnnl::convolution_forward::primitive_desc(d, attr, eng);
  } catch (const dnnl::error&) {
    return c10::nullopt;  // no Winograd kernel here
  }
  const auto xc = x.contiguous(), wc = weight.contiguous();
  const auto bc = bias.defined() ? bias.contiguous() : torch::zeros({K}, x.options());
  auto buffer = [](const dnnl::memory::desc& md) { return torch::empty({static_cast<int64_t>(md.get_size())}, torch::kUInt8); };
  auto src_buf = buffer(pd.src_desc()), w_buf = buffer(pd.weights_desc()), dst_buf = buffer(pd.dst_desc()),
       scratch_buf = buffer(pd.scratchpad_desc());
  dnnl::memory src(pd.src_desc(), eng, src_buf.data_ptr()), w(pd.weights_desc(), eng, w_buf.data_ptr()),
      dst(pd.dst_desc(), eng, dst_buf.data_ptr()), scratch(pd.scratchpad_desc(), eng, scratch_buf.data_ptr());
  dnnl::memory x_user({src_d, dt::f32, tag::nchw}, eng, xc.data_ptr()), w_user({w_d, dt::f32, tag::oihw}, eng, wc.data_ptr()),
      b({{K}, dt::f32, tag::x}, eng, bc.data_ptr());
  auto out = torch::empty({dst_d[0], dst_d[1], dst_d[2], dst_d[3]}, x.options());
  dnnl::memory o_user({dst_d, dt::f32, tag::nchw}, eng, out.data_ptr());
  dnnl::stream s(eng);
  dnnl::reorder(x_user, src).execute(s, x_user, src);
  dnnl::reorder(w_user, w).execute(s, w_user, w);
  dnnl::convolution_forward(pd).execute(s, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, w}, {DNNL_ARG_BIAS, b}, {DNNL_ARG_DST, dst},
                                               {DNNL_ARG_SCRATCHPAD, scratch}});
  dnnl::reorder(dst, o_user).execute(s, dst, o_user);
  s.wait();
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
