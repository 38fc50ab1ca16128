// Checkpoints as the libraries of each generation write them, and what a single file needs besides
// its weights. Every second layout is written at test time from the committed tiny fixtures (same
// tensors, other names or files), so the expectation is equality with the first layout:
//  - Florence-2's image processor settings in preprocessor_config.json or (transformers 5)
//    processor_config.json's "image_processor"; weights with the "model." prefix or without it;
//  - CLIP text encoders with or without "text_model." (transformers 5), in a diffusers folder and in
//    a single file: one key-prefix rule in the binder;
//  - an empty prompt (diffusers: BOS, EOS, padding);
//  - a single SD file's tokenizer found in the models folder, Loupe's folder or the Hugging Face
//    cache, else an error that says what to do, raised before any weight is read;
//  - an external VAE (the web UIs' LDM-layout file, or a diffusers vae/ folder) swapped into a session.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/job.h"
#include "io/checkpoint.h"
#include "io/config.h"
#include "io/hf_cache.h"
#include "io/safetensors.h"
#include "io/state_dict.h"
#include "models/clip/clip_text.h"
#include "models/clip/clip_vocab.h"
#include "models/florence2/config.h"
#include "families/florence2.h"
#include "families/sd.h"
#include "models/sd/prompt.h"
#include "models/sd/single_file.h"
#include "pipelines/compose.h"
#include "pipelines/diffusion.h"
#include "text/bpe_tokenizer.h"

#include "../support/scoped_env.h"
#include "../support/sd_request.h"

namespace fs = std::filesystem;
using namespace loupe;

namespace {

const std::string kFixtures = LOUPE_FIXTURES_DIR;
const std::string kSd = kFixtures + "/sd";
const std::string kFlorence = kFixtures + "/florence2/tiny";

struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& name) {
    path = fs::temp_directory_path() / ("loupe-layouts-" + name + "-" + std::to_string(::getpid()));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string operator/(const std::string& p) const { return (path / p).string(); }
};

// No tokenizer on this machine can leak into a test: every place looked in is under `root`.
void isolate_lookup(EnvGuard& env, const TempDir& root) {
  fs::create_directories(root / "hub");
  fs::create_directories(root / "home");
  env.set("HF_HUB_CACHE", root / "hub");
  env.set("HUGGINGFACE_HUB_CACHE", std::nullopt);
  env.set("HF_HOME", std::nullopt);
  env.set("XDG_DATA_HOME", root / "data");
  env.set("XDG_CACHE_HOME", root / "cache");
  env.set("HOME", root / "home");
}

void write_json(const std::string& file, const nlohmann::json& j) {
  fs::create_directories(fs::path(file).parent_path());
  std::ofstream(file) << j.dump(1);
}

// Rewrites a safetensors file with renamed (and optionally changed) tensors.
void rewrite(const std::string& in, const std::string& out, const std::function<std::string(const std::string&)>& rename,
             const std::function<torch::Tensor(const std::string&, torch::Tensor)>& change = {}) {
  io::SafetensorsFile f(in);
  std::vector<std::pair<std::string, torch::Tensor>> t;
  for (const auto& n : f.names()) {
    const std::string m = rename(n);
    if (!m.empty()) t.push_back({m, change ? change(n, f.load(n)) : f.load(n)});
  }
  fs::create_directories(fs::path(out).parent_path());
  io::save_safetensors(out, t);
}

// A copy of a folder (symlinks followed).
void copy_dir(const std::string& from, const std::string& to) {
  fs::create_directories(to);
  fs::copy(from, to, fs::copy_options::recursive | fs::copy_options::overwrite_existing);
}

// A single SD file with its sidecar configs but no tokenizer, in `dir`.
std::string lonely_single_file(const std::string& name, const std::string& dir) {
  const std::string file = dir + "/" + name + ".safetensors";
  fs::copy_file(kSd + "/single/" + name + ".safetensors", file, fs::copy_options::overwrite_existing);
  copy_dir(kSd + "/single/" + name, dir + "/" + name);
  fs::remove_all(dir + "/" + name + "/tokenizer");
  return file;
}

