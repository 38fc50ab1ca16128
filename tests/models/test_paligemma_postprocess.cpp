// PaliGemma's detect / segment output side against references that were run
// (tests/fixtures/gen/make_paligemma_seg.py): big_vision's mask decoder (its flax Decoder, layer
// list and vae-oid.npz key names, run on numpy through a flax/lax stand-in and cross-checked with
// torch) and the PaliGemma demo's extract_objs parser (boxes, labels, masks pasted with PIL).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/npz.h"
#include "models/paligemma/mask_decoder.h"
#include "models/paligemma/postprocess.h"
#include "nn/pil_resize.h"

using namespace loupe;
using namespace loupe::paligemma;
namespace fs = std::filesystem;

namespace {

const std::string kSeg = std::string(LOUPE_FIXTURES_DIR) + "/paligemma/seg/";

nlohmann::json parse_cases() {
  std::ifstream f(kSeg + "parse.json");
  EXPECT_TRUE(f.good());
  return nlohmann::json::parse(f);
}

const std::map<std::string, torch::Tensor>& expected() {
  static const auto e = io::read_npz(kSeg + "expected.npz");
  return e;
}

const MaskDecoder& decoder() {
  static const MaskDecoder d = MaskDecoder::load(kSeg + "vae-oid-tiny.npz");
  return d;
}

template <class F>
Error error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e;
  }
  ADD_FAILURE() << "no error";
  return Error(Status::Ok, "");
}

}  // namespace

TEST(PaliGemmaMaskDecoder, MatchesBigVisionsDecoder) {
  const auto& e = expected();
  const auto masks = decoder().decode(e.at("codes"));
  const auto want = e.at("masks");
  ASSERT_EQ(masks.sizes(), want.sizes());
  EXPECT_EQ(decoder().num_codes(), 128);
  const double err = (masks - want).abs().max().item<double>();
  EXPECT_LT(err, 1e-4) << "max |C++ - big_vision| over " << want.size(0) << " code sets";
  // both signs occur: the masks are not trivially empty or full
  const double inside = masks.gt(0).to(torch::kFloat32).mean().item<double>();
  EXPECT_GT(inside, 0.2);
  EXPECT_LT(inside, 0.8);
}

TEST(PaliGemmaMaskDecoder, BadWeightsAndCodesGiveClearErrors) {
  auto t = io::read_npz(kSeg + "vae-oid-tiny.npz");
  {
    auto m = t;
    m.erase("decoder.6.weight");
    const auto e = error_of([&] { MaskDecoder::from_tensors(m, "x.npz"); });
    EXPECT_EQ(e.status(), Status::BadModel);
    EXPECT_NE(std::string(e.what()).find("x.npz: no 'decoder.6.weight'"), std::string::npos) << e.what();
  }
  {
    auto m = t;
    m["decoder.2.net.2.weight"] = torch::zeros({128, 64, 3, 3});
    const auto e = error_of([&] { MaskDecoder::from_tensors(m, "x.npz"); });
    EXPECT_EQ(e.status(), Status::BadModel);
    EXPECT_NE(std::string(e.what()).find("'decoder.2.net.2.weight' has shape [128, 64, 3, 3], expected [128, 128, 3, 3]"),
              std::string::npos)
        << e.what();
  }
  {
    auto m = t;
    m["decoder.8.bias"] = torch::zeros({31});
    const auto e = error_of([&] { MaskDecoder::from_tensors(m, "x.npz"); });
    EXPECT_NE(std::string(e.what()).find("'decoder.8.bias' has shape [31], expected [32]"), std::string::npos) << e.what();
  }
  auto codes = torch::zeros({1, 16}, torch::kInt64);
  codes[0][3] = 128;
  auto e = error_of([&] { decoder().decode(codes); });
  EXPECT_EQ(e.status(), Status::InvalidArgument);
  EXPECT_NE(std::string(e.what()).find("0..127, got 128"), std::string::npos) << e.what();
  e = error_of([&] { decoder().decode(torch::zeros({2, 15}, torch::kInt64)); });
  EXPECT_EQ(e.status(), Status::InvalidArgument);
  e = error_of([&] { MaskDecoder::load(kSeg + "nowhere/vae-oid.npz"); });
  EXPECT_EQ(e.status(), Status::NotFound);
  EXPECT_NE(std::string(e.what()).find("gs://big_vision/paligemma/vae-oid.npz"), std::string::npos) << e.what();
}

