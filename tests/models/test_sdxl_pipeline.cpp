// SDXL sessions against diffusers' StableDiffusionXL{,Img2Img}Pipeline called with prompts, as run
// with transformers' CLIPTextModel / CLIPTextModelWithProjection / CLIPTokenizer
// (tests/fixtures/gen/make_sdxl_pipeline.py): the micro-conditioning parameters (original size,
// crop, target size; the refiner's aesthetic scores), transformers' encoder 2, and folders with
// fp16 variant files as stabilityai ships them (diffusers' save_pretrained(variant="fp16"), the
// UNet sharded); LoRA for the UNet in kohya's, diffusers' and PEFT's names (make_sdxl_lora.py).
// fp32, CPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
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
#include "models/sd/unet.h"

#include "../support/sd_request.h"

namespace fs = std::filesystem;
using namespace loupe;

namespace {

const std::string kXl = std::string(LOUPE_FIXTURES_DIR) + "/sdxl";

torch::Tensor E(const std::string& name) {
  static io::Checkpoint c = io::Checkpoint::open(kXl + "/expected-pipeline.safetensors");
  return c.load(name);
}

Result run(const std::shared_ptr<Model>& m, const Request& r) {
  Job job([](const Progress&) { return true; });
  JobContext ctx(&job);
  return m->run(r, ctx);
}

// The session's 8-bit image against diffusers' output_type="pt" image in [0, 1]: in 8-bit levels.
double max_levels(const Image& im, const torch::Tensor& want) {
  EXPECT_EQ(want.size(2), im.height);
  EXPECT_EQ(want.size(3), im.width);
  EXPECT_EQ(im.channels, 3);
  auto got = torch::from_blob(const_cast<uint8_t*>(im.pixels.data()), {im.height, im.width, 3}, torch::kUInt8)
                 .to(torch::kFloat64)
                 .permute({2, 0, 1});
  return (got - want[0].to(torch::kFloat64) * 255).abs().max().item<double>();
}

// "a red car" / "blurry", 3 Euler steps at 64 x 64, guidance 5, seed 42: the generator's base run.
Request base_request() {
  Request r = sd_request("txt2img", "a red car");
  r.strings["negative_prompt"] = "blurry";
  r.strings["sampler"] = "euler";
  r.ints["steps"] = 3;
  r.ints["seed"] = 42;
  r.ints["width"] = r.ints["height"] = 64;
  r.floats["guidance_scale"] = 5.0;
  return r;
}

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
};

bool has_param(const Model& m, const std::string& task, const std::string& param) {
  for (const auto& t : m.tasks())
    if (t.name == task) return t.find(param) != nullptr;
  return false;
}

std::vector<std::string> width_presets(const Model& m) {
  for (const auto& t : m.tasks())
    if (t.name == "txt2img") return t.find("width")->choices;
  return {};
}

}  // namespace

// transformers' CLIPTextModelWithProjection (SDXL's text_encoder_2) on the tokenizer's ids of a prompt
TEST(SdxlPipeline, TextEncoder2MatchesTransformers) {
  torch::NoGradGuard ng;
  const std::string dir = kXl + "/tiny-sdxl/text_encoder_2";
  clip::ClipTextModel te2(clip::TextConfig::load(dir + "/config.json"));
  io::BindOptions o;
  o.allow_missing = [](const std::string& k) { return k.find("position_ids") != std::string::npos; };
  io::bind(*te2, io::Checkpoint::open(dir), o);
  te2->eval();
  const auto ids = E("te.ids2");
  const auto pen = te2->hidden_and_pooled(ids, te2->cfg.num_hidden_layers - 1, true);
  const auto last = te2->forward(ids, 1);
  const double e_pen = (pen.hidden - E("te2.penultimate")).abs().max().item<double>();
  const double e_last = (last - E("te2.last")).abs().max().item<double>();
  const double e_emb = (pen.pooled - E("te2.text_embeds")).abs().max().item<double>();
  std::printf("encoder 2 vs transformers: hidden_states[-2] %.3g, last_hidden_state %.3g, text_embeds %.3g\n", e_pen, e_last,
              e_emb);
  EXPECT_LT(e_pen, 1e-5);
  EXPECT_LT(e_last, 1e-5);
  EXPECT_LT(e_emb, 1e-5);
}