void copy_tokenizer(const std::string& to) {
  fs::create_directories(to);
  for (const char* f : {"vocab.json", "merges.txt"})
    fs::copy_file(kSd + "/tiny-sd15/tokenizer/" + f, to + "/" + f, fs::copy_options::overwrite_existing);
}

Result run(Model& m, const Request& r) {
  Job job([](const Progress&) { return true; });
  JobContext ctx(&job);
  return m.run(r, ctx);
}

Image gray_image(int w, int h) {
  Image img;
  img.width = w;
  img.height = h;
  img.channels = 3;
  img.pixels.resize(img.bytes());
  for (size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = static_cast<uint8_t>(40 + (i * 7) % 150);
  return img;
}

// Both folders load and give the same result for one task on one image.
void expect_same_florence2_results(const std::string& a, const std::string& b, const std::string& task,
                                   const Image& image, int64_t max_new_tokens) {
  auto ma = florence2::family().load(a, ModelOptions{}), mb = florence2::family().load(b, ModelOptions{});
  Request r;
  r.task = task;
  r.images.push_back(image);
  r.ints["max_new_tokens"] = max_new_tokens;
  EXPECT_EQ(run(*ma, r).to_json(), run(*mb, r).to_json());
}

std::string error_of(const std::function<void()>& f, Status* status = nullptr) {
  try {
    f();
  } catch (const Error& e) {
    if (status) *status = e.status();
    return e.what();
  }
  return "(no error)";
}

}  // namespace

// ------------------------------------------------------------------------------ Florence-2

TEST(Layouts, Florence2ProcessorSettingsFromEitherFile) {
  TempDir t("fl2-proc");
  // transformers 5: processor_config.json with the image processor settings under "image_processor"
  const std::string v5 = t / "v5";
  copy_dir(kFlorence, v5);
  fs::remove(v5 + "/preprocessor_config.json");
  write_json(v5 + "/processor_config.json", {{"image_processor", io::read_json_file(kFlorence + "/preprocessor_config.json")},
                                             {"processor_class", "Florence2Processor"}});
  const auto a = florence2::Config::load(kFlorence), b = florence2::Config::load(v5);
  ASSERT_NE(a.image_size, florence2::Config{}.image_size);  // the fixture's size is not the default
  EXPECT_EQ(b.image_size, a.image_size);
  EXPECT_EQ(b.image_mean, a.image_mean);
  EXPECT_EQ(b.image_std, a.image_std);
  EXPECT_EQ(b.rescale_factor, a.rescale_factor);
  // inspect: no warning when processor_config.json carries the settings, one when nothing does
  nlohmann::json report;
  report["problems"] = nlohmann::json::array();
  florence2::family().inspect(v5, report);
  EXPECT_TRUE(report["problems"].empty()) << report.dump();
  const std::string none = t / "none";
  copy_dir(v5, none);
  write_json(none + "/processor_config.json", {{"processor_class", "Florence2Processor"}});
  report["problems"] = nlohmann::json::array();
  florence2::family().inspect(none, report);
  ASSERT_EQ(report["problems"].size(), 1u) << report.dump();
  EXPECT_NE(report["problems"][0]["message"].get<std::string>().find("no image processor settings"), std::string::npos);
  EXPECT_EQ(florence2::Config::load(none).image_size, florence2::Config{}.image_size);
  // both present: the nested settings win, as transformers reads them
  const std::string both = t / "both";
  copy_dir(v5, both);
  auto other = io::read_json_file(kFlorence + "/preprocessor_config.json");
  other["size"] = {{"height", 96}, {"width", 96}};
  write_json(both + "/preprocessor_config.json", other);
  EXPECT_EQ(florence2::Config::load(both).image_size, a.image_size);
  // a malformed "image_processor" is an error naming the file
  write_json(none + "/processor_config.json", {{"image_processor", 5}});
  const std::string e = error_of([&] { florence2::Config::load(none); });
  EXPECT_NE(e.find("processor_config.json"), std::string::npos) << e;
  // and the model gives the same results from both folders
  expect_same_florence2_results(kFlorence, v5, "detect", gray_image(96, 64), 16);
}

