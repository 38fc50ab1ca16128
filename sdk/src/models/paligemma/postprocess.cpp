#include "models/paligemma/postprocess.h"

#include <cmath>
#include <cstring>

#include <opencv2/imgproc.hpp>

#include "core/error.h"
#include "nn/pil_resize.h"

namespace loupe::paligemma {

namespace {

// Length in bytes of the Python whitespace character (str.isspace(), what `\s` matches in a str
// pattern) starting at s[i], or 0.
size_t py_space(const std::string& s, size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  if (c == ' ' || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f)) return 1;
  auto at = [&](size_t k) { return i + k < s.size() ? static_cast<unsigned char>(s[i + k]) : 0u; };
  if (c == 0xc2 && (at(1) == 0x85 || at(1) == 0xa0)) return 2;           // U+0085, U+00A0
  if (c == 0xe1 && at(1) == 0x9a && at(2) == 0x80) return 3;             // U+1680
  if (c == 0xe2 && at(1) == 0x80 && (at(2) <= 0x8a || at(2) == 0xa8 || at(2) == 0xa9 || at(2) == 0xaf))
    return at(2) >= 0x80 ? 3 : 0;                                         // U+2000..200A, 2028, 2029, 202F
  if (c == 0xe2 && at(1) == 0x81 && at(2) == 0x9f) return 3;             // U+205F
  if (c == 0xe3 && at(1) == 0x80 && at(2) == 0x80) return 3;             // U+3000
  return 0;
}

size_t skip_spaces(const std::string& s, size_t p) {
  while (p < s.size()) {
    const size_t k = py_space(s, p);
    if (!k) break;
    p += k;
  }
  return p;
}

std::string py_strip(const std::string& s) {
  size_t b = skip_spaces(s, 0);
  size_t e = s.size();
  while (e > b) {  // find the last non-space character
    size_t k = e - 1;
    while (k > b && (static_cast<unsigned char>(s[k]) & 0xc0) == 0x80) --k;  // start of the last UTF-8 char
    if (py_space(s, k) == e - k) e = k;
    else break;
  }
  return s.substr(b, e - b);
}

// "<" tag digits ">" at s[p] with exactly `ndigits` ASCII digits: the number, or -1.
int tag_at(const std::string& s, size_t p, const char* tag, int ndigits) {
  const size_t tl = std::strlen(tag);
  if (p + 1 + tl + ndigits + 1 > s.size() || s[p] != '<' || s.compare(p + 1, tl, tag) != 0) return -1;
  int v = 0;
  for (int k = 0; k < ndigits; ++k) {
    const char c = s[p + 1 + tl + k];
    if (c < '0' || c > '9') return -1;
    v = v * 10 + (c - '0');
  }
  return s[p + 1 + tl + ndigits] == '>' ? v : -1;
}

constexpr size_t kLocLen = 9, kSegLen = 8;  // "<loc0123>", "<seg012>"

bool four_locs(const std::string& s, size_t p, int bins[4]) {
  for (int k = 0; k < 4; ++k)
    if ((bins[k] = tag_at(s, p + k * kLocLen, "loc", 4)) < 0) return false;
  return true;
}

int to_pixel(int bin, int size) { return static_cast<int>(std::nearbyint(bin / 1024.0 * size)); }  // half-even

}  // namespace

std::vector<LocObject> parse_loc_objects(const std::string& text, int image_w, int image_h) {
  LOUPE_CHECK(image_w > 0 && image_h > 0, InvalidArgument,
              "PaliGemma output parsing: image size must be positive, got " << image_w << "x" << image_h);
  std::vector<LocObject> out;
  const size_t n = text.size();
  size_t pos = 0;
  while (pos < n) {
    // (.*?) then four <loc> tokens: the first place they start, with no line break before it
    int bins[4];
    size_t i = pos;
    bool found = false;
    for (; i < n; ++i) {
      if (four_locs(text, i, bins)) {
        found = true;
        break;
      }
      if (text[i] == '\n') break;
    }
    if (!found) break;
    size_t p = skip_spaces(text, i + 4 * kLocLen);
    LocObject o;
    std::vector<int64_t> seg;
    for (int k = 0; k < 16; ++k) {
      const int v = tag_at(text, p + k * kSegLen, "seg", 3);
      if (v < 0) break;
      seg.push_back(v);
    }
    if (seg.size() == 16) {
      o.seg = seg;
      p += 16 * kSegLen;
    }
    p = skip_spaces(text, p);
    size_t q = p;
    while (q < n && text[q] != ';' && text[q] != '<' && text[q] != '>') ++q;
    o.label = py_strip(text.substr(p, q - p));
    p = q;
    if (p < n && text[p] == ' ') ++p;
    if (text.compare(p, 2, "; ") == 0) p += 2;
    o.content = text.substr(i, p - i);
    pos = p;
    if (bins[0] > 1023 || bins[1] > 1023 || bins[2] > 1023 || bins[3] > 1023) continue;  // invalid, dropped
    o.y0 = to_pixel(bins[0], image_h);
    o.x0 = to_pixel(bins[1], image_w);
    o.y1 = to_pixel(bins[2], image_h);
    o.x1 = to_pixel(bins[3], image_w);
    out.push_back(std::move(o));
  }
  return out;
}