// The whole session from a prompt, and with SDXL's original size / crop / target size
TEST(SdxlPipeline, PromptAndSizeConditioningMatchDiffusers) {
  auto m = sdxl::family().load(kXl + "/tiny-sdxl", ModelOptions{});
  for (const char* p : {"original_width", "original_height", "crop_left", "crop_top", "target_width", "target_height",
                        "aesthetic_score"})
    EXPECT_TRUE(has_param(*m, "txt2img", p)) << p;  // the aesthetic scores: for a refiner taking over
  EXPECT_FALSE(has_param(*m, "img2img", "aesthetic_score"));
  // SDXL's trained sizes as presets of txt2img's size (a host offers them without knowing SDXL)
  const auto presets = width_presets(*m);
  ASSERT_EQ(presets.size(), 9u);
  EXPECT_EQ(presets[0], "1024x1024");
  EXPECT_NE(std::find(presets.begin(), presets.end(), "1344x768"), presets.end());
  Request r = base_request();
  const double e0 = max_levels(run(m, r).images.at(0), E("txt2img.default"));
  r.ints["original_height"] = 96;  // diffusers' original_size=(96, 80): (height, width)
  r.ints["original_width"] = 80;
  r.ints["crop_top"] = 4;  // crops_coords_top_left=(4, 8)
  r.ints["crop_left"] = 8;
  r.ints["target_height"] = 64;  // target_size=(64, 48)
  r.ints["target_width"] = 48;
  const double e1 = max_levels(run(m, r).images.at(0), E("txt2img.sizes"));
  std::printf("txt2img vs diffusers (8-bit levels): default %.3g, sizes %.3g\n", e0, e1);
  EXPECT_LE(e0, 1.0);
  EXPECT_LE(e1, 1.0);
}

// The refiner's session: its conditioning (aesthetic scores, original size, crop; not the target
// size) and its img2img against diffusers' StableDiffusionXLImg2ImgPipeline (requires_aesthetics_score)
// from the same prompt, image and parameters. diffusers conditions the negative side on the
// original size with no crop (negative_crops_coords_top_left defaults to (0, 0)) and the negative
// aesthetic score: a session that reused the positive crop there was 54 levels off.
TEST(SdxlPipeline, RefinerImg2ImgMatchesDiffusers) {
  auto m = sdxl::family().load(kXl + "/tiny-sdxl-refiner", ModelOptions{});
  for (const char* p : {"aesthetic_score", "negative_aesthetic_score", "original_width", "original_height", "crop_left", "crop_top"})
    EXPECT_TRUE(has_param(*m, "img2img", p)) << p;
  EXPECT_FALSE(has_param(*m, "img2img", "target_width"));  // the refiner is not conditioned on it
  const auto rgb = E("refiner.init_image").contiguous();  // 64 x 64 x 3, uint8
  Request r = base_request();
  r.task = "img2img";
  r.ints.erase("width");
  r.ints.erase("height");
  r.ints["steps"] = 5;
  r.floats["strength"] = 0.6;
  r.floats["aesthetic_score"] = 7.5;
  r.floats["negative_aesthetic_score"] = 1.5;
  r.ints["original_height"] = 96;  // original_size=(96, 80)
  r.ints["original_width"] = 80;
  r.ints["crop_top"] = 4;  // crops_coords_top_left=(4, 8)
  r.ints["crop_left"] = 8;
  Image im{64, 64, 3, std::vector<uint8_t>(rgb.data_ptr<uint8_t>(), rgb.data_ptr<uint8_t>() + rgb.numel())};
  r.images.push_back(im);
  const double e = max_levels(run(m, r).images.at(0), E("refiner.img2img.scores"));
  std::printf("refiner img2img vs diffusers (8-bit levels): %.3g\n", e);
  EXPECT_LE(e, 1.0);
}

