// SDXL sessions beyond the diffusers base folder: single files as the web UIs keep them (made from
// the tiny folder by diffusers' own conversion script, tests/fixtures/gen/make_sdxl_single_file.py),
// recognised from their tensors and giving exactly the folder's images; files without their text
// encoders or VAE; the refiner and the inpainting model as sessions, and the base-to-refiner
// hand-over from txt2img (numerical parity of each part: test_sdxl_parity.cpp).
#include <gtest/gtest.h>

#include <filesystem>
#include <functional>
#include <map>
#include <unistd.h>

#include "core/error.h"
#include "core/job.h"
#include "core/model.h"
#include "families/sd.h"
#include "families/sdxl.h"
#include "io/checkpoint.h"
#include "io/config.h"
#include "io/safetensors.h"
#include "io/state_dict.h"
#include "models/clip/clip_text.h"
#include "models/sd/lora.h"
#include "models/sd/single_file.h"
#include "models/sd/unet.h"

#include "../support/sd_request.h"

namespace fs = std::filesystem;
using namespace loupe;

namespace {

const std::string kXl = std::string(LOUPE_FIXTURES_DIR) + "/sdxl";
const std::string kFile = kXl + "/single/tiny-sdxl.safetensors";

struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& name) {
    path = fs::temp_directory_path() / ("loupe-sdxl-" + name + "-" + std::to_string(::getpid()));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string operator/(const std::string& p) const { return (path / p).string(); }
};

std::shared_ptr<Model> open(const std::string& path) {
  static std::map<std::string, std::shared_ptr<Model>> cache;
  auto& m = cache[path];
  if (!m) m = sdxl::family().load(path, ModelOptions{});
  return m;
}

Result run(const std::shared_ptr<Model>& m, const Request& r, std::vector<Progress>* seen = nullptr) {
  Job job([&](const Progress& p) {
    if (seen) seen->push_back(p);
    return true;
  });
  JobContext ctx(&job);
  return m->run(r, ctx);
}

Image rgb_image(int w, int h) {
  Image img;
  img.width = w;
  img.height = h;
  img.channels = 3;
  img.pixels.assign(img.bytes(), 0);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int c = 0; c < 3; ++c) img.row(y)[x * 3 + c] = static_cast<uint8_t>(40 + (x * 3 + y * 5 + c * 40) % 120);
  return img;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

// The single file without the tensors under the prefixes `drop`, with its sidecar configs.
std::string without(const TempDir& t, const std::string& name, const std::vector<std::string>& drop) {
  io::SafetensorsFile f(kFile);
  std::vector<std::pair<std::string, torch::Tensor>> keep;
  for (const auto& n : f.names()) {
    bool dropped = false;
    for (const auto& d : drop) dropped = dropped || n.rfind(d, 0) == 0;
    if (!dropped) keep.push_back({n, f.load(n)});
  }
  const std::string out = t / (name + ".safetensors");
  io::save_safetensors(out, keep);
  fs::copy(kXl + "/single/tiny-sdxl", t / name, fs::copy_options::recursive);
  return out;
}

}  // namespace

TEST(SdxlSingleFile, RecognisedFromItsTensors) {
  EXPECT_EQ(sd::detect_single_file(kFile), "sdxl");
  EXPECT_EQ(sdxl::family().detect(kFile), "sdxl");
  EXPECT_EQ(sd::family().detect(kFile), "");  // not taken for SD 1.x
  // the name says nothing: an SDXL file called like an SD 1.5 one is still SDXL
  TempDir t("name");
  fs::copy_file(kFile, t / "v1-5-pruned-emaonly.safetensors");
  EXPECT_EQ(sdxl::family().detect(t / "v1-5-pruned-emaonly.safetensors"), "sdxl");
  EXPECT_EQ(sd::family().detect(t / "v1-5-pruned-emaonly.safetensors"), "");
}

TEST(SdxlSingleFile, SameImagesAsTheDiffusersFolder) {
  auto file = open(kFile), folder = open(kXl + "/tiny-sdxl");
  EXPECT_EQ(file->family(), "sdxl");
  EXPECT_EQ(file->variant(), "sdxl");
  for (const std::string task : {"txt2img", "img2img", "inpaint"}) {
    SCOPED_TRACE(task);
    auto r = sd_request(task, "a (red:1.2) car BREAK the sky");
    r.strings["negative_prompt"] = "blue";
    if (task != "txt2img") r.images.push_back(rgb_image(64, 48));
    if (task == "inpaint") {
      Image m{64, 48, 1, std::vector<uint8_t>(64 * 48, 0)};
      for (int y = 8; y < 40; ++y)
        for (int x = 16; x < 48; ++x) m.pixels[y * 64 + x] = 255;
      r.mask = m;
    }
    const auto a = run(file, r), b = run(folder, r);
    ASSERT_EQ(a.images.size(), 1u);
    EXPECT_EQ(a.images[0].pixels, b.images.at(0).pixels);
  }
}

