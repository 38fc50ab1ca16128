// Florence-2 image preprocessing against the reference processor: PIL's 8-bit BICUBIC resize,
// rescale, normalise (expected pixel_values from tests/fixtures/gen/make_florence2_preprocess.py).
#include <gtest/gtest.h>

#include <cstring>

#include "io/safetensors.h"
#include "models/florence2/config.h"
#include "models/florence2/preprocess.h"

using namespace loupe;
using namespace loupe::florence2;

static const std::string kTiny = std::string(LOUPE_FIXTURES_DIR) + "/florence2/tiny";
static const std::string kExpected = std::string(LOUPE_FIXTURES_DIR) + "/florence2/preprocess-expected.safetensors";

static Image image_of(const torch::Tensor& hwc) {
  Image im;
  im.height = static_cast<int>(hwc.size(0));
  im.width = static_cast<int>(hwc.size(1));
  im.channels = static_cast<int>(hwc.size(2));
  im.pixels.resize(im.bytes());
  std::memcpy(im.pixels.data(), hwc.contiguous().data_ptr<uint8_t>(), im.bytes());
  return im;
}

static void check_device(torch::Device device) {
  const io::SafetensorsFile f(kExpected);
  const Config cfg = Config::load(kTiny);
  const auto std = torch::tensor(cfg.image_std).view({1, 3, 1, 1});
  for (const char* name : {"tiny", "sample", "up", "down"}) {
    const auto input = f.load(std::string(name) + ".input");
    const auto expected = f.load(std::string(name) + ".pixel_values");
    const auto got = preprocess_image(image_of(input), cfg, device, torch::kFloat32).to(torch::kCPU);
    ASSERT_EQ(got.sizes(), expected.sizes()) << name;
    const double max_abs = (got - expected).abs().max().item<double>();
    // the same difference in uint8 levels of the resized image (1 level = 1/255/std)
    const double max_levels = ((got - expected).abs() * std * 255.0).max().item<double>();
    // Exact parity with PIL's uint8 result: what is left is float32 rounding of rescale and
    // normalise (values are within +-2.7, ulp ~2.4e-7); 1e-5 is ~1/1700 of one uint8 level.
    EXPECT_LE(max_abs, 1e-5) << name << " on " << device << ": max |diff| " << max_abs << " = " << max_levels
                             << " uint8 levels";
  }
}

TEST(Florence2Preprocess, MatchesPilBicubicOnCpu) { check_device(torch::kCPU); }

TEST(Florence2Preprocess, MatchesPilBicubicOnCuda) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  check_device(torch::Device(torch::kCUDA, 0));
}

TEST(Florence2Preprocess, GrayAndRgbaInputsAreConvertedToRgb) {
  const io::SafetensorsFile f(kExpected);
  const Config cfg = Config::load(kTiny);
  const Image rgb = image_of(f.load("tiny.input"));
  Image rgba = rgb;
  rgba.channels = 4;
  rgba.pixels.resize(rgba.bytes());
  for (size_t i = 0; i < rgb.bytes() / 3; ++i) {
    std::memcpy(&rgba.pixels[i * 4], &rgb.pixels[i * 3], 3);
    rgba.pixels[i * 4 + 3] = static_cast<uint8_t>(i);
  }
  EXPECT_TRUE(torch::equal(preprocess_image(rgba, cfg, torch::kCPU, torch::kFloat32),
                           preprocess_image(rgb, cfg, torch::kCPU, torch::kFloat32)));
  Image gray = rgb;
  gray.channels = 1;
  gray.pixels.resize(gray.bytes());
  auto px = preprocess_image(gray, cfg, torch::kCPU, torch::kFloat32);
  EXPECT_EQ(px.sizes(), (std::vector<int64_t>{1, 3, cfg.image_size, cfg.image_size}));
  // the three channels carry the same resized gray values (normalised per channel)
  const auto mean = torch::tensor(cfg.image_mean).view({1, 3, 1, 1}), sd = torch::tensor(cfg.image_std).view({1, 3, 1, 1});
  const auto levels = px * sd + mean;
  EXPECT_TRUE(torch::allclose(levels.select(1, 0), levels.select(1, 2), 0, 1e-5));
}