// Stable Diffusion 1.x/2.x sessions do not offer SDXL's conditioning
TEST(SdxlPipeline, SdSessionsLeaveTheSdxlParametersOut) {
  auto m = sd::family().load(std::string(LOUPE_FIXTURES_DIR) + "/sd/tiny-sd15", ModelOptions{});
  for (const char* task : {"txt2img", "img2img", "inpaint"})
    for (const char* p : {"original_width", "crop_top", "target_height", "aesthetic_score", "negative_aesthetic_score"})
      EXPECT_FALSE(has_param(*m, task, p)) << task << "." << p;
  EXPECT_TRUE(width_presets(*m).empty());
}

// A folder as a download with variant="fp16" holds it: every component's weights are the fp16
// variant files, the UNet's sharded with an index; the session reads them (here in fp32) and makes
// diffusers' image from the same files.
TEST(SdxlVariants, Fp16FolderMatchesDiffusers) {
  const std::string dir = kXl + "/tiny-sdxl-fp16";
  EXPECT_EQ(fs::path(io::Checkpoint::weights_file(dir + "/unet")).filename(), "diffusion_pytorch_model.safetensors.index.fp16.json");
  EXPECT_EQ(fs::path(io::Checkpoint::weights_file(dir + "/vae")).filename(), "diffusion_pytorch_model.fp16.safetensors");
  EXPECT_EQ(fs::path(io::Checkpoint::weights_file(dir + "/text_encoder_2")).filename(), "model.fp16.safetensors");
  const auto ck = io::Checkpoint::open(dir + "/unet");
  const auto full = io::Checkpoint::open(kXl + "/tiny-sdxl/unet");
  auto names = ck.names(), full_names = full.names();
  std::sort(names.begin(), names.end());
  std::sort(full_names.begin(), full_names.end());
  EXPECT_EQ(names, full_names);
  EXPECT_EQ(ck.dtype("conv_in.weight"), "F16");
  EXPECT_TRUE(torch::equal(ck.load("conv_in.weight"), full.load("conv_in.weight").to(torch::kFloat16)));
  EXPECT_EQ(sdxl::family().detect(dir), "sdxl");
  auto m = sdxl::family().load(dir, ModelOptions{});
  const double e = max_levels(run(m, base_request()).images.at(0), E("txt2img.fp16folder"));
  std::printf("fp16-variant folder vs diffusers (8-bit levels): %.3g\n", e);
  EXPECT_LE(e, 1.0);
}

// Full weights beside their variants (stabilityai ships both): the plain file unless the session's
// dtype has a variant; a folder with only a bf16 (or another) variant takes it; none names them.
TEST(SdxlVariants, PlainFilesUnlessTheDtypeHasAVariant) {
  TempDir t("variants");
  for (const auto& src : {kXl + "/tiny-sdxl/unet", kXl + "/tiny-sdxl-fp16/unet"})
    for (const auto& e : fs::directory_iterator(src))
      fs::copy(e.path(), t.path / e.path().filename(), fs::copy_options::skip_existing);
  const std::string d = t.path.string();
  EXPECT_EQ(fs::path(io::Checkpoint::weights_file(d)).filename(), "diffusion_pytorch_model.safetensors");
  EXPECT_EQ(fs::path(io::Checkpoint::weights_file(d, "fp16")).filename(), "diffusion_pytorch_model.safetensors.index.fp16.json");
  EXPECT_EQ(fs::path(io::Checkpoint::weights_file(d, "bf16")).filename(), "diffusion_pytorch_model.safetensors");
  EXPECT_EQ(io::Checkpoint::variant_for(torch::kFloat16), "fp16");
  EXPECT_EQ(io::Checkpoint::variant_for(torch::kBFloat16), "bf16");
  EXPECT_EQ(io::Checkpoint::variant_for(torch::kFloat32), "");
  EXPECT_EQ(io::Checkpoint::open(d, "fp16").dtype("conv_in.weight"), "F16");
  EXPECT_EQ(io::Checkpoint::open(d).dtype("conv_in.weight"), "F32");

  TempDir b("bf16");
  io::save_safetensors((b.path / "model.bf16.safetensors").string(), {{"w", torch::ones({2, 2}, torch::kBFloat16)}});
  io::save_safetensors((b.path / "model-00001-of-00002.safetensors").string(), {{"x", torch::ones({1})}});  // a stray shard
  EXPECT_EQ(fs::path(io::Checkpoint::weights_file(b.path.string())).filename(), "model.bf16.safetensors");
  EXPECT_EQ(io::Checkpoint::open(b.path.string()).dtype("w"), "BF16");

  TempDir none("none");
  try {
    io::Checkpoint::open(none.path.string());
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("fp16"), std::string::npos) << e.what();
  }
}

