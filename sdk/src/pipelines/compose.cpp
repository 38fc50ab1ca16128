#include "pipelines/compose.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/error.h"

namespace loupe::pipelines {

namespace F = torch::nn::functional;

Rect mask_bounds(const Image& mask) {
  int x0 = mask.width, y0 = mask.height, x1 = -1, y1 = -1;
  for (int y = 0; y < mask.height; ++y) {
    const uint8_t* row = mask.row(y);
    for (int x = 0; x < mask.width; ++x) {
      if (row[x * mask.channels]) {
        x0 = std::min(x0, x); x1 = std::max(x1, x);
        y0 = std::min(y0, y); y1 = std::max(y1, y);
      }
    }
  }
  if (x1 < 0) return {};
  return {x0, y0, x1 - x0 + 1, y1 - y0 + 1};
}

Rect crop_region(Rect r, int padding, int aw, int ah, int W, int H) {
  int x0 = std::max(0, r.x - padding), y0 = std::max(0, r.y - padding);
  int x1 = std::min(W, r.x + r.w + padding), y1 = std::min(H, r.y + r.h + padding);
  // widen or heighten to the target aspect ratio, centred, within the image
  const double target = double(aw) / ah;
  int w = x1 - x0, h = y1 - y0;
  if (double(w) / h < target) {
    const int want = std::min(W, int(std::ceil(h * target)));
    const int grow = want - w;
    x0 = std::max(0, x0 - grow / 2);
    x1 = std::min(W, x0 + want);
    x0 = std::max(0, x1 - want);
  } else {
    const int want = std::min(H, int(std::ceil(w / target)));
    const int grow = want - h;
    y0 = std::max(0, y0 - grow / 2);
    y1 = std::min(H, y0 + want);
    y0 = std::max(0, y1 - want);
  }
  return {x0, y0, x1 - x0, y1 - y0};
}

torch::Tensor image_to_tensor(const Image& img) {
  auto t = torch::from_blob(const_cast<uint8_t*>(img.pixels.data()), {img.height, img.width, img.channels}, torch::kUInt8);
  return t.permute({2, 0, 1}).unsqueeze(0).to(torch::kFloat32) / 255.0;
}

Image hwc_to_image(const torch::Tensor& t) {
  const auto c = t.to(torch::kCPU, torch::kUInt8).contiguous();
  Image out;
  out.height = static_cast<int>(c.size(0));
  out.width = static_cast<int>(c.size(1));
  out.channels = 3;
  out.pixels.assign(c.data_ptr<uint8_t>(), c.data_ptr<uint8_t>() + c.numel());
  return out;
}

Image tensor_to_image(const torch::Tensor& t) {
  auto u = (t[0].clamp(0, 1) * 255.0).round().to(torch::kUInt8).permute({1, 2, 0}).contiguous().cpu();
  Image img;
  img.height = static_cast<int>(u.size(0));
  img.width = static_cast<int>(u.size(1));
  img.channels = static_cast<int>(u.size(2));
  img.pixels.assign(u.data_ptr<uint8_t>(), u.data_ptr<uint8_t>() + u.numel());
  return img;
}

Image crop(const Image& img, const Rect& r) {
  Image out;
  out.width = r.w;
  out.height = r.h;
  out.channels = img.channels;
  out.pixels.resize(out.bytes());
  for (int y = 0; y < r.h; ++y)
    std::copy_n(img.row(r.y + y) + size_t(r.x) * img.channels, size_t(r.w) * img.channels, out.row(y));
  return out;
}

torch::Tensor resize(const torch::Tensor& t, int w, int h) {
  if (t.size(2) == h && t.size(3) == w) return t;
  const bool shrink = h < t.size(2) || w < t.size(3);
  return F::interpolate(t, F::InterpolateFuncOptions()
                               .size(std::vector<int64_t>{h, w})
                               .mode(torch::kBicubic)
                               .align_corners(false)
                               .antialias(shrink))
      .clamp(0, 1);
}

torch::Tensor blur_mask(const torch::Tensor& mask, double sigma) {
  if (sigma <= 0) return mask;
  const int r = std::max(1, int(std::ceil(3 * sigma)));
  auto k = torch::arange(-r, r + 1, torch::kFloat32);
  k = torch::exp(-(k * k) / (2 * sigma * sigma));
  k = k / k.sum();
  auto pad = [&](const torch::Tensor& x, std::vector<int64_t> p) { return F::pad(x, F::PadFuncOptions(p).mode(torch::kReplicate)); };
  auto x = F::conv2d(pad(mask, {r, r, 0, 0}), k.view({1, 1, 1, -1}));
  return F::conv2d(pad(x, {0, 0, r, r}), k.view({1, 1, -1, 1}));
}

torch::Tensor model_mask(const torch::Tensor& mask, double blur) {
  if (blur <= 0) return (mask >= 0.5).to(torch::kFloat32);
  return torch::max((blur_mask(mask, blur) > 0.1).to(torch::kFloat32), (mask >= 0.5).to(torch::kFloat32));
}

torch::Tensor feather_alpha(const Image& mask, double feather) {
  const int W = mask.width, H = mask.height;
  std::vector<float> alpha(size_t(W) * H, 0.0f);
  if (feather <= 0) {
    for (int y = 0; y < H; ++y)
      for (int x = 0; x < W; ++x) alpha[size_t(y) * W + x] = mask.row(y)[x * mask.channels] >= 128 ? 1.0f : 0.0f;
  } else {
    // distance (chamfer 3-4, in pixels) from each painted pixel to the nearest unpainted one;
    // the image border counts as painted, so a mask touching the edge is not faded there
    const float inf = std::numeric_limits<float>::max() / 4;
    std::vector<float> d(size_t(W) * H);
    for (int y = 0; y < H; ++y)
      for (int x = 0; x < W; ++x) d[size_t(y) * W + x] = mask.row(y)[x * mask.channels] >= 128 ? inf : 0.0f;
    auto at = [&](int x, int y) -> float { return (x < 0 || y < 0 || x >= W || y >= H) ? inf : d[size_t(y) * W + x]; };
    for (int y = 0; y < H; ++y)
      for (int x = 0; x < W; ++x) {
        float& v = d[size_t(y) * W + x];
        if (v == 0) continue;
        v = std::min({v, at(x - 1, y) + 1.0f, at(x, y - 1) + 1.0f, at(x - 1, y - 1) + 1.4142f, at(x + 1, y - 1) + 1.4142f});
      }
    for (int y = H - 1; y >= 0; --y)
      for (int x = W - 1; x >= 0; --x) {
        float& v = d[size_t(y) * W + x];
        if (v == 0) continue;
        v = std::min({v, at(x + 1, y) + 1.0f, at(x, y + 1) + 1.0f, at(x + 1, y + 1) + 1.4142f, at(x - 1, y + 1) + 1.4142f});
      }
    for (size_t i = 0; i < d.size(); ++i) {
      if (d[i] == 0) continue;
      const double t = std::clamp((d[i] - 0.5) / feather, 0.0, 1.0);  // the first painted pixel is at 1
      alpha[i] = float(t * t * (3 - 2 * t));
      if (alpha[i] <= 0) alpha[i] = 1e-3f;  // painted pixels always take some of the result
    }
  }
  return torch::from_blob(alpha.data(), {1, 1, H, W}, torch::kFloat32).clone();
}

Image color_correct(const Image& gen, const Image& orig, const Image& mask, int band) {
  const int W = orig.width, H = orig.height;
  // the ring: unpainted pixels within `band` of a painted one
  std::vector<uint8_t> painted(size_t(W) * H);
  for (int y = 0; y < H; ++y)
    for (int x = 0; x < W; ++x) painted[size_t(y) * W + x] = mask.row(y)[x * mask.channels] >= 128;
  auto m = torch::from_blob(painted.data(), {1, 1, H, W}, torch::kUInt8).to(torch::kFloat32);
  auto near = F::max_pool2d(m, F::MaxPool2dFuncOptions(2 * band + 1).stride(1).padding(band));
  auto ring = ((near > 0) & (m == 0)).view({-1});
  if (ring.sum().item<int64_t>() < 16) return gen;  // nothing to measure against
  auto g = image_to_tensor(gen)[0].view({3, -1}), o = image_to_tensor(orig)[0].view({3, -1});
  auto gr = g.index({torch::indexing::Slice(), ring}), orr = o.index({torch::indexing::Slice(), ring});
  auto gm = gr.mean(1, true), om = orr.mean(1, true);
  auto gs = gr.std(1, true, true).clamp_min(1e-3), os = orr.std(1, true, true).clamp_min(1e-3);
  auto scale = (os / gs).clamp(0.5, 2.0);  // a bounded correction: never invert or blow up contrast
  auto out = ((g - gm) * scale + om).view({1, 3, H, W});
  return tensor_to_image(out);
}

Image composite(const Image& orig, const Image& gen, const torch::Tensor& alpha) {
  if (orig.width != gen.width || orig.height != gen.height || orig.channels != gen.channels)
    LOUPE_THROW(Internal, "composite: sizes differ");
  Image out = orig;
  auto a = alpha.contiguous();
  const float* ap = a.data_ptr<float>();
  const int C = orig.channels;
  for (int y = 0; y < orig.height; ++y) {
    const uint8_t* g = gen.row(y);
    uint8_t* o = out.row(y);
    for (int x = 0; x < orig.width; ++x) {
      const float al = ap[size_t(y) * orig.width + x];
      if (al <= 0) continue;  // untouched: the original bytes
      for (int c = 0; c < C; ++c) {
        const float v = o[x * C + c] * (1 - al) + g[x * C + c] * al;
        o[x * C + c] = static_cast<uint8_t>(std::clamp(std::lround(v), 0L, 255L));
      }
    }
  }
  return out;
}

Image inpaint_around(const Image& src, const Image& mask, const InpaintSettings& s,
                     const std::function<torch::Tensor(const torch::Tensor& image, const torch::Tensor& mask)>& run) {
  const int m = std::max(1, s.multiple);
  auto round_to = [m](double v) { return std::max(m, int(std::lround(v / m)) * m); };
  if (mask.width != src.width || mask.height != src.height)
    LOUPE_THROW(InvalidArgument, "the mask is " << mask.width << "x" << mask.height << " but the image is " << src.width << "x"
                                                << src.height << "; they must be the same size");
  const Rect painted = mask_bounds(mask);
  if (painted.empty()) LOUPE_THROW(InvalidArgument, "the mask is empty: paint the area to repaint in white");
  Rect region{0, 0, src.width, src.height};
  int pw = s.width, ph = s.height;
  if (s.only_masked) {
    if (pw == 0 || ph == 0) {
      const Rect grown = crop_region(painted, s.padding, painted.w, painted.h, src.width, src.height);
      const double k = double(s.native) / std::max(grown.w, grown.h);
      pw = round_to(grown.w * k);
      ph = round_to(grown.h * k);
    }
    region = crop_region(painted, s.padding, pw, ph, src.width, src.height);
  } else {
    if (pw == 0) pw = round_to(src.width);
    if (ph == 0) ph = round_to(src.height);
  }
  if (pw % m || ph % m)
    LOUPE_THROW(InvalidArgument, "inpaint: width and height must be multiples of " << m << " (got " << pw << "x" << ph << ")");
  const Image src_crop = crop(src, region), mask_crop = crop(mask, region);
  auto x = resize(image_to_tensor(src_crop), pw, ph) * 2 - 1;
  auto mm = model_mask(image_to_tensor(mask_crop), s.mask_blur * std::max(double(pw) / region.w, 1.0));
  mm = F::interpolate(mm, F::InterpolateFuncOptions().size(std::vector<int64_t>{ph, pw}).mode(torch::kBilinear).align_corners(false));
  mm = (mm > 0.01).to(torch::kFloat32);  // resizing must not shrink the model's mask
  auto out = run(x, mm);
  Image gen = tensor_to_image(resize(out, region.w, region.h));
  if (s.color_correction) gen = color_correct(gen, src_crop, mask_crop, std::max(4, int(s.feather) + 4));
  Image gen_full = src;
  for (int y = 0; y < region.h; ++y)
    std::copy_n(gen.row(y), size_t(region.w) * 3, gen_full.row(region.y + y) + size_t(region.x) * 3);
  return composite(src, gen_full, feather_alpha(mask, s.feather));
}

}  // namespace loupe::pipelines
