// SDXL parity with diffusers on the tiny SDXL folder (tests/fixtures/gen/make_sdxl_tiny.py): the
// two text encoders (penultimate states, the projected pooled output; reference: openai CLIP's
// text transformer with the same weights), the UNet with the "text_time" added conditioning, and
// StableDiffusionXLPipeline / StableDiffusionXLImg2ImgPipeline runs fed with those encoders'
// conditioning. fp32, CPU; tolerances as the SD 1.x/2.x parity tests.
#include <gtest/gtest.h>

#include <filesystem>

#include "core/runtime.h"
#include "io/checkpoint.h"
#include "io/config.h"
#include "io/state_dict.h"
#include "models/clip/clip_text.h"
#include "models/sd/unet.h"
#include "models/sd/vae.h"
#include "pipelines/diffusion.h"
#include "schedulers/scheduler.h"

using namespace loupe;

namespace {

const std::string kXl = std::string(LOUPE_FIXTURES_DIR) + "/sdxl";
const std::string kDir = kXl + "/tiny-sdxl";

const io::Checkpoint& expected() {
  static io::Checkpoint c = io::Checkpoint::open(kXl + "/expected.safetensors");
  return c;
}
torch::Tensor E(const std::string& name) { return expected().load(name); }

double max_abs(const torch::Tensor& a, const torch::Tensor& b) {
  EXPECT_EQ(a.sizes(), b.sizes());
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
}

sd::UNet2DConditionModel load_unet() {
  const std::string dir = kDir + "/unet";
  sd::UNet2DConditionModel m(sd::UNetConfig::from_json(io::read_json_file(dir + "/config.json"), dir + "/config.json"));
  io::bind(*m, io::Checkpoint::open(dir));
  m->eval();
  return m;
}

clip::ClipTextModel load_text(const std::string& sub) {
  const std::string dir = kDir + "/" + sub;
  clip::ClipTextModel m(clip::TextConfig::load(dir + "/config.json"));
  io::bind(*m, io::Checkpoint::open(dir));
  m->eval();
  return m;
}

pipelines::DiffusionModels load_models() {
  pipelines::DiffusionModels m;
  m.unet = load_unet();
  const std::string dir = kDir + "/vae";
  m.vae = sd::AutoencoderKL(sd::VaeConfig::from_json(io::read_json_file(dir + "/config.json"), dir + "/config.json"));
  io::bind(*m.vae, io::Checkpoint::open(dir));
  m.vae->eval();
  const std::string sc = kDir + "/scheduler/scheduler_config.json";
  m.scheduler = schedulers::SchedulerConfig::from_json(io::read_json_file(sc), sc);
  return m;
}

}  // namespace

TEST(SdxlParity, UNetConfigIsSdxlShaped) {
  const auto u = load_unet();
  EXPECT_TRUE(u->cfg.text_time);
  EXPECT_EQ(u->cfg.down_block_types[0], "DownBlock2D");  // no attention in the first level
  EXPECT_EQ(u->cfg.transformer_layers, (std::vector<int64_t>{1, 1, 2}));
}

TEST(SdxlParity, TextEncodersMatchTheReference) {
  torch::NoGradGuard ng;
  auto te1 = load_text("text_encoder"), te2 = load_text("text_encoder_2");
  EXPECT_FALSE(te1->cfg.with_projection);
  EXPECT_TRUE(te2->cfg.with_projection);
  const auto o1 = te1->hidden_and_pooled(E("te.ids"), te1->cfg.num_hidden_layers - 1, false);
  const auto o2 = te2->hidden_and_pooled(E("te.ids2"), te2->cfg.num_hidden_layers - 1, true);
  const double e1 = max_abs(o1.hidden, E("te1.penultimate")), e2 = max_abs(o2.hidden, E("te2.penultimate"));
  const double ep = max_abs(o2.pooled, E("te2.pooled"));
  std::printf("text encoders: max |diff| penultimate 1 %.3g, penultimate 2 %.3g, pooled %.3g\n", e1, e2, ep);
  EXPECT_LT(e1, 1e-5);
  EXPECT_LT(e2, 1e-5);
  EXPECT_LT(ep, 1e-5);
  // what the pipeline conditions on
  EXPECT_LT(max_abs(torch::cat({o1.hidden, o2.hidden}, -1), E("pipe.prompt_embeds")), 1e-5);
}