// The one key-prefix rule applies to Florence-2 too: a bare Florence2Model's weights ("vision_tower.*",
// "language_model.*") load into the model whose names start with "model.".
TEST(Layouts, Florence2WeightsWithoutTheModelPrefix) {
  TempDir t("fl2-prefix");
  const std::string dir = t / "bare";
  copy_dir(kFlorence, dir);
  rewrite(kFlorence + "/model.safetensors", dir + "/model.safetensors",
          [](const std::string& n) { return n.rfind("model.", 0) == 0 ? n.substr(6) : n; });
  expect_same_florence2_results(kFlorence, dir, "caption", gray_image(80, 72), 12);
}

// ------------------------------------------------------------------------------ CLIP text

TEST(Layouts, ClipTextEncoderWithOrWithoutTextModelPrefix) {
  torch::NoGradGuard ng;
  TempDir t("clip");
  const std::string te = kSd + "/tiny-sd15/text_encoder";
  // transformers 5 writes CLIPTextModel without "text_model."
  rewrite(te + "/model.safetensors", t / "v5/model.safetensors", [](const std::string& n) {
    return n.rfind("text_model.", 0) == 0 ? n.substr(11) : n;
  });
  // and a checkpoint may carry an extra prefix ("transformer.", as in an SD 1.x single file's CLIP)
  rewrite(te + "/model.safetensors", t / "extra/model.safetensors", [](const std::string& n) { return "transformer." + n; });
  const auto cfg = clip::TextConfig::load(te + "/config.json");
  io::BindOptions o;
  o.allow_missing = [](const std::string& k) { return k.find("position_ids") != std::string::npos; };
  clip::ClipTextModel a(cfg), b(cfg), c(cfg);
  EXPECT_EQ(io::bind(*a, io::Checkpoint::open(te), o).prefix_rule, "");
  const auto rb = io::bind(*b, io::Checkpoint::open(t / "v5"), o);
  EXPECT_EQ(rb.prefix_rule, "without the prefix 'text_model.'");
  EXPECT_TRUE(rb.missing.empty());
  EXPECT_EQ(io::bind(*c, io::Checkpoint::open(t / "extra"), o).prefix_rule, "with the extra prefix 'transformer.'");
  const auto ids = torch::tensor(std::vector<int64_t>{536, 300, 17, 401, 233, 537, 537}).unsqueeze(0);
  const auto ya = a->forward(ids);
  EXPECT_TRUE(torch::equal(ya, b->forward(ids)));
  EXPECT_TRUE(torch::equal(ya, c->forward(ids)));
  // names that fit neither way are still reported with the names the model asked for
  rewrite(te + "/model.safetensors", t / "broken/model.safetensors", [](const std::string& n) {
    return n.find("layers.1.mlp.fc2.weight") != std::string::npos ? std::string() : n.substr(11);
  });
  clip::ClipTextModel d(cfg);
  const std::string e = error_of([&] { io::bind(*d, io::Checkpoint::open(t / "broken"), o); });
  EXPECT_NE(e.find("1 missing: 'text_model.encoder.layers.1.mlp.fc2.weight'"), std::string::npos) << e;
  EXPECT_NE(e.find("names read without the prefix 'text_model.'"), std::string::npos) << e;
}

TEST(Layouts, SdFolderWithATransformers5TextEncoder) {
  TempDir t("sd-v5");
  const std::string dir = t / "tiny-sd15";
  copy_dir(kSd + "/tiny-sd15", dir);
  rewrite(kSd + "/tiny-sd15/text_encoder/model.safetensors", dir + "/text_encoder/model.safetensors",
          [](const std::string& n) { return n.rfind("text_model.", 0) == 0 ? n.substr(11) : n; });
  auto a = sd::family().load(kSd + "/tiny-sd15", ModelOptions{}), b = sd::family().load(dir, ModelOptions{});
  const auto r = sd_request("txt2img", "a (red:1.2) car BREAK the sky");
  EXPECT_EQ(run(*a, r).images.at(0).pixels, run(*b, r).images.at(0).pixels);
}

