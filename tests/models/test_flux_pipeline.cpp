// FLUX.1 pipelines and sessions against diffusers' FluxPipeline, FluxImg2ImgPipeline,
// FluxInpaintPipeline and FluxFillPipeline with transformers' T5EncoderModel and CLIPTextModel, run
// as published on tiny random-weight folders (tests/fixtures/flux/pipeline/, written by
// tests/fixtures/gen/make_flux_pipeline_tiny.py): packing, token ids, encoders, every pipeline at
// float tolerance from the same conditioning, and whole sessions (the family) in uint8.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <unistd.h>

#include "core/error.h"
#include "core/job.h"
#include "core/model.h"
#include "families/flux.h"
#include "io/checkpoint.h"
#include "io/config.h"
#include "io/state_dict.h"
#include "models/clip/clip_text.h"
#include "models/flux/transformer.h"
#include "models/sd/vae.h"
#include "nn/t5.h"
#include "pipelines/compose.h"
#include "pipelines/flux.h"
#include "schedulers/scheduler.h"

namespace fs = std::filesystem;
using namespace loupe;
namespace pf = loupe::pipelines::flux;

namespace {

const std::string kDir = std::string(LOUPE_FIXTURES_DIR) + "/flux/pipeline";
const std::string kPrompt = "a red fox in the snow, 35mm photo";  // the generator's PROMPT

const io::Checkpoint& expected() {
  static io::Checkpoint c = io::Checkpoint::open(kDir + "/expected.safetensors");
  return c;
}
torch::Tensor E(const std::string& name) { return expected().load(name); }

std::vector<int64_t> ids_of(const torch::Tensor& t) {
  auto c = t.reshape({-1}).to(torch::kLong).contiguous();
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

// The pipeline's parts from a tiny folder, with the transformer of `variant`.
pf::Models models(const std::string& variant, std::unique_ptr<flux::FluxTransformer>& keep) {
  const std::string d = kDir + "/tiny-flux-" + variant;
  keep = flux::FluxTransformer::load(d + "/transformer");
  pf::Models m;
  flux::FluxTransformer* tr = keep.get();
  m.transformer = [tr](const pf::TransformerInputs& in) {
    return tr->forward(in.hidden, in.context, in.pooled, in.timestep, in.img_ids, in.txt_ids, in.guidance);
  };
  m.in_channels = tr->config().in_channels;
  m.guidance_embeds = tr->config().guidance_embeds;
  const std::string vc = d + "/vae/config.json";
  m.vae = sd::AutoencoderKL(sd::VaeConfig::from_json(io::read_json_file(vc), vc, true));
  io::bind(*m.vae, io::Checkpoint::open(d + "/vae"));
  m.vae->eval();
  const std::string sc = d + "/scheduler/scheduler_config.json";
  m.scheduler = schedulers::FlowMatchConfig::from_json(io::read_json_file(sc), sc);
  return m;
}

pf::Conditioning cond(int tokens) {
  return {E("te.t5_" + std::to_string(tokens)), E("te.pooled")};
}

void expect_close(const torch::Tensor& got, const torch::Tensor& want, double tol, const std::string& what) {
  ASSERT_EQ(got.sizes(), want.sizes()) << what;
  const double diff = (got - want).abs().max().item<double>();
  std::cout << "  " << what << ": max abs error " << diff << "\n";
  EXPECT_LT(diff, tol) << what << ": max |diff| " << diff;
}

Result run(const std::shared_ptr<Model>& m, const Request& r) {
  Job job([](const Progress&) { return true; });
  JobContext ctx(&job);
  return m->run(r, ctx);
}

Image u8_image(const torch::Tensor& hwc) {
  Image img;
  img.height = static_cast<int>(hwc.size(0));
  img.width = static_cast<int>(hwc.size(1));
  img.channels = hwc.dim() == 3 ? static_cast<int>(hwc.size(2)) : 1;
  auto c = hwc.contiguous();
  img.pixels.assign(c.data_ptr<uint8_t>(), c.data_ptr<uint8_t>() + c.numel());
  return img;
}

// An image result [H, W, 3] as float [1, 3, H, W] in [0, 1].
torch::Tensor as_tensor(const Image& img) { return pipelines::image_to_tensor(img); }

}  // namespace

TEST(FluxPipeline, PackingAndIdsAreFluxPipelines) {
  auto z = torch::arange(2 * 16 * 4 * 6, torch::kFloat32).reshape({2, 16, 4, 6});
  auto p = pf::pack_latents(z);
  ASSERT_EQ(p.sizes(), (std::vector<int64_t>{2, 6, 64}));
  // packed token (r, c) holds channel-major 2 x 2 patches: [c0 (0,0), c0 (0,1), c0 (1,0), c0 (1,1), c1 ...]
  EXPECT_EQ(p[0][4][0].item<float>(), z[0][0][2][2].item<float>());
  EXPECT_EQ(p[0][4][1].item<float>(), z[0][0][2][3].item<float>());
  EXPECT_EQ(p[0][4][2].item<float>(), z[0][0][3][2].item<float>());
  EXPECT_EQ(p[0][4][4].item<float>(), z[0][1][2][2].item<float>());
  EXPECT_TRUE(torch::equal(pf::unpack_latents(p, 4, 6), z));
  auto ids = pf::latent_image_ids(4, 6);
  ASSERT_EQ(ids.sizes(), (std::vector<int64_t>{6, 3}));
  EXPECT_EQ(ids[4][1].item<float>(), 1);
  EXPECT_EQ(ids[4][2].item<float>(), 1);
  EXPECT_EQ(ids[5][2].item<float>(), 2);
  EXPECT_EQ(ids.select(1, 0).abs().sum().item<float>(), 0);
  EXPECT_EQ(pf::text_ids(7).sizes(), (std::vector<int64_t>{7, 3}));
  // the Fill mask: each latent's 8 x 8 pixels become channels, then packed: [B, S, 4 * 64]
  auto mask = torch::zeros({1, 1, 32, 48});
  mask.slice(2, 0, 8).slice(3, 0, 8).fill_(1);  // latent (0, 0)
  auto fm = pf::pack_fill_mask(mask, 8);
  ASSERT_EQ(fm.sizes(), (std::vector<int64_t>{1, 6, 256}));
  EXPECT_EQ(fm[0][0].sum().item<float>(), 64);  // token 0 holds latent (0, 0)'s 64 pixels
  EXPECT_EQ(fm.sum().item<float>(), 64);
}

TEST(FluxPipeline, TokenIdsAndEncodersMatchTransformers) {
  const std::string d = kDir + "/tiny-flux-dev";
  auto clip_tok = text::BpeTokenizer::from_vocab_merges(d + "/tokenizer/vocab.json", d + "/tokenizer/merges.txt",
                                                        text::BpeTokenizer::Flavor::Clip);
  const auto clip_special = sd::clip_tokens(clip_tok, d + "/tokenizer");
  const auto clip_ids = flux_family::clip_prompt_ids(clip_tok, clip_special, kPrompt);
  EXPECT_EQ(clip_ids, ids_of(E("te.clip_ids")));
  auto t5_tok = text::SentencePieceTokenizer::load_from_dir(d + "/tokenizer_2");
  for (int n : {256, 512}) {
    EXPECT_EQ(text::encode_t5(t5_tok, kPrompt, n, true), ids_of(E("te.t5_ids_" + std::to_string(n)))) << n;
  }
  EXPECT_EQ(flux_family::t5_tokens_for("schnell"), 256);
  EXPECT_EQ(flux_family::t5_tokens_for("dev"), 512);

  clip::ClipTextModel clip(clip::TextConfig::load(d + "/text_encoder/config.json"));
  io::BindOptions bo;
  bo.allow_missing = [](const std::string& k) { return k.find("position_ids") != std::string::npos; };
  io::bind(*clip, io::Checkpoint::open(d + "/text_encoder"), bo);
  clip->eval();
  torch::NoGradGuard ng;
  auto pooled = clip->hidden_and_pooled(torch::tensor(clip_ids).unsqueeze(0), clip->cfg.num_hidden_layers, true).pooled;
  expect_close(pooled, E("te.pooled"), 1e-5, "CLIP pooled");

  nn::T5Model t5(nn::T5Config::from_json(io::read_json_file(d + "/text_encoder_2/config.json"), "t5"), false);
  io::bind(*t5, io::Checkpoint::open(d + "/text_encoder_2"));
  t5->eval();
  auto h = t5->encode(E("te.t5_ids_512"));
  expect_close(h, E("te.t5_512"), 1e-4, "T5 last hidden state");
}

TEST(FluxPipeline, Txt2ImgMatchesFluxPipeline) {
  std::unique_ptr<flux::FluxTransformer> keep;
  for (const auto& [key, variant, steps, guidance, tokens, w, h] :
       std::vector<std::tuple<std::string, std::string, int, double, int, int, int>>{
           {"schnell.txt2img", "schnell", 2, 0.0, 256, 48, 64},
           {"dev.txt2img", "dev", 3, 3.5, 512, 48, 64},
           {"dev.txt2img_96", "dev", 2, 3.5, 512, 64, 96}}) {
    auto m = models(variant, keep);
    pf::Params p;
    p.steps = steps;
    p.guidance = guidance;
    p.seed = 42;
    p.width = w;
    p.height = h;
    int calls = 0;
    auto out = pf::txt2img(m, cond(tokens), p, [&](int step, int total, const torch::Tensor&, int64_t, int64_t) {
      EXPECT_EQ(step, ++calls);
      EXPECT_EQ(total, steps);
    });
    EXPECT_EQ(calls, steps);
    expect_close(out, E(key), 5e-5, key);
  }
}

TEST(FluxPipeline, Img2ImgAndInpaintMatchDiffusers) {
  std::unique_ptr<flux::FluxTransformer> keep;
  const auto image = E("init_image"), mask = E("mask");
  {
    auto m = models("dev", keep);
    pf::Params p;
    p.steps = 5;
    p.guidance = 3.5;
    p.seed = 42;
    p.strength = 0.6;
    expect_close(pf::img2img(m, cond(512), image, p), E("dev.img2img"), 5e-5, "dev.img2img");
    p.steps = 4;
    p.strength = 0.8;
    expect_close(pf::inpaint(m, cond(512), image, mask, p), E("dev.inpaint"), 5e-5, "dev.inpaint");
  }
  {
    auto m = models("schnell", keep);
    pf::Params p;
    p.steps = 2;
    p.guidance = 0;
    p.seed = 42;
    expect_close(pf::inpaint(m, cond(256), image, mask, p), E("schnell.inpaint"), 5e-5, "schnell.inpaint");
  }
  {
    auto m = models("fill", keep);
    ASSERT_EQ(m.in_channels, 384);
    pf::Params p;
    p.steps = 3;
    p.guidance = 30;
    p.seed = 42;
    expect_close(pf::inpaint(m, cond(512), image, mask, p), E("fill.inpaint"), 5e-5, "fill.inpaint");
    p.steps = 4;
    p.strength = 0.7;
    expect_close(pf::inpaint(m, cond(512), image, mask, p), E("fill.inpaint_s07"), 5e-5, "fill.inpaint_s07");
  }
}

TEST(FluxSession, FoldersAreRecognisedAndRunAsThePipelines) {
  const auto fam = flux_family::family();
  EXPECT_EQ(fam.detect(kDir + "/tiny-flux-schnell"), "flux-schnell");
  EXPECT_EQ(fam.detect(kDir + "/tiny-flux-dev"), "flux-dev");
  EXPECT_EQ(fam.detect(kDir + "/tiny-flux-fill"), "flux-fill");
  EXPECT_EQ(fam.detect(std::string(LOUPE_FIXTURES_DIR) + "/sd/tiny-sd15"), "");

  auto dev = fam.load(kDir + "/tiny-flux-dev", ModelOptions{});
  EXPECT_EQ(dev->family(), "flux");
  EXPECT_EQ(dev->variant(), "flux-dev");
  for (const auto& t : dev->tasks()) {
    EXPECT_EQ(t.find("negative_prompt"), nullptr) << t.name;  // no classifier-free guidance
    EXPECT_EQ(t.find("sampler"), nullptr) << t.name;
    EXPECT_EQ(t.find("steps")->def, 28) << t.name;
    EXPECT_EQ(t.find("guidance_scale")->def, 3.5) << t.name;
  }
  auto schnell = fam.load(kDir + "/tiny-flux-schnell", ModelOptions{});
  for (const auto& t : schnell->tasks()) {
    EXPECT_EQ(t.find("steps")->def, 4) << t.name;
    EXPECT_EQ(t.find("guidance_scale"), nullptr) << t.name;
  }

  // txt2img: the whole chain (tokenizers, encoders, transformer, scheduler, VAE) in uint8
  Request r;
  r.task = "txt2img";
  r.strings["prompt"] = kPrompt;
  r.ints["steps"] = 3;
  r.ints["seed"] = 42;
  r.ints["width"] = 48;
  r.ints["height"] = 64;
  r.floats["guidance_scale"] = 3.5;
  auto res = run(dev, r);
  ASSERT_EQ(res.images.size(), 1u);
  expect_close(as_tensor(res.images[0]), E("dev.txt2img"), 1.5 / 255, "session dev.txt2img");
  EXPECT_EQ(res.strings["variant"], "flux-dev");

  // inpaint with the Fill model: inside the painted mask the pipeline's pixels, outside exactly the input's
  auto fill = fam.load(kDir + "/tiny-flux-fill", ModelOptions{});
  EXPECT_EQ(fill->variant(), "flux-fill");
  Request q;
  q.task = "inpaint";
  q.strings["prompt"] = kPrompt;
  q.ints["steps"] = 3;
  q.ints["seed"] = 42;
  q.floats["guidance_scale"] = 30;
  q.floats["mask_blur"] = 0;
  q.floats["feather"] = 0;
  const Image src = u8_image(E("image_u8"));
  q.images.push_back(src);
  q.mask = u8_image(E("mask_u8"));
  auto out = run(fill, q);
  ASSERT_EQ(out.images.size(), 1u);
  const auto got = as_tensor(out.images[0]), orig = as_tensor(src);
  const auto inside = E("mask").expand({1, 3, -1, -1}) > 0.5;
  EXPECT_TRUE(torch::equal(got.masked_select(~inside), orig.masked_select(~inside)));
  expect_close(got.masked_select(inside), E("fill.inpaint").masked_select(inside), 1.5 / 255, "session fill.inpaint");
}

TEST(FluxSession, LivePreviewAndCancel) {
  auto m = flux_family::family().load(kDir + "/tiny-flux-schnell", ModelOptions{});
  Request r;
  r.task = "txt2img";
  r.strings["prompt"] = kPrompt;
  r.ints["steps"] = 3;
  r.ints["seed"] = 42;
  r.ints["width"] = 48;
  r.ints["height"] = 64;
  int previews = 0, steps = 0;
  {
    Job job([&](const Progress& p) {
      if (p.stage == "denoising") ++steps;
      if (p.preview) {
        ++previews;
        EXPECT_EQ(p.preview->channels, 3);
        EXPECT_EQ(p.preview->width * 64, p.preview->height * 48);  // the image's aspect ratio
      }
      return true;
    });
    JobContext ctx(&job);
    ctx.set_wants_preview(true);
    EXPECT_EQ(m->run(r, ctx).images.size(), 1u);
  }
  EXPECT_EQ(steps, 3);
  EXPECT_EQ(previews, 3);
  // a callback that returns false at the first step stops the job between steps
  int seen = 0;
  Job job([&](const Progress& p) { return p.stage != "denoising" || ++seen < 1; });
  JobContext ctx(&job);
  try {
    m->run(r, ctx);
    FAIL() << "not cancelled";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), Status::Cancelled) << e.what();
  }
  EXPECT_EQ(seen, 1);
}

