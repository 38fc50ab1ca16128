// SDXL parity with diffusers on the tiny SDXL folder (tests/fixtures/gen/make_sdxl_tiny.py): the
// two text encoders (penultimate states, the projected pooled output; reference: openai CLIP's
// text transformer with the same weights), the UNet with the "text_time" added conditioning, and
// StableDiffusionXLPipeline / StableDiffusionXLImg2ImgPipeline runs fed with those encoders'
// conditioning. fp32, CPU; tolerances as the SD 1.x/2.x parity tests.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <tuple>

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

// ---------------------------------------------------------------- refiner, hand-over, inpainting UNet
// (tests/fixtures/gen/make_sdxl_refiner_inpaint.py: the tiny refiner and inpainting folders, and
// diffusers' StableDiffusionXL{,Img2Img,Inpaint}Pipeline runs on them)

namespace {

const io::Checkpoint& expected_of(const std::string& name) {
  static std::map<std::string, io::Checkpoint> c;
  auto it = c.find(name);
  if (it == c.end()) it = c.emplace(name, io::Checkpoint::open(kXl + "/" + name)).first;
  return it->second;
}
torch::Tensor R(const std::string& name) { return expected_of("expected-refiner.safetensors").load(name); }
torch::Tensor I(const std::string& name) { return expected_of("expected-inpaint.safetensors").load(name); }

pipelines::DiffusionModels load_models_of(const std::string& folder) {
  pipelines::DiffusionModels m;
  const std::string d = kXl + "/" + folder;
  m.unet = sd::UNet2DConditionModel(sd::UNetConfig::from_json(io::read_json_file(d + "/unet/config.json"), d + "/unet/config.json"));
  io::bind(*m.unet, io::Checkpoint::open(d + "/unet"));
  m.unet->eval();
  m.vae = sd::AutoencoderKL(sd::VaeConfig::from_json(io::read_json_file(d + "/vae/config.json"), d + "/vae/config.json"));
  io::bind(*m.vae, io::Checkpoint::open(d + "/vae"));
  m.vae->eval();
  const std::string sc = d + "/scheduler/scheduler_config.json";
  m.scheduler = schedulers::SchedulerConfig::from_json(io::read_json_file(sc), sc);
  return m;
}

// The refiner conditions on encoder 2 alone: its part of the base's concatenated states (16 + 24).
torch::Tensor encoder2_part(const torch::Tensor& embeds) { return embeds.slice(-1, 16).contiguous(); }

torch::Tensor rgb_to_model(const torch::Tensor& hwc) {
  return hwc.permute({2, 0, 1}).unsqueeze(0).to(torch::kFloat32) / 255.0 * 2 - 1;
}

}  // namespace

TEST(SdxlParity, RefinerUNetAndImg2ImgMatchDiffusers) {
  torch::NoGradGuard ng;
  auto m = load_models_of("tiny-sdxl-refiner");
  const auto& u = m.unet->cfg;
  EXPECT_EQ(u.projection_class_embeddings_input_dim, 20 + 5 * u.addition_time_embed_dim);  // 5 time ids
  const auto out = m.unet->forward(R("refiner.unet.sample"), R("refiner.unet.timestep"), R("refiner.unet.context"),
                                   R("refiner.unet.text_embeds"), R("refiner.unet.time_ids"));
  const double eu = max_abs(out, R("refiner.unet.out"));
  std::printf("refiner UNet: max |diff| %.3g\n", eu);
  EXPECT_LT(eu, 1e-4);  // fp32 on CPU, outputs O(1)

  const auto pe = encoder2_part(E("pipe.prompt_embeds")), ne = encoder2_part(E("pipe.negative_embeds"));
  for (const auto& [key, score, negative_score] :
       {std::tuple<std::string, double, double>{"refiner.img2img.euler", 6.0, 2.5}, {"refiner.img2img.scores.euler", 7.5, 1.5}}) {
    SCOPED_TRACE(key);
    pipelines::DiffusionParams p;
    p.sampler = "euler";
    p.steps = 5;
    p.strength = 0.3;
    p.guidance_scale = 5.0;
    p.seed = 42;
    pipelines::AddedConditioning a;
    a.pooled = E("pipe.pooled");
    a.negative_pooled = E("pipe.negative_pooled");
    a.time_ids = pipelines::aesthetic_time_ids(64, 64, 0, 0, score);
    a.negative_time_ids = pipelines::aesthetic_time_ids(64, 64, 0, 0, negative_score);
    const auto img = pipelines::img2img(m, pe, ne, rgb_to_model(R("refiner.init_image")), p, {}, a);
    const double err = max_abs(img, R(key));
    std::printf("%s: max |diff| %.3g\n", key.c_str(), err);
    EXPECT_LT(err, 2e-4);
  }
}

