// Plain C++ value types that flow between the ABI layer, the runtime and the pipelines.
// No torch here: the ABI layer includes this without paying for torch's headers.
#pragma once
#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace loupe {

// A tightly packed 8-bit image: channels = 1 (gray / mask), 3 (RGB) or 4 (RGBA).
struct Image {
  int width = 0;
  int height = 0;
  int channels = 0;
  std::vector<uint8_t> pixels;  // height * width * channels bytes, row-major

  bool empty() const { return width <= 0 || height <= 0; }
  size_t bytes() const { return static_cast<size_t>(width) * height * channels; }
  uint8_t* row(int y) { return pixels.data() + static_cast<size_t>(y) * width * channels; }
  const uint8_t* row(int y) const { return pixels.data() + static_cast<size_t>(y) * width * channels; }
  // Converts to RGB (drops alpha, replicates gray).
  Image to_rgb() const;
};

// A task with its inputs and parameters, as built through loupe_request_*.
struct Request {
  std::string task;
  std::vector<Image> images;
  std::optional<Image> mask;
  std::map<std::string, std::string> strings;
  std::map<std::string, int64_t> ints;
  std::map<std::string, double> floats;
  std::optional<std::array<float, 4>> region;  // x0, y0, x1, y1 in image pixels

  // Typed getters: a value outside [lo, hi] is an InvalidArgument error naming the key and range.
  int64_t get_int(const std::string& key, int64_t def, int64_t lo, int64_t hi) const;
  double get_float(const std::string& key, double def, double lo, double hi) const;
  std::string get_string(const std::string& key, const std::string& def = "") const;
  bool has_string(const std::string& key) const { return strings.count(key) != 0; }
  // A parameter of a request resolved against its task's description (tasks::resolve: every
  // parameter is there, checked). Internal error if it is absent: the task table lacks it.
  int64_t integer(const std::string& key) const;
  double real(const std::string& key) const;
  bool flag(const std::string& key) const { return integer(key) != 0; }
  const std::string& text(const std::string& key) const;
  // The single input image, or an InvalidArgument error saying the task needs one.
  const Image& image() const;
};

struct Box {
  float x0 = 0, y0 = 0, x1 = 0, y1 = 0;
  float score = 1.0f;
  std::string label;
};

struct Polygon {
  std::vector<float> points;  // x, y pairs
  std::string label;
  int group = 0;
  std::string kind = "polygon";  // "polygon" or "quad"
};

// What a job produces. Immutable once handed to the caller.
struct Result {
  std::string task;
  std::string text;
  std::vector<Box> boxes;
  std::vector<Polygon> polygons;
  std::vector<Image> images;
  std::map<std::string, double> numbers;
  std::map<std::string, std::string> strings;  // extra named strings (e.g. device name)

  std::string to_json() const;
};

}  // namespace loupe