TEST(PaliGemmaPostprocess, ParsesAsTheReferenceParser) {
  const auto j = parse_cases();
  ASSERT_GE(j["cases"].size(), 20u);
  size_t objects = 0;
  for (const auto& c : j["cases"]) {
    const std::string text = c["text"];
    SCOPED_TRACE(text);
    const auto got = parse_loc_objects(text, c["width"], c["height"]);
    ASSERT_EQ(got.size(), c["objects"].size());
    for (size_t i = 0; i < got.size(); ++i) {
      const auto& w = c["objects"][i];
      EXPECT_EQ(got[i].x0, w["xyxy"][0].get<int>()) << i;
      EXPECT_EQ(got[i].y0, w["xyxy"][1].get<int>()) << i;
      EXPECT_EQ(got[i].x1, w["xyxy"][2].get<int>()) << i;
      EXPECT_EQ(got[i].y1, w["xyxy"][3].get<int>()) << i;
      EXPECT_EQ(got[i].label, w["label"].get<std::string>()) << i;
      EXPECT_EQ(got[i].seg, w["seg"].get<std::vector<int64_t>>()) << i;
      EXPECT_EQ(got[i].content, w["content"].get<std::string>()) << i;
      ++objects;
    }
  }
  EXPECT_GE(objects, 20u);
}

TEST(PaliGemmaPostprocess, MasksArePastedAsTheReferencePastesThem) {
  const auto j = parse_cases();
  size_t masks = 0;
  for (const auto& c : j["cases"]) {
    const std::string text = c["text"];
    SCOPED_TRACE(text);
    const int w = c["width"], h = c["height"];
    const auto segs = decode_segments(parse_loc_objects(text, w, h), decoder(), w, h);
    ASSERT_EQ(segs.size(), c["objects"].size());
    for (size_t i = 0; i < segs.size(); ++i) {
      const auto& key = c["objects"][i]["mask"];
      if (key.is_null()) {
        EXPECT_TRUE(segs[i].mask.empty()) << i;
        continue;
      }
      ++masks;
      const auto want = expected().at(key.get<std::string>());
      ASSERT_EQ(segs[i].mask.width, w);
      ASSERT_EQ(segs[i].mask.height, h);
      ASSERT_EQ(segs[i].mask.channels, 1);
      const auto got = torch::from_blob(const_cast<uint8_t*>(segs[i].mask.pixels.data()), {h, w}, torch::kUInt8);
      const auto diff = (got.to(torch::kInt32) - want.to(torch::kInt32)).abs();
      // float32 decoders (ours, the reference's) may land on either side of a uint8 step
      EXPECT_LE(diff.max().item<int>(), 1) << key;
      EXPECT_LE(diff.gt(0).sum().item<int64_t>(), std::max<int64_t>(2, w * h / 200)) << key;
    }
  }
  EXPECT_GE(masks, 7u);
}

TEST(PaliGemmaPostprocess, ResultsHoldBoxesMasksAndOutlines) {
  const auto j = parse_cases();
  const auto& c = j["cases"][2];  // two segmented puffins
  const int w = c["width"], h = c["height"];
  const auto objs = parse_loc_objects(c["text"], w, h);
  Result det;
  append_detections(det, objs);
  ASSERT_EQ(det.boxes.size(), 2u);
  EXPECT_EQ(det.boxes[1].label, "puffin in front");
  EXPECT_TRUE(det.images.empty());
  Result seg;
  append_segments(seg, decode_segments(objs, decoder(), w, h), w, h);
  ASSERT_EQ(seg.boxes.size(), 2u);
  ASSERT_EQ(seg.images.size(), 2u);
  ASSERT_FALSE(seg.polygons.empty());
  for (const auto& p : seg.polygons) {
    ASSERT_GE(p.group, 0);
    ASSERT_LT(p.group, 2);
    const auto& b = seg.boxes[p.group];
    EXPECT_EQ(p.label, b.label);
    ASSERT_GE(p.points.size(), 6u);
    for (size_t k = 0; k < p.points.size(); k += 2) {  // outlines stay inside their box
      EXPECT_GE(p.points[k], b.x0);
      EXPECT_LE(p.points[k], b.x1);
      EXPECT_GE(p.points[k + 1], b.y0);
      EXPECT_LE(p.points[k + 1], b.y1);
    }
  }
  // outside the boxes the masks are 0
  for (int i = 0; i < 2; ++i)
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x)
        if (x < seg.boxes[i].x0 || x >= seg.boxes[i].x1 || y < seg.boxes[i].y0 || y >= seg.boxes[i].y1)
          ASSERT_EQ(seg.images[i].pixels[static_cast<size_t>(y) * w + x], 0);
}

