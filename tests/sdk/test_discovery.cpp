// Discovery (headers only) on fake Hugging Face cache / A1111 / ComfyUI trees built from the tiny
// fixtures, LoRA base detection from tensor names and shapes, the catalog, SHA-256, and the hub's
// environment (endpoint, token, offline switch, cache folder).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "core/catalog.h"
#include "core/discovery.h"
#include "core/hub.h"
#include "core/model.h"
#include "io/safetensors.h"
#include "io/sha256.h"

#include "../support/scoped_env.h"

namespace fs = std::filesystem;
using namespace loupe;
using nlohmann::json;

namespace {

const std::string kFix = LOUPE_FIXTURES_DIR;

fs::path temp_dir(const std::string& name) {
  auto d = fs::temp_directory_path() / ("loupe-test-" + name + "-" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}


void copy_into(const fs::path& from, const fs::path& to) {
  fs::create_directories(to.parent_path());
  fs::copy(from, to, fs::copy_options::recursive);
}

void write_text(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << text;
}

// A safetensors file with the given names and shapes (zeros).
void write_tensors(const fs::path& p, const std::vector<std::pair<std::string, std::vector<int64_t>>>& spec,
                   torch::ScalarType dtype = torch::kFloat32) {
  fs::create_directories(p.parent_path());
  std::vector<std::pair<std::string, torch::Tensor>> ts;
  for (const auto& [n, shape] : spec) ts.push_back({n, torch::zeros(shape, torch::TensorOptions().dtype(dtype))});
  io::save_safetensors(p.string(), ts);
}

// kohya LoRA tensors for one module: lora_down [r, in], lora_up [out, r], alpha.
void kohya(std::vector<std::pair<std::string, std::vector<int64_t>>>& spec, const std::string& module, int64_t in,
           int64_t out) {
  spec.push_back({module + ".lora_down.weight", {1, in}});
  spec.push_back({module + ".lora_up.weight", {out, 1}});
  spec.push_back({module + ".alpha", {}});
}

const json* by_path(const json& scan, const fs::path& p) {
  for (const auto& m : scan["models"])
    if (fs::path(m["path"].get<std::string>()) == p) return &m;
  return nullptr;
}

const json* by_name(const json& scan, const std::string& name) {
  for (const auto& m : scan["models"])
    if (m["name"] == name) return &m;
  return nullptr;
}

bool has_problem(const json& m, const std::string& severity, const std::string& text) {
  for (const auto& p : m["problems"])
    if (p["severity"] == severity && p["message"].get<std::string>().find(text) != std::string::npos) return true;
  return false;
}

int errors(const json& m) {
  int n = 0;
  for (const auto& p : m["problems"]) n += p["severity"] == "error";
  return n;
}

// models--ORG--NAME/{blobs/<sha>, refs/main, snapshots/<rev>/<file> -> ../../blobs/<sha>} from a folder.
fs::path make_hf_repo(const fs::path& hub, const std::string& repo, const fs::path& from, const std::string& rev) {
  std::string dir = "models--" + repo;
  dir.replace(dir.find('/'), 1, "--");
  const fs::path r = hub / dir;
  fs::create_directories(r / "blobs");
  write_text(r / "refs" / "main", rev);
  const fs::path snap = r / "snapshots" / rev;
  for (const auto& e : fs::recursive_directory_iterator(from)) {
    if (!e.is_regular_file()) continue;
    const fs::path rel = fs::relative(e.path(), from);
    const std::string sha = io::sha256_file(e.path().string());
    fs::copy_file(e.path(), r / "blobs" / sha, fs::copy_options::overwrite_existing);
    fs::create_directories((snap / rel).parent_path());
    fs::path up;
    for (auto it = rel.begin(); it != rel.end(); ++it) up /= "..";
    fs::create_symlink(up / ".." / "blobs" / sha, snap / rel);  // snapshots/<rev>/<rel> -> ../../blobs/<sha>
  }
  return snap;
}

}  // namespace

TEST(Sha256, KnownVectorsAndStreaming) {
  io::Sha256 h;
  EXPECT_EQ(h.hex(), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  h.reset();
  h.update("abc", 3);
  EXPECT_EQ(h.hex(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  const std::string two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  h.reset();
  for (char c : two) h.update(&c, 1);  // byte by byte across block boundaries
  EXPECT_EQ(h.hex(), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  const std::string million(1000000, 'a');
  h.reset();
  h.update(million.data(), 1000);
  h.update(million.data() + 1000, million.size() - 1000);
  EXPECT_EQ(h.hex(), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Catalog, BuiltinHasTheResourcesFileWithDownloadLists) {
  const Catalog& c = Catalog::builtin();
  const Catalog file = Catalog::load(std::string(LOUPE_RESOURCES_DIR) + "/models/catalog.json");
  ASSERT_EQ(c.variants().size(), file.variants().size());
  const auto* f = c.find("florence2-base");
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->repo, "microsoft/Florence-2-base");
  EXPECT_EQ(f->revision, "main");
  EXPECT_FALSE(f->download.empty());
  EXPECT_FALSE(c.family_tasks("florence2").empty());
  EXPECT_EQ(c.match_repo("MICROSOFT/florence-2-BASE"), f);
  EXPECT_EQ(c.match_folder("Florence-2-base"), f);
  EXPECT_EQ(c.match_folder("stable-diffusion-v1-5")->id, "sd15");
  EXPECT_EQ(c.match_repo("someone/else"), nullptr);
  // Every catalog family is a family of the library, with the same tasks (the catalog's list serves
  // only scans of libraries built without that family).
  const auto families = model_families();
  for (const auto& v : c.variants()) {
    const ModelFamily* fam = nullptr;
    for (const auto& f2 : families)
      if (f2.name == v.family) fam = &f2;
    ASSERT_NE(fam, nullptr) << v.id << ": family '" << v.family << "' is not a model family of the library";
    auto listed = c.family_tasks(v.family), offered = fam->tasks;
    std::sort(listed.begin(), listed.end());
    std::sort(offered.begin(), offered.end());
    EXPECT_EQ(listed, offered) << v.family;
  }
}

TEST(Catalog, BadEntriesNameTheKey) {
  const std::string bad = R"({"families": [{"id": "f", "variants": [{"id": "v", "repo": "a/b", "sha256": {"x": "zz"}}]}]})";
  try {
    Catalog::parse(bad, "test.json");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), Status::BadModel);
    EXPECT_NE(std::string(e.what()).find("sha256 of 'x'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("test.json"), std::string::npos) << e.what();
  }
  EXPECT_THROW(Catalog::parse("{", "x"), Error);
  EXPECT_THROW(Catalog::parse(R"({"families": [{"id": "f", "variants": [{"id": "v"}]}]})", "x"), Error);  // no repo
}

TEST(Hub, EnvironmentAsHuggingFaceHubReadsIt) {
  const fs::path d = temp_dir("hub-env");
  {
    Env b("HF_HOME", (d / "home").c_str()), c("HF_TOKEN", nullptr), e("HF_TOKEN_PATH", nullptr);
    EXPECT_EQ(hub::token(), "");
    write_text(d / "home" / "token", "  hf_fromfile\n");
    EXPECT_EQ(hub::token(), "hf_fromfile");
    write_text(d / "elsewhere", "hf_frompath\n");
    {
      Env f("HF_TOKEN_PATH", (d / "elsewhere").c_str());
      EXPECT_EQ(hub::token(), "hf_frompath");
      Env g("HF_TOKEN", "hf_fromenv");
      EXPECT_EQ(hub::token(), "hf_fromenv");
    }
  }
  {
    Env b("HF_HOME", nullptr), x("XDG_CACHE_HOME", nullptr), h("HOME", d.c_str()), c("HF_TOKEN", nullptr), e("HF_TOKEN_PATH", nullptr);
    write_text(d / ".cache" / "huggingface" / "token", "hf_default\n");
    EXPECT_EQ(hub::token(), "hf_default");  // ~/.cache/huggingface/token
  }
  {
    Env a("HF_ENDPOINT", "http://mirror.example:8080//");
    EXPECT_EQ(hub::endpoint(), "http://mirror.example:8080");
    Env b("HF_ENDPOINT", nullptr);
    EXPECT_EQ(hub::endpoint(), "https://huggingface.co");
  }
  {
    Env a("HF_HUB_OFFLINE", nullptr), b("LOUPE_OFFLINE", nullptr);
    EXPECT_FALSE(hub::offline());
    for (const char* v : {"1", "true", "YES", "on"}) {
      Env c("LOUPE_OFFLINE", v);
      std::string which;
      EXPECT_TRUE(hub::offline(&which)) << v;
      EXPECT_EQ(which, "LOUPE_OFFLINE");
    }
    Env d2("HF_HUB_OFFLINE", "0");
    EXPECT_FALSE(hub::offline());
  }
  EXPECT_EQ(hub::file_url("https://h.co", "org/name", "refs/pr/1", "unet/my file.json"),
            "https://h.co/org/name/resolve/refs%2Fpr%2F1/unet/my%20file.json");
  fs::remove_all(d);
}

TEST(Discovery, HuggingFaceCacheSnapshotsWithLinksIntoBlobs) {
  const fs::path d = temp_dir("scan-hf");
  const fs::path hub = d / "hf" / "hub";
  Env a("HF_HUB_CACHE", hub.c_str()), h("HOME", (d / "home").c_str());
  const fs::path snap = make_hf_repo(hub, "microsoft/Florence-2-base", kFix + "/florence2/tiny", "abc123");
  // A diffusers repo: the catalog's sd15 (tiny weights), with one blob gone and a download left unfinished.
  const fs::path sd = make_hf_repo(hub, "stable-diffusion-v1-5/stable-diffusion-v1-5", kFix + "/sd/tiny-sd15", "def456");
  const fs::path gone = fs::read_symlink(sd / "vae" / "config.json");
  fs::remove(sd / "vae" / gone);
  write_text(hub / "models--stable-diffusion-v1-5--stable-diffusion-v1-5" / "blobs" / "0123.incomplete", "x");
  // Not a model: a dataset, and a repo with nothing downloaded yet.
  fs::create_directories(hub / "datasets--org--data" / "snapshots" / "1");
  fs::create_directories(hub / "models--org--empty" / "blobs");

  ScanOptions o;
  const json scan = scan_models(o);
  ASSERT_EQ(scan["roots"][0]["source"], "hf-cache");
  EXPECT_TRUE(scan["roots"][0]["exists"].get<bool>());

  const json* fl = by_path(scan, snap);
  ASSERT_NE(fl, nullptr) << scan.dump(1);
  EXPECT_EQ((*fl)["source"], "hf-cache");
  EXPECT_EQ((*fl)["repo"], "microsoft/Florence-2-base");
  EXPECT_EQ((*fl)["name"], "microsoft/Florence-2-base");
  EXPECT_EQ((*fl)["revision"], "abc123");
  EXPECT_EQ((*fl)["family"], "florence2");
  EXPECT_EQ((*fl)["kind"], "model");
  EXPECT_EQ((*fl)["catalog_id"], "florence2-base");
  EXPECT_EQ((*fl)["precision"], "fp32");
  EXPECT_TRUE((*fl)["supported"].get<bool>());
  EXPECT_EQ(errors(*fl), 0) << fl->dump(1);
  EXPECT_FALSE((*fl)["tasks"].empty());
  uint64_t bytes = 0;
  for (const auto& e : fs::directory_iterator(kFix + "/florence2/tiny")) bytes += e.file_size();
  EXPECT_EQ((*fl)["bytes"].get<uint64_t>(), bytes);

  const json* s = by_path(scan, sd);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ((*s)["family"], "stable-diffusion");
  EXPECT_EQ((*s)["catalog_id"], "sd15");
  EXPECT_TRUE(has_problem(*s, "error", "vae/config.json links to a blob that is not there")) << s->dump(1);
  EXPECT_TRUE(has_problem(*s, "warning", "interrupted download")) << s->dump(1);

  const json* empty = by_name(scan, "models--org--empty");
  ASSERT_NE(empty, nullptr);
  EXPECT_EQ((*empty)["kind"], "partial");
  for (const auto& m : scan["models"]) EXPECT_EQ(m["path"].get<std::string>().find("datasets--"), std::string::npos);

  bool listed = false;
  for (const auto& c : scan["catalog"])
    if (c["id"] == "florence2-base") listed = c["found"].size() == 1 && c["found"][0] == snap.string();
  EXPECT_TRUE(listed) << scan["catalog"].dump(1);
  // Catalog entries carry what a host lists (memory, license, tasks) and their state: a whole copy
  // in the cache is installed there; the damaged sd15 copy is not; a models-folder copy missing files
  // is incomplete and says which.
  auto entry = [](const json& sc, const std::string& id) {
    for (const auto& c : sc["catalog"])
      if (c["id"] == id) return c;
    return json();
  };
  const json fb = entry(scan, "florence2-base");
  EXPECT_EQ(fb["state"], "installed") << fb.dump(1);
  EXPECT_EQ(fb["path"], snap.string());
  EXPECT_EQ(fb["family_name"], "Florence-2");
  EXPECT_EQ(fb["license"], "MIT");
  EXPECT_GT(fb["vram_bytes"]["fp32"].get<uint64_t>(), fb["vram_bytes"]["fp16"].get<uint64_t>());
  EXPECT_FALSE(fb["tasks"].empty());
  EXPECT_EQ(entry(scan, "sd15")["state"], "missing") << entry(scan, "sd15").dump(1);
  {
    const fs::path models = d / "models";
    fs::create_directories(models / "Florence-2-large");
    write_text(models / "Florence-2-large" / "config.json", "{}");
    ScanOptions mo;
    mo.models_dir = models.string();
    const json fl2 = entry(scan_models(mo), "florence2-large");
    EXPECT_EQ(fl2["state"], "incomplete") << fl2.dump(1);
    EXPECT_EQ(fl2["path"], (models / "Florence-2-large").string());
    EXPECT_NE(fl2["missing_files"].dump().find("preprocessor_config.json"), std::string::npos) << fl2.dump(1);
    EXPECT_EQ(entry(scan_models(mo), "sd15")["path"], (models / "stable-diffusion-v1-5").string());
  }

  // HF_HOME/hub when HF_HUB_CACHE is unset.
  Env b("HF_HUB_CACHE", nullptr), b2("HUGGINGFACE_HUB_CACHE", nullptr), c("HF_HOME", (d / "hf").c_str());
  EXPECT_NE(by_path(scan_models(o), snap), nullptr);
  fs::remove_all(d);
}

TEST(Discovery, A1111FolderCheckpointsLorasForEachBaseAndVae) {
  const fs::path d = temp_dir("scan-a1111");
  const fs::path models = d / "stable-diffusion-webui" / "models";
  copy_into(kFix + "/sd/single/tiny-sd15.safetensors", models / "Stable-diffusion" / "tiny-sd15.safetensors");
  copy_into(kFix + "/sd/lora/tiny-sd15-lora.safetensors", models / "Lora" / "tiny.safetensors");
  copy_into(kFix + "/sd/lora/other-model-lora.safetensors", models / "Lora" / "sub" / "other.safetensors");
  copy_into(kFix + "/sd/tiny-sd15/vae/diffusion_pytorch_model.safetensors", models / "VAE" / "vae-ft.safetensors");
  std::vector<std::pair<std::string, std::vector<int64_t>>> sd15, sd2, xl;
  kohya(sd15, "lora_te_text_model_encoder_layers_0_self_attn_q_proj", 768, 768);
  kohya(sd15, "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k", 768, 320);
  kohya(sd2, "lora_te_text_model_encoder_layers_0_self_attn_q_proj", 1024, 1024);
  kohya(sd2, "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k", 1024, 320);
  kohya(xl, "lora_te1_text_model_encoder_layers_0_self_attn_q_proj", 768, 768);
  kohya(xl, "lora_te2_text_model_encoder_layers_0_self_attn_q_proj", 1280, 1280);
  kohya(xl, "lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k", 2048, 640);
  write_tensors(models / "Lora" / "sd15-style.safetensors", sd15, torch::kFloat16);
  write_tensors(models / "Lora" / "sd2-style.safetensors", sd2);
  write_tensors(models / "Lora" / "xl-style.safetensors", xl);
  write_text(models / "Lora" / "notes.txt", "not a model");
  write_text(models / "Stable-diffusion" / "half.safetensors.part", "partial");
  write_text(models / "Stable-diffusion" / "broken.safetensors", "12345");
  write_text(d / "stable-diffusion-webui" / "venv" / "lib" / "x.safetensors", "never looked at");

  ScanOptions o;
  o.default_locations = false;
  o.dirs = {(d / "stable-diffusion-webui").string()};
  const json scan = scan_models(o);
  ASSERT_EQ(scan["roots"].size(), 1u);
  EXPECT_EQ(scan["roots"][0]["source"], "a1111");

  const json* ck = by_name(scan, "tiny-sd15.safetensors");
  ASSERT_NE(ck, nullptr) << scan.dump(1);
  EXPECT_EQ((*ck)["kind"], "model");
  EXPECT_EQ((*ck)["family"], "stable-diffusion");
  EXPECT_EQ((*ck)["variant"], "sd15");
  EXPECT_EQ((*ck)["base"], "sd15");
  EXPECT_EQ((*ck)["source"], "a1111");
  EXPECT_EQ((*ck)["format"], "safetensors");
  EXPECT_EQ((*ck)["precision"], "fp32");
  EXPECT_EQ((*ck)["bytes"].get<uint64_t>(), fs::file_size(kFix + "/sd/single/tiny-sd15.safetensors"));
  EXPECT_FALSE((*ck)["tasks"].empty());

  const json* l15 = by_name(scan, "sd15-style.safetensors");
  ASSERT_NE(l15, nullptr);
  EXPECT_EQ((*l15)["kind"], "lora");
  EXPECT_EQ((*l15)["base"], "sd15");
  EXPECT_EQ((*l15)["precision"], "fp16");
  EXPECT_TRUE((*l15)["supported"].get<bool>());
  EXPECT_TRUE((*l15)["problems"].empty()) << l15->dump(1);
  EXPECT_EQ((*by_name(scan, "sd2-style.safetensors"))["base"], "sd2");
  const json* lxl = by_name(scan, "xl-style.safetensors");
  EXPECT_EQ((*lxl)["base"], "sdxl");  // from its lora_te1_/lora_te2_ names; SDXL sessions apply it
  EXPECT_EQ((*lxl)["family"], "sdxl");
  EXPECT_TRUE((*lxl)["supported"].get<bool>());
  EXPECT_TRUE((*lxl)["problems"].empty()) << lxl->dump(1);
  // The tiny fixtures' widths (32) tell nothing: the names do.
  EXPECT_EQ((*by_name(scan, "tiny.safetensors"))["base"], "sd");
  EXPECT_EQ((*by_name(scan, "other.safetensors"))["base"], "sdxl");

  const json* vae = by_name(scan, "vae-ft.safetensors");
  ASSERT_NE(vae, nullptr);
  EXPECT_EQ((*vae)["kind"], "vae");
  EXPECT_TRUE((*vae)["supported"].get<bool>());

  const json* part = by_name(scan, "half.safetensors.part");
  ASSERT_NE(part, nullptr);
  EXPECT_EQ((*part)["kind"], "partial");
  EXPECT_TRUE(has_problem(*part, "warning", "unfinished download"));
  const json* broken = by_name(scan, "broken.safetensors");
  ASSERT_NE(broken, nullptr);
  EXPECT_TRUE(has_problem(*broken, "error", "too short")) << broken->dump(1);
  EXPECT_EQ(by_name(scan, "notes.txt"), nullptr);
  EXPECT_EQ(by_name(scan, "x.safetensors"), nullptr);  // the web UI's own venv is not searched

  // Pointing at the models folder itself, or at Lora/, finds the same files.
  o.dirs = {models.string(), (models / "Lora").string()};
  const json again = scan_models(o);
  EXPECT_EQ(again["roots"][0]["source"], "a1111");
  EXPECT_EQ(again["models"].size(), scan["models"].size());  // the second root adds nothing twice
  fs::remove_all(d);
}

TEST(Discovery, ComfyUIFoldersTextEncodersUnetsAndDiffusersFolders) {
  const fs::path d = temp_dir("scan-comfy");
  const fs::path models = d / "ComfyUI" / "models";
  copy_into(kFix + "/sd/single/tiny-sd2.safetensors", models / "checkpoints" / "tiny-sd2.safetensors");
  copy_into(kFix + "/sd/tiny-sd15", models / "diffusers" / "stable-diffusion-v1-5");
  copy_into(kFix + "/sd/tiny-sd15", models / "diffusers" / "no-vae");
  fs::remove_all(models / "diffusers" / "no-vae" / "vae");
  write_tensors(models / "text_encoders" / "clip_l.safetensors",
                {{"text_model.encoder.layers.0.self_attn.q_proj.weight", {768, 768}}}, torch::kFloat16);
  write_tensors(models / "clip" / "clip_g.safetensors",
                {{"text_model.encoder.layers.0.self_attn.q_proj.weight", {1280, 1280}}}, torch::kBFloat16);
  write_tensors(models / "diffusion_models" / "flux1-dev.safetensors", {{"double_blocks.0.img_attn.qkv.weight", {9, 3}}});
  write_tensors(models / "unet" / "sd15-unet.safetensors",
                {{"input_blocks.0.0.weight", {320, 4, 3, 3}}, {"input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight", {320, 768}}});
  write_tensors(models / "loras" / "flux-lora.safetensors",
                {{"lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight", {1, 3072}}, {"lora_unet_double_blocks_0_img_attn_qkv.lora_up.weight", {9216, 1}}});
  // A real (tiny) FLUX.1 dev in ComfyUI's split layout: the diffusion model (with its sidecar
  // folder of configs and tokenizers), T5 and CLIP-L in text_encoders/, the VAE in vae/.
  const std::string split = kFix + "/flux/pipeline/split";
  copy_into(split + "/diffusion_models/tiny-flux-dev.safetensors", models / "diffusion_models" / "tiny-flux-dev.safetensors");
  copy_into(split + "/diffusion_models/tiny-flux-dev", models / "diffusion_models" / "tiny-flux-dev");
  copy_into(split + "/text_encoders/t5xxl_tiny.safetensors", models / "text_encoders" / "t5xxl_tiny.safetensors");
  copy_into(split + "/text_encoders/clip_l_tiny.safetensors", models / "text_encoders" / "clip_l_tiny.safetensors");
  copy_into(split + "/vae/ae.safetensors", models / "vae" / "ae.safetensors");
  write_tensors(models / "checkpoints" / "sdxl-base.safetensors",
                {{"model.diffusion_model.input_blocks.0.0.weight", {1, 4, 3, 3}}, {"conditioner.embedders.0.transformer.x", {1}}});

  ScanOptions o;
  o.default_locations = false;
  o.dirs = {(d / "ComfyUI").string()};
  const json scan = scan_models(o);
  EXPECT_EQ(scan["roots"][0]["source"], "comfyui");

  const json* ck = by_name(scan, "tiny-sd2.safetensors");
  ASSERT_NE(ck, nullptr) << scan.dump(1);
  EXPECT_EQ((*ck)["variant"], "sd2");
  EXPECT_EQ((*ck)["base"], "sd2");
  EXPECT_EQ((*ck)["source"], "comfyui");

  const json* diff = by_path(scan, models / "diffusers" / "stable-diffusion-v1-5");
  ASSERT_NE(diff, nullptr);
  EXPECT_EQ((*diff)["format"], "folder");
  EXPECT_EQ((*diff)["family"], "stable-diffusion");
  EXPECT_EQ((*diff)["catalog_id"], "sd15");
  EXPECT_EQ(errors(*diff), 0) << diff->dump(1);
  const json* novae = by_path(scan, models / "diffusers" / "no-vae");
  ASSERT_NE(novae, nullptr);
  EXPECT_TRUE(has_problem(*novae, "error", "'vae' is missing")) << novae->dump(1);
  EXPECT_FALSE(novae->contains("catalog_id"));

  const json* cl = by_name(scan, "clip_l.safetensors");
  EXPECT_EQ((*cl)["kind"], "text_encoder");
  EXPECT_EQ((*cl)["variant"], "clip-l");
  EXPECT_EQ((*cl)["precision"], "fp16");
  const json* cg = by_name(scan, "clip_g.safetensors");
  EXPECT_EQ((*cg)["variant"], "clip-g");
  EXPECT_EQ((*cg)["precision"], "bf16");

  const json* flux = by_name(scan, "flux1-dev.safetensors");
  EXPECT_EQ((*flux)["kind"], "unet");
  EXPECT_EQ((*flux)["base"], "flux");
  EXPECT_TRUE(has_problem(*flux, "warning", "FLUX"));
  const json* unet = by_name(scan, "sd15-unet.safetensors");
  EXPECT_EQ((*unet)["kind"], "unet");
  EXPECT_EQ((*unet)["base"], "sd15");
  const json* fl = by_name(scan, "flux-lora.safetensors");
  EXPECT_EQ((*fl)["base"], "flux");
  EXPECT_EQ((*fl)["family"], "flux");
  EXPECT_TRUE((*fl)["supported"].get<bool>());
  const json* tf = by_name(scan, "tiny-flux-dev.safetensors");
  ASSERT_NE(tf, nullptr) << scan.dump(1);
  EXPECT_EQ((*tf)["kind"], "model");
  EXPECT_EQ((*tf)["family"], "flux");
  EXPECT_EQ((*tf)["base"], "flux");
  EXPECT_TRUE((*tf)["supported"].get<bool>()) << tf->dump(1);
  EXPECT_EQ((*by_name(scan, "t5xxl_tiny.safetensors"))["family"], "t5");
  const json* ae = by_name(scan, "ae.safetensors");
  EXPECT_EQ((*ae)["kind"], "vae");
  EXPECT_EQ((*ae)["base"], "flux");
  const json* xl = by_name(scan, "sdxl-base.safetensors");
  EXPECT_EQ((*xl)["base"], "sdxl");  // SDXL by its names, but no SDXL a family can read
  EXPECT_FALSE((*xl)["supported"].get<bool>()) << xl->dump(1);
  EXPECT_TRUE(has_problem(*xl, "warning", "SDXL checkpoint that Loupe does not recognise")) << xl->dump(1);
  // An SD3 checkpoint: a family Loupe does not run.
  write_tensors(d / "sd3.safetensors", {{"model.diffusion_model.joint_blocks.0.x", {1}}});
  ScanOptions o3;
  o3.default_locations = false;
  o3.dirs = {d.string()};
  const json scan3 = scan_models(o3);
  const json* sd3 = by_name(scan3, "sd3.safetensors");
  ASSERT_NE(sd3, nullptr) << scan3.dump(1);
  EXPECT_EQ((*sd3)["base"], "sd3");
  EXPECT_FALSE((*sd3)["supported"].get<bool>());
  EXPECT_TRUE(has_problem(*sd3, "warning", "cannot run it yet"));
  fs::remove_all(d);
}

TEST(Discovery, ModelsDirAndMissingFoldersAreReported) {
  const fs::path d = temp_dir("scan-models-dir");
  copy_into(kFix + "/florence2/tiny", d / "models" / "Florence-2-large");
  fs::remove(d / "models" / "Florence-2-large" / "tokenizer.json");
  write_text(d / "models" / "Florence-2-large" / ".loupe-download", "{}");
  ScanOptions o;
  o.default_locations = false;
  o.models_dir = (d / "models").string();
  o.dirs = {(d / "does-not-exist").string()};
  const json scan = scan_models(o);
  ASSERT_EQ(scan["roots"].size(), 2u);
  EXPECT_EQ(scan["roots"][0]["source"], "models_dir");
  EXPECT_FALSE(scan["roots"][1]["exists"].get<bool>());
  const json* fl = by_path(scan, d / "models" / "Florence-2-large");
  ASSERT_NE(fl, nullptr);
  EXPECT_EQ((*fl)["catalog_id"], "florence2-large");
  EXPECT_TRUE(has_problem(*fl, "error", "no tokenizer")) << fl->dump(1);
  EXPECT_TRUE(has_problem(*fl, "warning", "did not finish")) << fl->dump(1);
  o.dirs = {""};
  EXPECT_THROW(scan_models(o), Error);
  fs::remove_all(d);
}