TEST(SdxlParity, UNetWithAddedConditioningMatchesDiffusers) {
  torch::NoGradGuard ng;
  auto u = load_unet();
  const auto out = u->forward(E("unet.sample"), E("unet.timestep"), E("unet.context"), E("unet.text_embeds"), E("unet.time_ids"));
  const double err = max_abs(out, E("unet.out"));
  std::printf("UNet (text_time): max |diff| %.3g\n", err);
  EXPECT_LT(err, 1e-4);  // fp32 on CPU, outputs O(1)
  // the added conditioning is required
  EXPECT_THROW(u->forward(E("unet.sample"), E("unet.timestep"), E("unet.context")), Error);
}

TEST(SdxlParity, PipelinesMatchDiffusers) {
  torch::NoGradGuard ng;
  auto m = load_models();
  EXPECT_DOUBLE_EQ(m.vae->cfg.scaling_factor, 0.13025);
  const auto pe = E("pipe.prompt_embeds"), ne = E("pipe.negative_embeds");
  pipelines::AddedConditioning added;
  added.pooled = E("pipe.pooled");
  added.negative_pooled = E("pipe.negative_pooled");
  struct Case {
    std::string key, sampler;
    int width;
    bool zero_negative, sizes;
  };
  for (const Case& c : {Case{"txt2img.euler", "euler", 64, false, false}, Case{"txt2img.euler_a", "euler_a", 48, false, false},
                        Case{"txt2img.zero_neg.euler", "euler", 64, true, false},
                        Case{"txt2img.sizes.euler", "euler", 64, false, true}}) {
    SCOPED_TRACE(c.key);
    pipelines::DiffusionParams p;
    p.sampler = c.sampler;
    p.steps = 3;
    p.guidance_scale = 5.0;
    p.seed = 42;
    p.width = c.width;
    p.height = 64;
    pipelines::AddedConditioning a = added;
    a.time_ids = c.sizes ? pipelines::time_ids(96, 80, 4, 8, 64, 48) : pipelines::time_ids(64, c.width, 0, 0, 64, c.width);
    torch::Tensor neg = ne;
    if (c.zero_negative) {  // force_zeros_for_empty_prompt
      neg = torch::zeros_like(pe);
      a.negative_pooled = torch::zeros_like(added.pooled);
    }
    const auto out = pipelines::txt2img(m, pe, neg, p, {}, a);
    const double err = max_abs(out, E("pipe." + c.key));
    std::printf("%s: max |diff| %.3g\n", c.key.c_str(), err);
    EXPECT_LT(err, 2e-4);
  }
  {
    pipelines::DiffusionParams p;
    p.sampler = "euler_a";
    p.steps = 5;
    p.strength = 0.6;
    p.guidance_scale = 5.0;
    p.seed = 42;
    pipelines::AddedConditioning a = added;
    a.time_ids = pipelines::time_ids(64, 64, 0, 0, 64, 64);
    const auto image = E("pipe.init_image").permute({2, 0, 1}).unsqueeze(0).to(torch::kFloat32) / 255.0 * 2 - 1;
    const auto out = pipelines::img2img(m, pe, ne, image, p, {}, a);
    const double err = max_abs(out, E("pipe.img2img.euler_a"));
    std::printf("img2img.euler_a: max |diff| %.3g\n", err);
    EXPECT_LT(err, 2e-4);
  }
}

TEST(SdxlParity, SessionIsDetectedAsSdxl) {
  RuntimeOptions o;
  o.device = "cpu";
  auto rt = Runtime::create(o, {}, LogLevel::Warning);
  auto s = rt->open_session(kDir, "", Precision::FP32);
  EXPECT_EQ(s->model()->family(), "sdxl");
  EXPECT_EQ(s->model()->variant(), "sdxl");
}
