#include "nn/pil_resize.h"

#include <cmath>
#include <vector>

#include "core/error.h"

namespace loupe::nn {

namespace {

double bicubic(double x) {  // Keys, a = -0.5, support 2
  constexpr double a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

double bilinear(double x) {  // support 1
  if (x < 0.0) x = -x;
  return x < 1.0 ? 1.0 - x : 0.0;
}

constexpr int kPrecisionBits = 32 - 8 - 2;

// precompute_coeffs + normalize_coeffs_8bpc of PIL's Resample.c for one axis.
void axis_weights(int in_size, int out_size, PilFilter f, torch::Tensor* index, torch::Tensor* weight) {
  const double support0 = f == PilFilter::Bicubic ? 2.0 : 1.0;
  const double scale = static_cast<double>(in_size) / out_size;
  const double filterscale = std::max(scale, 1.0);
  const double support = support0 * filterscale;
  const int ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  *index = torch::zeros({out_size, ksize}, torch::kInt64);
  *weight = torch::zeros({out_size, ksize}, torch::kInt32);
  auto ia = index->accessor<int64_t, 2>();
  auto wa = weight->accessor<int32_t, 2>();
  std::vector<double> k(ksize);
  for (int xx = 0; xx < out_size; ++xx) {
    const double center = (xx + 0.5) * scale;
    const double ss = 1.0 / filterscale;
    int xmin = static_cast<int>(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = static_cast<int>(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double ww = 0.0;
    for (int x = 0; x < xmax; ++x) {
      const double arg = (x + xmin - center + 0.5) * ss;
      k[x] = f == PilFilter::Bicubic ? bicubic(arg) : bilinear(arg);
      ww += k[x];
    }
    for (int x = 0; x < ksize; ++x) {
      ia[xx][x] = std::min(xmin + x, in_size - 1);
      if (x >= xmax) continue;
      const double v = ww != 0.0 ? k[x] / ww : k[x];
      wa[xx][x] = static_cast<int32_t>(v < 0 ? -0.5 + v * (1 << kPrecisionBits) : 0.5 + v * (1 << kPrecisionBits));
    }
  }
}

// One pass along dim 0 of [n, rest...] holding 0..255 (int32 sums, as PIL).
torch::Tensor pass(const torch::Tensor& t, int out_size, PilFilter f) {
  torch::Tensor index, weight;
  axis_weights(static_cast<int>(t.size(0)), out_size, f, &index, &weight);
  index = index.to(t.device());
  weight = weight.to(t.device());
  std::vector<int64_t> shape(t.dim(), 1);
  shape[0] = out_size;
  torch::Tensor acc;
  for (int64_t j = 0; j < index.size(1); ++j) {
    auto term = t.index_select(0, index.select(1, j)).to(torch::kInt32).mul_(weight.select(1, j).view(shape));
    acc = acc.defined() ? acc.add_(term) : term.add_(1 << (kPrecisionBits - 1));
  }
  return torch::div(acc, 1 << kPrecisionBits, "floor").clamp_(0, 255).to(torch::kUInt8);
}

}  // namespace

torch::Tensor pil_resize(const torch::Tensor& hwc, int out_w, int out_h, PilFilter filter) {
  LOUPE_CHECK(hwc.scalar_type() == torch::kUInt8 && (hwc.dim() == 2 || hwc.dim() == 3), InvalidArgument,
              "pil_resize: expects a [H, W] or [H, W, C] uint8 tensor, got " << hwc.sizes() << " " << hwc.scalar_type());
  LOUPE_CHECK(out_w > 0 && out_h > 0 && hwc.size(0) > 0 && hwc.size(1) > 0, InvalidArgument,
              "pil_resize: empty size (" << hwc.size(1) << "x" << hwc.size(0) << " -> " << out_w << "x" << out_h << ")");
  auto t = hwc;
  if (t.size(1) != out_w) t = pass(t.transpose(0, 1).contiguous(), out_w, filter).transpose(0, 1);  // horizontal
  if (t.size(0) != out_h) t = pass(t.contiguous(), out_h, filter);                                   // vertical
  return t.contiguous();
}

torch::Tensor hf_rescale_normalize(const torch::Tensor& hw3, bool do_rescale, double rescale_factor, bool do_normalize,
                                   const std::array<double, 3>& mean, const std::array<double, 3>& std) {
  auto x = hw3.permute({2, 0, 1}).unsqueeze(0).to(torch::kFloat64);
  if (do_rescale) x = x * rescale_factor;
  x = x.to(torch::kFloat32);
  if (do_normalize) {
    auto m = torch::tensor({mean[0], mean[1], mean[2]}).to(torch::kFloat32).view({1, 3, 1, 1});
    auto s = torch::tensor({std[0], std[1], std[2]}).to(torch::kFloat32).view({1, 3, 1, 1});
    x = (x - m) / s;
  }
  return x;
}

}  // namespace loupe::nn