bool has_decodable_mask(const LocObject& o, int64_t num_codes) {
  if (o.seg.size() != 16) return false;
  for (auto c : o.seg)
    if (c < 0 || c >= num_codes) return false;
  return true;
}

Image paste_mask(const torch::Tensor& mask64, const LocObject& o, int image_w, int image_h) {
  LOUPE_CHECK(mask64.dim() == 2, InvalidArgument, "paste_mask: expects a [64, 64] mask, got " << mask64.sizes());
  Image m;
  m.width = image_w;
  m.height = image_h;
  m.channels = 1;
  m.pixels.assign(static_cast<size_t>(image_w) * image_h, 0);
  const int x0 = std::max(o.x0, 0), y0 = std::max(o.y0, 0);
  const int x1 = std::min(o.x1, image_w), y1 = std::min(o.y1, image_h);
  if (o.x1 <= o.x0 || o.y1 <= o.y0) return m;  // the reference pastes nothing
  // np.clip(m64 * 0.5 + 0.5, 0, 1) * 255 -> uint8 (truncation), all in float32 as numpy does
  auto f = mask64.to(torch::kCPU, torch::kFloat32);
  auto u8 = (f * 0.5f + 0.5f).clamp(0.0f, 1.0f).mul(255.0f).to(torch::kUInt8).contiguous();
  auto r = nn::pil_resize(u8, o.x1 - o.x0, o.y1 - o.y0, nn::PilFilter::Bicubic).contiguous();
  auto ra = r.accessor<uint8_t, 2>();
  for (int y = y0; y < y1; ++y)
    for (int x = x0; x < x1; ++x) m.pixels[static_cast<size_t>(y) * image_w + x] = ra[y - o.y0][x - o.x0];
  return m;
}

std::vector<Segment> decode_segments(const std::vector<LocObject>& objs, const MaskDecoder& decoder, int image_w,
                                     int image_h) {
  std::vector<Segment> out(objs.size());
  std::vector<int64_t> codes;
  std::vector<size_t> which;
  for (size_t i = 0; i < objs.size(); ++i) {
    out[i].object = objs[i];
    if (!has_decodable_mask(objs[i], decoder.num_codes())) continue;
    codes.insert(codes.end(), objs[i].seg.begin(), objs[i].seg.end());
    which.push_back(i);
  }
  if (which.empty()) return out;
  const auto masks =
      decoder.decode(torch::tensor(codes, torch::kInt64).view({static_cast<int64_t>(which.size()), 16})).cpu();
  for (size_t k = 0; k < which.size(); ++k)
    out[which[k]].mask = paste_mask(masks[static_cast<int64_t>(k)], objs[which[k]], image_w, image_h);
  return out;
}

std::vector<Polygon> mask_outlines(const Image& mask, const std::string& label, int group) {
  std::vector<Polygon> out;
  if (mask.empty()) return out;
  LOUPE_CHECK(mask.channels == 1, InvalidArgument, "mask_outlines: expects a 1-channel mask");
  cv::Mat m(mask.height, mask.width, CV_8UC1, const_cast<uint8_t*>(mask.pixels.data()));
  cv::Mat bin;
  cv::threshold(m, bin, 127, 255, cv::THRESH_BINARY);
  std::vector<std::vector<cv::Point>> contours;
  cv::findContours(bin, contours, cv::RETR_EXTERNAL, cv::CHAIN_APPROX_SIMPLE);
  for (const auto& c : contours) {
    if (c.size() < 3) continue;
    Polygon p;
    p.label = label;
    p.group = group;
    for (const auto& pt : c) {
      p.points.push_back(pt.x + 0.5f);
      p.points.push_back(pt.y + 0.5f);
    }
    out.push_back(std::move(p));
  }
  return out;
}

void append_detections(Result& out, const std::vector<LocObject>& objs) {
  for (const auto& o : objs) {
    Box b;
    b.x0 = static_cast<float>(o.x0);
    b.y0 = static_cast<float>(o.y0);
    b.x1 = static_cast<float>(o.x1);
    b.y1 = static_cast<float>(o.y1);
    b.score = 1.0f;
    b.label = o.label;
    out.boxes.push_back(b);
  }
}

void append_segments(Result& out, const std::vector<Segment>& segs, int image_w, int image_h) {
  for (const auto& s : segs) {
    const int group = static_cast<int>(out.boxes.size());
    append_detections(out, {s.object});
    if (s.mask.empty()) {
      Image z;
      z.width = image_w;
      z.height = image_h;
      z.channels = 1;
      z.pixels.assign(static_cast<size_t>(image_w) * image_h, 0);
      out.images.push_back(std::move(z));
    } else {
      out.images.push_back(s.mask);
      for (auto& p : mask_outlines(s.mask, s.object.label, group)) out.polygons.push_back(std::move(p));
    }
  }
}

}  // namespace loupe::paligemma