TEST(FluxSession, SplitFilesRunAsTheFolder) {
  // ComfyUI's layout (make_flux_split_tiny.py): the diffusion model file under BFL names, the encoders
  // in text_encoders/, ae.safetensors in vae/; the sidecar holds the tiny configs and vocabularies
  const std::string file = kDir + "/split/diffusion_models/tiny-flux-dev.safetensors";
  const auto fam = flux_family::family();
  EXPECT_EQ(fam.detect(file).rfind("flux", 0), 0u) << fam.detect(file);
  nlohmann::json report;
  fam.inspect(file, report);
  EXPECT_FALSE(report.contains("problems")) << report.dump();
  auto m = fam.load(file, ModelOptions{});
  EXPECT_EQ(m->variant(), "flux-dev");
  Request r;
  r.task = "txt2img";
  r.strings["prompt"] = kPrompt;
  r.ints["steps"] = 3;
  r.ints["seed"] = 42;
  r.ints["width"] = 48;
  r.ints["height"] = 64;
  r.floats["guidance_scale"] = 3.5;
  auto res = run(m, r);
  ASSERT_EQ(res.images.size(), 1u);
  expect_close(as_tensor(res.images[0]), E("dev.txt2img"), 1.5 / 255, "split-file dev.txt2img");
}