// Older SD 1.x single files name the CLIP tensors "cond_stage_model.transformer.embeddings..."
// (no "text_model."): the same rule, under the file's CLIP scope.
TEST(Layouts, SingleFileWithOlderClipNames) {
  TempDir t("sd-old-clip");
  const std::string file = t / "old.safetensors";
  const std::string pre = "cond_stage_model.transformer.text_model.";
  rewrite(kSd + "/single/tiny-sd15.safetensors", file, [&](const std::string& n) {
    return n.rfind(pre, 0) == 0 ? "cond_stage_model.transformer." + n.substr(pre.size()) : n;
  });
  copy_dir(kSd + "/single/tiny-sd15", t / "old");
  auto a = sd::family().load(kSd + "/single/tiny-sd15.safetensors", ModelOptions{});
  auto b = sd::family().load(file, ModelOptions{});
  const auto r = sd_request("txt2img", "a photo of a cat");
  EXPECT_EQ(run(*a, r).images.at(0).pixels, run(*b, r).images.at(0).pixels);
}

// ------------------------------------------------------------------------------ empty prompt

// diffusers tokenizes "" as BOS, EOS and padding (CLIPTokenizer with padding="max_length"), the same
// ids it uses for the unconditional embeddings.
TEST(Layouts, EmptyPromptIsBosEosAndPadding) {
  torch::NoGradGuard ng;
  const std::string dir = kSd + "/tiny-sd15";
  auto tok = text::BpeTokenizer::from_vocab_merges(dir + "/tokenizer/vocab.json", dir + "/tokenizer/merges.txt",
                                                   text::BpeTokenizer::Flavor::Clip);
  const auto ids = sd::clip_tokens(tok, dir + "/tokenizer");
  std::vector<int64_t> want{ids.bos};
  for (int64_t id : tok.encode("")) want.push_back(id);
  want.push_back(ids.eos);
  want.resize(77, ids.pad);
  const auto chunks = sd::tokenize_prompt(tok, ids, "");
  ASSERT_EQ(chunks.size(), 1u);
  EXPECT_EQ(chunks[0].ids, want);
  clip::ClipTextModel enc(clip::TextConfig::load(dir + "/text_encoder/config.json"));
  io::BindOptions o;
  o.allow_missing = [](const std::string& k) { return k.find("position_ids") != std::string::npos; };
  io::bind(*enc, io::Checkpoint::open(dir + "/text_encoder"), o);
  const auto got = sd::encode_prompt(enc, ids, chunks, 1, 1, torch::kCPU);
  EXPECT_TRUE(torch::equal(got, enc->forward(torch::tensor(want).unsqueeze(0))));
  // the padding chunk of a longer negative prompt is the same empty prompt
  EXPECT_TRUE(torch::equal(sd::encode_prompt(enc, ids, {}, 1, 1, torch::kCPU), got));
}