// A file without its text encoders or its VAE says which part is missing and where to put it; the
// diffusers folder of that part beside the file (in the sidecar) supplies it.
TEST(SdxlSingleFile, MissingPartsAreNamedAndCanBeSupplied) {
  TempDir t("parts");
  const std::string no_text = without(t, "no-text", {"conditioner."});
  std::string e = error_of([&] { sdxl::family().load(no_text, ModelOptions{}); });
  EXPECT_NE(e.find("no text encoder 1 (CLIP ViT-L)"), std::string::npos) << e;
  EXPECT_NE(e.find("conditioner.embedders.0.transformer.*"), std::string::npos) << e;
  EXPECT_NE(e.find(t / "no-text/text_encoder"), std::string::npos) << e;
  const std::string no_te2 = without(t, "no-te2", {"conditioner.embedders.1."});
  e = error_of([&] { sdxl::family().load(no_te2, ModelOptions{}); });
  EXPECT_NE(e.find("no text encoder 2 (OpenCLIP ViT-bigG)"), std::string::npos) << e;
  EXPECT_NE(e.find(t / "no-te2/text_encoder_2"), std::string::npos) << e;
  const std::string no_vae = without(t, "no-vae", {"first_stage_model."});
  e = error_of([&] { sdxl::family().load(no_vae, ModelOptions{}); });
  EXPECT_NE(e.find("no VAE (no 'first_stage_model.*' tensors)"), std::string::npos) << e;
  EXPECT_NE(e.find(t / "no-vae/vae"), std::string::npos) << e;

  // supplied as diffusers folders with their weights: the same images as the whole file
  for (const auto& sub : {"text_encoder", "text_encoder_2"})
    fs::copy(kXl + std::string("/tiny-sdxl/") + sub, t / (std::string("no-text/") + sub),
             fs::copy_options::recursive | fs::copy_options::overwrite_existing);
  fs::copy(kXl + "/tiny-sdxl/vae", t / "no-vae/vae", fs::copy_options::recursive | fs::copy_options::overwrite_existing);
  auto r = sd_request("txt2img", "a red car");
  r.ints["width"] = r.ints["height"] = 64;
  const auto want = run(open(kFile), r).images.at(0).pixels;
  for (const auto& f : {no_text, no_vae}) {
    SCOPED_TRACE(f);
    auto m = sdxl::family().load(f, ModelOptions{});
    EXPECT_EQ(run(m, r).images.at(0).pixels, want);
  }
}

TEST(SdxlSessions, RefinerAndInpaintingModelsAreRecognised) {
  EXPECT_EQ(sdxl::family().detect(kXl + "/tiny-sdxl-refiner"), "sdxl-refiner");
  EXPECT_EQ(sdxl::family().detect(kXl + "/tiny-sdxl-inpaint"), "sdxl-inpainting");
  EXPECT_EQ(sd::family().detect(kXl + "/tiny-sdxl-refiner"), "");
  auto refiner = open(kXl + "/tiny-sdxl-refiner");
  EXPECT_EQ(refiner->family(), "sdxl");
  EXPECT_EQ(refiner->variant(), "sdxl-refiner");
  EXPECT_EQ(open(kXl + "/tiny-sdxl-inpaint")->variant(), "sdxl-inpainting");
  // the refiner alone refines an image (its default use in diffusers: img2img)
  auto r = sd_request("img2img", "a red car");
  r.images.push_back(rgb_image(64, 48));
  r.floats["strength"] = 0.3;
  const auto out = run(refiner, r);
  ASSERT_EQ(out.images.size(), 1u);
  EXPECT_EQ(out.images[0].width, 64);
  EXPECT_EQ(out.strings.at("variant"), "sdxl-refiner");
}