TEST(FluxSession, SplitFilesWithoutTheirPartsAreClearErrors) {
  const fs::path d = fs::temp_directory_path() / ("loupe-flux-split-" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d / "diffusion_models");
  fs::create_directories(d / "text_encoders");
  fs::create_directories(d / "vae");
  for (const char* f : {"text_encoders/t5xxl_fp16.safetensors", "text_encoders/clip_l.safetensors", "vae/ae.safetensors"})
    std::ofstream(d / f) << "x";
  auto parts = flux_family::find_split_files((d / "diffusion_models" / "flux1-dev.safetensors").string(), "");
  EXPECT_EQ(fs::path(parts.t5).filename(), "t5xxl_fp16.safetensors");
  EXPECT_EQ(fs::path(parts.clip).filename(), "clip_l.safetensors");
  EXPECT_EQ(fs::path(parts.vae).filename(), "ae.safetensors");
  fs::remove(d / "vae" / "ae.safetensors");
  parts = flux_family::find_split_files((d / "diffusion_models" / "flux1-dev.safetensors").string(), "");
  EXPECT_TRUE(parts.vae.empty());
  EXPECT_FALSE(parts.looked_in.empty());
  nlohmann::json report;
  flux_family::family().inspect((d / "diffusion_models" / "flux1-dev.safetensors").string(), report);
  ASSERT_TRUE(report.contains("problems")) << report.dump();
  EXPECT_NE(report["problems"].dump().find("VAE"), std::string::npos) << report.dump();
  fs::remove_all(d);
}