// txt2img / img2img / inpaint accept "": the image is what the pipeline makes from the embeddings
// of those ids (unconditional generation).
TEST(Layouts, EmptyPromptGeneratesUnconditionally) {
  torch::NoGradGuard ng;
  const std::string dir = kSd + "/tiny-sd15";
  auto model = sd::family().load(dir, ModelOptions{});
  auto r = sd_request("txt2img", "");
  const auto out = run(*model, r);
  ASSERT_EQ(out.images.size(), 1u);
  // the same through the pipeline, with the embeddings of [BOS, EOS, padding] as cond and uncond
  pipelines::DiffusionModels m;
  m.unet = sd::UNet2DConditionModel(sd::UNetConfig::from_json(io::read_json_file(dir + "/unet/config.json"), "unet"));
  io::bind(*m.unet, io::Checkpoint::open(dir + "/unet"));
  m.vae = sd::AutoencoderKL(sd::VaeConfig::from_json(io::read_json_file(dir + "/vae/config.json"), "vae"));
  io::bind(*m.vae, io::Checkpoint::open(dir + "/vae"));
  m.unet->eval();
  m.vae->eval();
  m.scheduler = schedulers::SchedulerConfig::from_json(io::read_json_file(dir + "/scheduler/scheduler_config.json"), "sched");
  clip::ClipTextModel enc(clip::TextConfig::load(dir + "/text_encoder/config.json"));
  io::BindOptions o;
  o.allow_missing = [](const std::string& k) { return k.find("position_ids") != std::string::npos; };
  io::bind(*enc, io::Checkpoint::open(dir + "/text_encoder"), o);
  enc->eval();
  auto tok = text::BpeTokenizer::from_vocab_merges(dir + "/tokenizer/vocab.json", dir + "/tokenizer/merges.txt",
                                                   text::BpeTokenizer::Flavor::Clip);
  const auto ids = sd::clip_tokens(tok, dir + "/tokenizer");
  std::vector<int64_t> empty{ids.bos, ids.eos};
  empty.resize(77, ids.pad);
  const auto z = enc->forward(torch::tensor(empty).unsqueeze(0));
  pipelines::DiffusionParams p;
  p.sampler = "euler_a";
  p.steps = 3;
  p.seed = 11;
  p.width = p.height = static_cast<int>(m.unet->cfg.sample_size * m.vae->cfg.scale_factor());
  const auto img = pipelines::tensor_to_image(pipelines::txt2img(m, z, z, p));
  EXPECT_EQ(out.images[0].pixels, img.pixels);
  // img2img and inpaint too
  auto r2 = sd_request("img2img", "");
  r2.images.push_back(gray_image(64, 64));
  EXPECT_EQ(run(*model, r2).images.size(), 1u);
  auto r3 = sd_request("inpaint", "");
  r3.images.push_back(gray_image(64, 64));
  Image mask;
  mask.width = mask.height = 64;
  mask.channels = 1;
  mask.pixels.assign(64 * 64, 0);
  for (int y = 16; y < 40; ++y)
    for (int x = 16; x < 40; ++x) mask.pixels[y * 64 + x] = 255;
  r3.mask = mask;
  EXPECT_EQ(run(*model, r3).images.size(), 1u);
}

// ------------------------------------------------------------------------------ single-file tokenizer

TEST(SdTokenizerLookup, MissingTokenizerIsReportedBeforeAnyWeightIsRead) {
  TempDir t("tok-missing");
  EnvGuard env;
  isolate_lookup(env, t);
  // The single file's tensors cannot be read at all (F8_E4M3, which no loader here converts), but its
  // header is valid: whatever error comes before the tensors are read is all a user sees.
  const std::string dir = t / "models";
  fs::create_directories(dir);
  const std::string file = lonely_single_file("tiny-sd15", dir);
  {
    io::SafetensorsFile f(file);
    nlohmann::json header = nlohmann::json::object();
    uint64_t offset = 0;
    for (const auto& n : f.names()) {
      const auto& info = f.info(n);
      uint64_t numel = 1;
      for (int64_t d : info.shape) numel *= static_cast<uint64_t>(d);
      header[n] = {{"dtype", "F8_E4M3"}, {"shape", info.shape}, {"data_offsets", {offset, offset + numel}}};
      offset += numel;
    }
    std::string h = header.dump();
    while (h.size() % 8) h.push_back(' ');
    const uint64_t n = h.size();
    std::ofstream out(file + ".tmp", std::ios::binary);
    out.write(reinterpret_cast<const char*>(&n), 8);
    out.write(h.data(), static_cast<std::streamsize>(h.size()));
    const std::string zeros(offset, '\0');
    out.write(zeros.data(), static_cast<std::streamsize>(zeros.size()));
  }
  fs::rename(file + ".tmp", file);
  ASSERT_EQ(sd::detect_single_file(file), "sd15");
  Status st = Status::Ok;
  const std::string e = error_of([&] { sd::family().load(file, ModelOptions{}); }, &st);
  EXPECT_EQ(st, Status::NotFound);
  EXPECT_NE(e.find("no CLIP tokenizer (vocab.json + merges.txt) was found"), std::string::npos) << e;
  EXPECT_NE(e.find(t / "data/loupe/tokenizers/clip"), std::string::npos) << e;  // where to put the files
  EXPECT_NE(e.find("huggingface-cli download openai/clip-vit-large-patch14 vocab.json merges.txt"), std::string::npos) << e;
  EXPECT_EQ(e.find("F8_E4M3"), std::string::npos) << e;
  // with the vocabulary in Loupe's folder, loading goes on and only then meets the tensors
  copy_tokenizer(t / "data/loupe/tokenizers/clip");
  EXPECT_EQ(clip::find_clip_vocab({}, {}), t / "data/loupe/tokenizers/clip");
  const std::string e2 = error_of([&] { sd::family().load(file, ModelOptions{}); }, &st);
  EXPECT_EQ(st, Status::Unsupported);
  EXPECT_NE(e2.find("F8_E4M3"), std::string::npos) << e2;
}