// StableDiffusionXLPipeline(denoising_end=0.6, output_type="latent") then the refiner's
// StableDiffusionXLImg2ImgPipeline(image=latents, denoising_start=0.6), each from seed 42.
TEST(SdxlParity, BaseToRefinerHandOverMatchesDiffusers) {
  torch::NoGradGuard ng;
  auto base = load_models();
  auto refiner = load_models_of("tiny-sdxl-refiner");
  pipelines::DiffusionParams p;
  p.sampler = "euler_a";
  p.steps = 5;
  p.guidance_scale = 5.0;
  p.seed = 42;
  p.width = 48;
  p.height = 64;
  p.denoising_end = 0.6;
  pipelines::AddedConditioning a;
  a.pooled = E("pipe.pooled");
  a.negative_pooled = E("pipe.negative_pooled");
  a.time_ids = pipelines::time_ids(64, 48, 0, 0, 64, 48);
  int base_steps = 0;
  const auto latents = pipelines::txt2img_latents(base, E("pipe.prompt_embeds"), E("pipe.negative_embeds"), p,
                                                  [&](int, int total, const torch::Tensor&) { base_steps = total; }, a);
  EXPECT_EQ(base_steps, 3);  // timesteps 801, 601, 401 are at or above the cut-off 400
  const double el = max_abs(latents, R("handover.latents.euler_a"));
  std::printf("hand-over latents: max |diff| %.3g\n", el);
  EXPECT_LT(el, 1e-4);

  pipelines::DiffusionParams q = p;
  q.denoising_end = 1.0;
  q.denoising_start = 0.6;
  pipelines::AddedConditioning ra = a;
  ra.time_ids = pipelines::aesthetic_time_ids(64, 48, 0, 0, 6.0);
  ra.negative_time_ids = pipelines::aesthetic_time_ids(64, 48, 0, 0, 2.5);
  int refiner_steps = 0;
  const auto pe = encoder2_part(E("pipe.prompt_embeds")), ne = encoder2_part(E("pipe.negative_embeds"));
  const auto img = pipelines::continue_from(refiner, pe, ne, latents, q,
                                            [&](int, int total, const torch::Tensor&) { refiner_steps = total; }, ra);
  EXPECT_EQ(refiner_steps, 2);
  const double ei = max_abs(img, R("handover.image.euler_a"));
  std::printf("hand-over image: max |diff| %.3g\n", ei);
  EXPECT_LT(ei, 2e-4);
  // from diffusers' own latents: the refiner's part alone
  EXPECT_LT(max_abs(pipelines::continue_from(refiner, pe, ne, R("handover.latents.euler_a"), q, {}, ra),
                    R("handover.image.euler_a")),
            2e-4);

  // the base alone with denoising_end decodes its partly denoised latents (output_type "pt")
  pipelines::DiffusionParams b = p;
  b.sampler = "euler";
  b.width = 64;
  a.time_ids = pipelines::time_ids(64, 64, 0, 0, 64, 64);
  const double eb = max_abs(pipelines::txt2img(base, E("pipe.prompt_embeds"), E("pipe.negative_embeds"), b, {}, a),
                            R("handover.base_image.euler"));
  std::printf("base with denoising_end: max |diff| %.3g\n", eb);
  EXPECT_LT(eb, 2e-4);
}

TEST(SdxlParity, InpaintingUNetMatchesDiffusers) {
  torch::NoGradGuard ng;
  auto m = load_models_of("tiny-sdxl-inpaint");
  EXPECT_EQ(m.unet->cfg.in_channels, 9);
  const auto image = rgb_to_model(I("inpaint.image"));
  const auto mask = (I("inpaint.mask").to(torch::kFloat32) / 255.0).unsqueeze(0).unsqueeze(0);
  pipelines::AddedConditioning a;
  a.pooled = E("pipe.pooled");
  a.negative_pooled = E("pipe.negative_pooled");
  a.time_ids = pipelines::time_ids(64, 64, 0, 0, 64, 64);
  for (const auto& [key, sampler, strength] :
       {std::tuple<std::string, std::string, double>{"inpaint.s100.euler", "euler", 1.0}, {"inpaint.s075.euler_a", "euler_a", 0.75}}) {
    SCOPED_TRACE(key);
    pipelines::DiffusionParams p;
    p.sampler = sampler;
    p.steps = 4;
    p.strength = strength;
    p.guidance_scale = 5.0;
    p.seed = 42;
    const auto out = pipelines::inpaint(m, E("pipe.prompt_embeds"), E("pipe.negative_embeds"), image, mask, p, {}, a);
    const double err = max_abs(out, I(key));
    std::printf("%s: max |diff| %.3g\n", key.c_str(), err);
    EXPECT_LT(err, 2e-4);
  }
}