// txt2img on the base with a refiner: the base denoises to refiner_switch, the refiner the rest
// (denoising_end / denoising_start as diffusers; parity of both halves in test_sdxl_parity.cpp).
TEST(SdxlSessions, TxtToImgHandsOverToTheRefiner) {
  auto base = open(kXl + "/tiny-sdxl");
  auto r = sd_request("txt2img", "a red car");
  r.ints["steps"] = 5;
  r.ints["width"] = r.ints["height"] = 64;
  const auto alone = run(base, r);
  r.strings["refiner"] = kXl + "/tiny-sdxl-refiner";
  r.floats["refiner_switch"] = 0.6;
  std::vector<Progress> seen;
  const auto refined = run(base, r, &seen);
  ASSERT_EQ(refined.images.size(), 1u);
  EXPECT_EQ(refined.strings.at("refiner"), "sdxl-refiner");
  EXPECT_NE(refined.images[0].pixels, alone.images.at(0).pixels);
  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(seen.back().step, 5);  // 3 steps on the base, 2 on the refiner
  EXPECT_EQ(seen.back().total, 5);
  // the same request gives the same image (the refiner stays loaded); another switch another one
  EXPECT_EQ(run(base, r).images.at(0).pixels, refined.images[0].pixels);
  r.floats["refiner_switch"] = 0.3;
  EXPECT_NE(run(base, r).images.at(0).pixels, refined.images[0].pixels);
  // a model that cannot take over is refused with the reason
  r.strings["refiner"] = kXl + "/tiny-sdxl-inpaint";
  const std::string e = error_of([&] { run(base, r); });
  EXPECT_NE(e.find("cannot take over"), std::string::npos) << e;
}

// kohya LoRA on SDXL's text encoders: lora_te1_* for CLIP-L, lora_te2_* for OpenCLIP-G (transformers'
// names, as sd-scripts writes them), merged as sd-scripts defines it (W + m * alpha/rank * up @ down)
// and removed exactly; switched on and off on a session without reloading.
TEST(SdxlSessions, LoraOnBothTextEncoders) {
  torch::NoGradGuard ng;
  TempDir t("lora");
  torch::manual_seed(3);
  const std::string m1 = "lora_te1_text_model_encoder_layers_0_self_attn_q_proj";  // [16, 16]
  const std::string m2 = "lora_te2_text_model_encoder_layers_1_mlp_fc1";           // [96, 24]
  std::vector<std::pair<std::string, torch::Tensor>> lt{
      {m1 + ".lora_down.weight", torch::randn({4, 16})}, {m1 + ".lora_up.weight", torch::randn({16, 4})},
      {m1 + ".alpha", torch::tensor(2.0)},
      {m2 + ".lora_down.weight", torch::randn({2, 24})}, {m2 + ".lora_up.weight", torch::randn({96, 2})},
      {m2 + ".alpha", torch::tensor(1.0)}};
  const std::string file = t / "te-lora.safetensors";
  io::save_safetensors(file, lt);

  const std::string dir = kXl + "/tiny-sdxl";
  io::BindOptions to;
  to.allow_missing = [](const std::string& k) { return k.find("position_ids") != std::string::npos; };
  clip::ClipTextModel te1(clip::TextConfig::load(dir + "/text_encoder/config.json"));
  clip::ClipTextModel te2(clip::TextConfig::load(dir + "/text_encoder_2/config.json"));
  io::bind(*te1, io::Checkpoint::open(dir + "/text_encoder"), to);
  io::bind(*te2, io::Checkpoint::open(dir + "/text_encoder_2"), to);
  sd::UNet2DConditionModel unet(sd::UNetConfig::from_json(io::read_json_file(dir + "/unet/config.json"), "unet"));
  io::bind(*unet, io::Checkpoint::open(dir + "/unet"));
  auto& q = te1->layers[0]->as<clip::ClipLayerImpl>()->q_proj->weight;
  auto& fc1 = te2->layers[1]->as<clip::ClipLayerImpl>()->fc1->weight;
  const auto q0 = q.clone(), fc0 = fc1.clone();
  sd::LoraSet lora;
  lora.set(file, 0.5f, *unet, *te1, te2.get());
  const auto d1 = torch::matmul(lt[1].second, lt[0].second) * (0.5 * 2.0 / 4);
  const auto d2 = torch::matmul(lt[4].second, lt[3].second) * (0.5 * 1.0 / 2);
  EXPECT_LT((q - q0 - d1).abs().max().item<double>(), 1e-6);
  EXPECT_LT((fc1 - fc0 - d2).abs().max().item<double>(), 1e-6);
  lora.set(file, 0.0f, *unet, *te1, te2.get());
  EXPECT_TRUE(torch::equal(q, q0));
  EXPECT_TRUE(torch::equal(fc1, fc0));

  // on a session: another image with the LoRA, the same one again without it
  auto m = sdxl::family().load(dir, ModelOptions{});
  auto r = sd_request("txt2img", "a red car");
  const auto before = run(m, r).images.at(0).pixels;
  m->set_lora(file, 1.0f);
  EXPECT_NE(run(m, r).images.at(0).pixels, before);
  m->set_lora(file, 0.0f);
  EXPECT_EQ(run(m, r).images.at(0).pixels, before);
}