TEST(SdTokenizerLookup, FoundInTheHuggingFaceCache) {
  TempDir t("tok-hf");
  EnvGuard env;
  isolate_lookup(env, t);
  const std::string hub = t / "hub";
  // the layout huggingface_hub writes: blobs named by hash, snapshots/REV/... symlinks into them
  auto cache_repo = [&](const std::string& repo, const std::string& rev, const std::string& sub, bool with_blobs) {
    std::string name = "models--" + repo;
    name.replace(name.find('/'), 1, "--");
    const fs::path r = fs::path(hub) / name;
    fs::create_directories(r / "blobs");
    fs::create_directories(r / "refs");
    std::ofstream(r / "refs" / "main") << rev;
    const fs::path snap = r / "snapshots" / rev / sub;
    fs::create_directories(snap);
    int i = 0;
    for (const char* f : {"vocab.json", "merges.txt"}) {
      const std::string blob = rev + "blob" + std::to_string(i++);
      if (with_blobs) fs::copy_file(kSd + "/tiny-sd15/tokenizer/" + f, r / "blobs" / blob);
      fs::create_symlink(fs::relative(r / "blobs" / blob, snap), snap / f);
    }
    return (r / "snapshots" / rev).string();
  };
  // an interrupted download (links to missing blobs) is passed over
  cache_repo("openai/clip-vit-large-patch14", "aaaa", "", false);
  const std::string snap = cache_repo("stable-diffusion-v1-5/stable-diffusion-v1-5", "bbbb", "tokenizer", true);
  std::ofstream(snap + "/model_index.json") << "{}";
  EXPECT_EQ(io::hf_cached_snapshots("stable-diffusion-v1-5/stable-diffusion-v1-5", hub), std::vector<std::string>{snap});
  EXPECT_EQ(clip::find_clip_vocab({}, {}), snap + "/tokenizer");
  // a single file with nothing beside it opens, and gives what it gives with its own tokenizer
  const std::string dir = t / "models";
  fs::create_directories(dir);
  const std::string file = lonely_single_file("tiny-sd15", dir);
  auto a = sd::family().load(kSd + "/single/tiny-sd15.safetensors", ModelOptions{});
  auto b = sd::family().load(file, ModelOptions{});
  const auto r = sd_request("txt2img", "a red car");
  EXPECT_EQ(run(*a, r).images.at(0).pixels, run(*b, r).images.at(0).pixels);
  // HF_HOME/hub when HF_HUB_CACHE is not set; the generic scan finds any cached diffusers pipeline
  env.set("HF_HUB_CACHE", std::nullopt);
  env.set("HF_HOME", t / "hfhome");
  EXPECT_EQ(io::hf_hub_cache_dir(), t / "hfhome/hub");
  fs::create_directories(t / "hfhome");
  fs::rename(hub, t / "hfhome/hub");
  fs::rename(t / "hfhome/hub/models--stable-diffusion-v1-5--stable-diffusion-v1-5", t / "hfhome/hub/models--someone--my-sd-model");
  EXPECT_EQ(clip::find_clip_vocab({}, {}), t / "hfhome/hub/models--someone--my-sd-model/snapshots/bbbb/tokenizer");
}

