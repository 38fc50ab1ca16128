#include "core/types.h"

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace loupe {

Image Image::to_rgb() const {
  if (channels == 3) return *this;
  Image out;
  out.width = width;
  out.height = height;
  out.channels = 3;
  out.pixels.resize(static_cast<size_t>(width) * height * 3);
  const size_t n = static_cast<size_t>(width) * height;
  for (size_t i = 0; i < n; ++i) {
    for (int c = 0; c < 3; ++c)
      out.pixels[i * 3 + c] = channels == 1 ? pixels[i] : pixels[i * channels + c];
  }
  return out;
}

int64_t Request::get_int(const std::string& key, int64_t def, int64_t lo, int64_t hi) const {
  auto it = ints.find(key);
  int64_t v = def;
  if (it != ints.end()) {
    v = it->second;
  } else if (auto f = floats.find(key); f != floats.end()) {
    v = static_cast<int64_t>(f->second);
  }
  if (v < lo || v > hi)
    LOUPE_THROW(InvalidArgument, "task '" << task << "': parameter '" << key << "' = " << v
                                          << " is out of range [" << lo << ", " << hi << "]");
  return v;
}

double Request::get_float(const std::string& key, double def, double lo, double hi) const {
  double v = def;
  if (auto it = floats.find(key); it != floats.end()) v = it->second;
  else if (auto i = ints.find(key); i != ints.end()) v = static_cast<double>(i->second);
  if (!(v >= lo && v <= hi))
    LOUPE_THROW(InvalidArgument, "task '" << task << "': parameter '" << key << "' = " << v
                                          << " is out of range [" << lo << ", " << hi << "]");
  return v;
}

std::string Request::get_string(const std::string& key, const std::string& def) const {
  auto it = strings.find(key);
  return it == strings.end() ? def : it->second;
}

int64_t Request::integer(const std::string& key) const {
  auto it = ints.find(key);
  if (it == ints.end()) LOUPE_THROW(Internal, "task '" << task << "': integer parameter '" << key << "' was not resolved (not in the task table)");
  return it->second;
}

double Request::real(const std::string& key) const {
  auto it = floats.find(key);
  if (it == floats.end()) LOUPE_THROW(Internal, "task '" << task << "': parameter '" << key << "' was not resolved (not in the task table)");
  return it->second;
}

const std::string& Request::text(const std::string& key) const {
  auto it = strings.find(key);
  if (it == strings.end()) LOUPE_THROW(Internal, "task '" << task << "': text parameter '" << key << "' was not resolved (not in the task table)");
  return it->second;
}

const Image& Request::image() const {
  if (images.empty())
    LOUPE_THROW(InvalidArgument, "task '" << task
                                          << "' needs an input image: set one with loupe_request_set_image");
  return images.front();
}

std::string Result::to_json() const {
  nlohmann::json j;
  j["task"] = task;
  j["text"] = text;
  auto& jb = j["boxes"] = nlohmann::json::array();
  for (const auto& b : boxes)
    jb.push_back({{"box", {b.x0, b.y0, b.x1, b.y1}}, {"score", b.score}, {"label", b.label}});
  auto& jp = j["polygons"] = nlohmann::json::array();
  for (const auto& p : polygons)
    jp.push_back({{"points", p.points}, {"label", p.label}, {"group", p.group}, {"kind", p.kind}});
  auto& ji = j["images"] = nlohmann::json::array();
  for (const auto& im : images)
    ji.push_back({{"width", im.width}, {"height", im.height}, {"channels", im.channels}});
  j["numbers"] = numbers;
  if (!strings.empty()) j["strings"] = strings;
  // Non-finite numbers are not JSON: dump replaces them by null.
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace loupe