// LoRA for SDXL's UNet (and encoder 2) in every naming: kohya with the original UNet's module names
// (lora_unet_input_blocks_4_1_...) and with diffusers' paths, diffusers' older names and PEFT's
// (tests/fixtures/gen/make_sdxl_lora.py: diffusers' own loader maps the names; the expected update
// of each module is alpha / rank * up @ down, computed there), merged at a weight and removed exactly.
TEST(SdxlLora, EveryNamingUpdatesTheSameModules) {
  torch::NoGradGuard ng;
  const std::string dir = kXl + "/tiny-sdxl", lora = kXl + "/lora";
  io::BindOptions to;
  to.allow_missing = [](const std::string& k) { return k.find("position_ids") != std::string::npos; };
  clip::ClipTextModel te1(clip::TextConfig::load(dir + "/text_encoder/config.json"));
  clip::ClipTextModel te2(clip::TextConfig::load(dir + "/text_encoder_2/config.json"));
  io::bind(*te1, io::Checkpoint::open(dir + "/text_encoder"), to);
  io::bind(*te2, io::Checkpoint::open(dir + "/text_encoder_2"), to);
  sd::UNet2DConditionModel unet(sd::UNetConfig::from_json(io::read_json_file(dir + "/unet/config.json"), "unet"));
  io::bind(*unet, io::Checkpoint::open(dir + "/unet"));
  const auto expected = io::Checkpoint::open(lora + "/expected.safetensors");
  auto unet_params = unet->named_parameters(true), te2_params = te2->named_parameters(true);
  std::map<std::string, std::pair<torch::Tensor, torch::Tensor>> watched;  // delta name -> (param, original)
  for (const auto& n : expected.names()) {
    const bool text = n.rfind("delta.text_encoder_2.", 0) == 0;
    const std::string param = n.substr(text ? 21 : 11) + ".weight";
    auto* p = (text ? te2_params : unet_params).find(param);
    ASSERT_NE(p, nullptr) << param;
    watched[n] = {*p, p->clone()};
  }
  ASSERT_EQ(watched.size(), 8u);
  for (const char* file : {"kohya-sgm", "kohya-diffusers", "diffusers-old", "peft"}) {
    SCOPED_TRACE(file);
    sd::LoraSet set;
    const std::string path = lora + "/" + file + ".safetensors";
    set.set(path, 0.5f, *unet, *te1, te2.get());
    for (const auto& [n, pw] : watched) {
      const double err = (pw.first - pw.second - 0.5 * expected.load(n)).abs().max().item<double>();
      EXPECT_LT(err, 1e-5) << n;
    }
    set.set(path, 0.0f, *unet, *te1, te2.get());
    for (const auto& [n, pw] : watched) EXPECT_TRUE(torch::equal(pw.first, pw.second)) << n;
  }
}