TEST(SdTokenizerLookup, FoundInTheModelsFolderAndPaddedAsTheFamilyPads) {
  TempDir t("tok-models");
  EnvGuard env;
  isolate_lookup(env, t);
  // the file in the web UI's checkpoint folder, a diffusers folder in the models folder
  const std::string ckpts = t / "webui/models/Stable-diffusion";
  fs::create_directories(ckpts);
  const std::string file = lonely_single_file("tiny-sd15", ckpts);
  copy_tokenizer(t / "models/some-sd/tokenizer");
  std::ofstream(t / "models/some-sd/model_index.json") << "{}";
  EXPECT_NE(error_of([&] { sd::read_single_file(file, torch::kCPU, torch::kFloat32); }).find("no CLIP tokenizer"), std::string::npos);
  ModelOptions mo;
  mo.models_dir = t / "models";
  auto b = sd::family().load(file, mo);
  auto a = sd::family().load(kSd + "/single/tiny-sd15.safetensors", ModelOptions{});
  const auto r = sd_request("txt2img", "a red car");
  EXPECT_EQ(run(*a, r).images.at(0).pixels, run(*b, r).images.at(0).pixels);
  // a vocabulary found elsewhere pads as the checkpoint's family does: SD 1.x with <|endoftext|>,
  // SD 2.x (OpenCLIP) with "!"
  const auto s15 = sd::read_single_file(file, torch::kCPU, torch::kFloat32, mo.models_dir);
  EXPECT_EQ(s15.ids.pad, s15.ids.eos);
  const auto s2 = sd::read_single_file(lonely_single_file("tiny-sd2", ckpts), torch::kCPU, torch::kFloat32, mo.models_dir);
  EXPECT_EQ(s2.ids.pad, s2.tokenizer.token_to_id("!"));
  EXPECT_NE(s2.ids.pad, s2.ids.eos);
}

// ------------------------------------------------------------------------------ external VAE

namespace {

// The tiny VAE's tensors written as the web UIs keep VAE files: LDM names (the single-file table,
// without "first_stage_model."), attention weights as 1x1 convolutions. `scale` changes the
// decoder so that another VAE is told apart.
void write_ldm_vae(const std::string& file, double scale) {
  const std::string dir = kSd + "/tiny-sd15/vae";
  const auto cfg = sd::VaeConfig::from_json(io::read_json_file(dir + "/config.json"), dir);
  const auto km = sd::vae_single_file_keymap(cfg);
  sd::AutoencoderKL vae(cfg);
  auto ck = io::Checkpoint::open(dir);
  std::vector<std::pair<std::string, torch::Tensor>> t;
  for (const auto& p : vae->named_parameters()) {
    std::string key = km.map(p.key());
    EXPECT_EQ(key.rfind("first_stage_model.", 0), 0u) << p.key();
    key = key.substr(18);
    auto v = ck.load(p.key());
    if (p.key().rfind("decoder.", 0) == 0) v = v * scale;
    if (km.has_transform(p.key()) && v.dim() == 2) v = v.unsqueeze(-1).unsqueeze(-1);
    t.push_back({key, v});
  }
  fs::create_directories(fs::path(file).parent_path());
  io::save_safetensors(file, t);
}

}  // namespace