// Sessions whose weights do not fit stream the transformer's blocks. On the CPU the budget is the
// host's memory (the runtime's budget when set, else what is available): fp32 weights run in place
// (residency adds nothing), so a session stays resident even on a 1-byte budget; in bf16 every
// weight would be a new copy, so on that budget the blocks are streamed, with the same image.
TEST(FluxSession, StreamsTheTransformerWhenItsCopiesDoNotFitTheHost) {
  const auto fam = flux_family::family();
  const std::string dir = kDir + "/tiny-flux-dev";
  Request r;
  r.task = "txt2img";
  r.strings["prompt"] = kPrompt;
  r.ints["steps"] = 2;
  r.ints["seed"] = 42;
  r.ints["width"] = 32;
  r.ints["height"] = 32;
  r.floats["guidance_scale"] = 3.5;
  ModelOptions tight;
  tight.device_budget_bytes = 1;
  EXPECT_EQ(run(fam.load(dir, tight), r).strings["transformer_placement"], "resident");
  ModelOptions half;
  half.dtype = torch::kBFloat16;
  ModelOptions half_tight = half;
  half_tight.device_budget_bytes = 1;
  auto a = run(fam.load(dir, half), r);
  auto b = run(fam.load(dir, half_tight), r);
  EXPECT_EQ(a.strings["transformer_placement"], "resident");
  EXPECT_EQ(b.strings["transformer_placement"], "streamed");
  ASSERT_EQ(a.images.size(), 1u);
  ASSERT_EQ(b.images.size(), 1u);
  EXPECT_EQ(a.images[0].pixels, b.images[0].pixels);
}