TEST(PaliGemmaPostprocess, FindsVaeOidOrSaysWhereItIsPublished) {
  const fs::path root = fs::temp_directory_path() / ("loupe-vae-oid-" + std::to_string(::getpid()));
  fs::remove_all(root);
  const fs::path models = root / "models", model = models / "paligemma-3b-mix-224", other = root / "other";
  fs::create_directories(model);
  fs::create_directories(other);
  auto e = error_of([&] { find_vae_oid(model.string(), other.string()); });
  EXPECT_EQ(e.status(), Status::NotFound);
  const std::string what = e.what();
  EXPECT_NE(what.find("vae-oid.npz"), std::string::npos) << what;
  EXPECT_NE(what.find("gs://big_vision/paligemma/vae-oid.npz"), std::string::npos) << what;
  EXPECT_NE(what.find((model / "vae-oid.npz").string()), std::string::npos) << what;
  EXPECT_NE(what.find((other / "vae-oid.npz").string()), std::string::npos) << what;
  fs::copy_file(kSeg + "vae-oid-tiny.npz", models / "vae-oid.npz");  // the folder holding the model
  EXPECT_EQ(find_vae_oid(model.string(), ""), (models / "vae-oid.npz").string());
  fs::copy_file(kSeg + "vae-oid-tiny.npz", other / "vae-oid.npz");  // the models folder comes first
  EXPECT_EQ(find_vae_oid(model.string(), other.string()), (other / "vae-oid.npz").string());
  fs::copy_file(kSeg + "vae-oid-tiny.npz", model / "vae-oid.npz");  // next to the model: first of all
  EXPECT_EQ(find_vae_oid(model.string(), other.string()), (model / "vae-oid.npz").string());
  EXPECT_EQ(MaskDecoder::load(find_vae_oid(model.string(), "")).num_codes(), 128);
  fs::remove_all(root);
}

TEST(PaliGemmaPostprocess, BadImageSizeIsAnError) {
  EXPECT_EQ(error_of([] { parse_loc_objects("<loc0001><loc0002><loc0003><loc0004> a", 0, 10); }).status(),
            Status::InvalidArgument);
}

TEST(PilResize, EqualsPilsImageResize) {
  const auto t = io::read_npz(kSeg + "pil_resize.npz");
  int checked = 0;
  for (const auto& [name, want] : t) {
    if (name.rfind("src_", 0) == 0) continue;
    SCOPED_TRACE(name);
    const bool rgb = name.rfind("rgb_", 0) == 0;
    const auto filter = name.find("bicubic") != std::string::npos ? nn::PilFilter::Bicubic : nn::PilFilter::Bilinear;
    const auto got = nn::pil_resize(t.at(rgb ? "src_rgb" : "src_gray"), static_cast<int>(want.size(1)),
                                    static_cast<int>(want.size(0)), filter);
    ASSERT_EQ(got.sizes(), want.sizes());
    EXPECT_TRUE(got.equal(want)) << "max diff "
                                 << (got.to(torch::kInt32) - want.to(torch::kInt32)).abs().max().item<int>();
    ++checked;
  }
  EXPECT_EQ(checked, 20);
  EXPECT_EQ(error_of([&] { nn::pil_resize(torch::zeros({4, 4}, torch::kFloat32), 2, 2); }).status(),
            Status::InvalidArgument);
}