TEST(SdExternalVae, LdmFileAndDiffusersFolderGiveTheSameImages) {
  TempDir t("vae");
  const std::string ldm = t / "models/VAE/other-vae.safetensors";
  write_ldm_vae(ldm, 1.1);
  // the same VAE as a diffusers vae/ folder, and a whole diffusers model that has it
  const std::string folder = t / "other/vae";
  copy_dir(kSd + "/tiny-sd15/vae", folder);
  rewrite(kSd + "/tiny-sd15/vae/diffusion_pytorch_model.safetensors", folder + "/diffusion_pytorch_model.safetensors",
          [](const std::string& n) { return n; },
          [](const std::string& n, torch::Tensor v) { return n.rfind("decoder.", 0) == 0 ? v * 1.1 : v; });
  const std::string whole = t / "tiny-sd15-other-vae";
  copy_dir(kSd + "/tiny-sd15", whole);
  fs::remove_all(whole + "/vae");
  copy_dir(folder, whole + "/vae");

  auto m = sd::family().load(kSd + "/single/tiny-sd15.safetensors", ModelOptions{});
  auto ref = sd::family().load(whole, ModelOptions{});
  for (const std::string task : {"txt2img", "img2img"}) {
    SCOPED_TRACE(task);
    auto r = sd_request(task, "a red car");
    if (task == "img2img") r.images.push_back(gray_image(64, 64));
    const auto own = run(*m, r).images.at(0).pixels;
    const auto want = run(*ref, r).images.at(0).pixels;
    ASSERT_NE(own, want);  // the other VAE makes another image
    m->set_vae(ldm);
    const auto res = run(*m, r);
    EXPECT_EQ(res.images.at(0).pixels, want);
    EXPECT_EQ(res.strings.at("vae"), "other-vae.safetensors");
    m->set_vae(folder);
    EXPECT_EQ(run(*m, r).images.at(0).pixels, want);
    m->set_vae("");  // the checkpoint's own again, bit for bit
    EXPECT_EQ(run(*m, r).images.at(0).pixels, own);
    EXPECT_EQ(run(*m, r).strings.count("vae"), 0u);
  }
}

TEST(SdExternalVae, BadFilesAreExplainedAndTheSessionKeepsItsVae) {
  TempDir t("vae-bad");
  auto m = sd::family().load(kSd + "/tiny-sd15", ModelOptions{});
  const auto r = sd_request("txt2img", "a red car");
  const auto before = run(*m, r).images.at(0).pixels;
  Status st = Status::Ok;
  std::string e = error_of([&] { m->set_vae(t / "missing.safetensors"); }, &st);
  EXPECT_EQ(st, Status::NotFound);
  EXPECT_NE(e.find("missing.safetensors"), std::string::npos) << e;
  e = error_of([&] { m->set_vae(kSd + "/lora/tiny-sd15-lora.safetensors"); }, &st);
  EXPECT_EQ(st, Status::BadModel);
  EXPECT_NE(e.find("not a VAE"), std::string::npos) << e;
  // a VAE of another size: the tensor and both shapes, before anything is read
  const std::string wrong = t / "wrong.safetensors";
  write_ldm_vae(wrong, 1.0);
  rewrite(wrong, t / "wrong2.safetensors", [](const std::string& n) { return n; },
          [](const std::string& n, torch::Tensor v) { return n == "decoder.conv_out.weight" ? v.narrow(1, 0, 4) : v; });
  e = error_of([&] { m->set_vae(t / "wrong2.safetensors"); }, &st);
  EXPECT_EQ(st, Status::BadModel);
  EXPECT_NE(e.find("wrong2.safetensors"), std::string::npos) << e;
  EXPECT_NE(e.find("'decoder.conv_out.weight' model [3, 8, 3, 3] vs file [3, 4, 3, 3]"), std::string::npos) << e;
  EXPECT_EQ(run(*m, r).images.at(0).pixels, before);
  // families without a VAE say so
  auto fl = florence2::family().load(kFlorence, ModelOptions{});
  EXPECT_NE(error_of([&] { fl->set_vae(wrong); }, &st).find("does not take an external VAE"), std::string::npos);
  EXPECT_EQ(st, Status::Unsupported);
}
