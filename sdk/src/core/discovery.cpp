#include "core/discovery.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "core/error.h"
#include "core/model.h"
#include "core/runtime.h"
#include "io/config.h"
#include "io/hf_cache.h"
#include "io/safetensors.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace loupe {

namespace {

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool starts_with(const std::string& s, const std::string& p) { return s.rfind(p, 0) == 0; }
bool ends_with(const std::string& s, const std::string& p) {
  return s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0;
}
bool contains(const std::string& s, const std::string& p) { return s.find(p) != std::string::npos; }

void problem(json& entry, const std::string& severity, const std::string& message, const std::string& remedy) {
  entry["problems"].push_back({{"severity", severity}, {"message", message}, {"remedy", remedy}});
}

json new_entry(const fs::path& path, const std::string& kind) {
  return {{"path", path.string()}, {"name", path.filename().string()}, {"kind", kind}, {"family", ""},
          {"variant", ""}, {"base", ""}, {"tasks", json::array()}, {"format", ""}, {"bytes", 0},
          {"precision", ""}, {"dtypes", json::object()}, {"supported", false}, {"problems", json::array()}};
}

// What a web UI keeps in a folder of this name (A1111/Forge and ComfyUI names, lowercase).
std::string kind_of_folder(const std::string& name) {
  static const std::pair<const char*, const char*> kinds[] = {
      {"stable-diffusion", "model"}, {"checkpoints", "model"},   {"lora", "lora"},
      {"loras", "lora"},             {"lycoris", "lora"},        {"vae", "vae"},
      {"text_encoders", "text_encoder"}, {"clip", "text_encoder"}, {"unet", "unet"},
      {"diffusion_models", "unet"},  {"embeddings", "embedding"}};
  const std::string n = lower(name);
  for (const auto& [folder, kind] : kinds)
    if (n == folder) return kind;
  return "";
}

// Folders that never hold models but may hold many files (a web UI's own code and caches).
bool skipped_folder(const std::string& name) {
  static const std::set<std::string> skip{"venv", ".venv", "node_modules", "__pycache__", "repositories",
                                          "extensions", "custom_nodes", "outputs", "output", "input", "temp"};
  return name.empty() || name[0] == '.' || skip.count(lower(name)) != 0;
}

bool weight_extension(const std::string& ext) {
  static const std::set<std::string> exts{".safetensors", ".sft", ".ckpt", ".pt", ".pth", ".bin", ".gguf"};
  return exts.count(ext) != 0;
}

std::string precision_name(const std::string& dtype) {
  if (dtype == "F32") return "fp32";
  if (dtype == "F16") return "fp16";
  if (dtype == "BF16") return "bf16";
  if (dtype == "F64") return "fp64";
  if (starts_with(dtype, "F8")) return "fp8";
  return "";
}

// Adds a header's bytes per floating dtype to entry["dtypes"] and sets entry["precision"] to the
// dtype that holds most bytes.
void add_dtypes(json& entry, const io::SafetensorsFile& f) {
  std::map<std::string, uint64_t> bytes;  // few dtypes, many tensors: summed here, then into the JSON
  for (const auto& [name, ti] : f.tensors()) bytes[ti.dtype] += ti.end - ti.begin;
  for (const auto& [dtype, n] : bytes) {
    const std::string p = precision_name(dtype);
    if (p.empty()) continue;
    json& d = entry["dtypes"];
    d[p] = d.value(p, uint64_t(0)) + n;
  }
  uint64_t best = 0;
  for (auto it = entry["dtypes"].begin(); it != entry["dtypes"].end(); ++it)
    if (it->get<uint64_t>() > best) {
      best = it->get<uint64_t>();
      entry["precision"] = it.key();
    }
}

// The tensor whose name satisfies pred, or "".
template <class P>
std::string find_name(const std::vector<std::string>& names, P pred) {
  for (const auto& n : names)
    if (pred(n)) return n;
  return "";
}

std::string base_from_context_width(int64_t w) {
  if (w == 768) return "sd15";
  if (w == 1024) return "sd2";
  if (w == 2048) return "sdxl";
  return "";
}

// Which model a LoRA was trained for, from its tensor names and shapes: kohya's text-encoder
// prefixes (lora_te_ vs lora_te1_/lora_te2_), its UNet naming (diffusers' down_blocks for SD 1.x/2.x,
// the original input_blocks for SDXL), and the widths: cross-attention context 768 (SD 1.x),
// 1024 (SD 2.x), 2048 (SDXL); text encoder 768 / 1024 / 1280.
std::string lora_base(const io::SafetensorsFile& f, const std::vector<std::string>& names, std::string* evidence) {
  auto any = [&](const std::string& s) { return !find_name(names, [&](const std::string& n) { return contains(n, s); }).empty(); };
  auto is_down = [](const std::string& n) {
    return contains(n, "lora_down.weight") || contains(n, "lora_A.weight") || contains(n, "lora.down.weight");
  };
  if (any("lora_te1_") || any("lora_te2_")) {
    *evidence = "text-encoder tensors lora_te1_/lora_te2_ (two text encoders)";
    return "sdxl";
  }
  if (any("double_blocks") || any("single_blocks") || any("single_transformer_blocks")) {
    *evidence = "FLUX transformer blocks (double_blocks/single_blocks)";
    return "flux";
  }
  if (any("joint_blocks") || any("joint_transformer_blocks")) {
    *evidence = "SD3 joint blocks";
    return "sd3";
  }
  const std::string k = find_name(names, [&](const std::string& n) {
    return contains(n, "attn2") && contains(n, "to_k") && is_down(n);
  });
  if (!k.empty() && f.info(k).shape.size() == 2) {
    const int64_t w = f.info(k).shape[1];
    const std::string b = base_from_context_width(w);
    if (!b.empty()) {
      *evidence = "cross-attention context width " + std::to_string(w);
      return b;
    }
  }
  const std::string q = find_name(names, [&](const std::string& n) {
    return (starts_with(n, "lora_te") || starts_with(n, "text_encoder")) && contains(n, "q_proj") && is_down(n);
  });
  if (!q.empty() && f.info(q).shape.size() == 2) {
    const int64_t w = f.info(q).shape[1];
    const std::string b = w == 768 ? "sd15" : w == 1024 ? "sd2" : w == 1280 ? "sdxl" : "";
    if (!b.empty()) {
      *evidence = "text-encoder width " + std::to_string(w);
      return b;
    }
  }
  if (any("lora_unet_input_blocks_") || any("lora_unet_output_blocks_") || any("lora_unet_middle_block_")) {
    *evidence = "UNet names lora_unet_input_blocks_* (kohya's SDXL naming)";
    return "sdxl";
  }
  if (any("lora_unet_down_blocks_") || any("lora_unet_up_blocks_") || any("lora_te_") || any("unet.down_blocks")) {
    *evidence = "SD 1.x/2.x names (lora_unet_down_blocks_ / lora_te_), widths not telling which";
    return "sd";
  }
  return "";
}

std::string base_label(const std::string& base) {
  if (base == "sd15") return "Stable Diffusion 1.x";
  if (base == "sd2") return "Stable Diffusion 2.x";
  if (base == "sd") return "Stable Diffusion 1.x/2.x";
  if (base == "sdxl") return "SDXL";
  if (base == "flux") return "FLUX";
  if (base == "sd3") return "Stable Diffusion 3";
  return base;
}

bool sd_base(const std::string& base) { return base == "sd15" || base == "sd2" || base == "sd"; }

const char* kUnsupportedRemedy =
    "Loupe runs Florence-2, PaliGemma, BLIP-2, Stable Diffusion 1.x/2.x, SDXL and FLUX.1; see the catalog for models it runs";

// The families whose LoRA files Loupe applies, by the base a LoRA is made for.
std::string lora_family(const std::string& base) {
  if (sd_base(base)) return "stable-diffusion";
  if (base == "sdxl") return "sdxl";
  if (base == "flux") return "flux";
  return "";
}

// The first compiled-in family that recognises `path` (its detect() answers a variant): fills
// family, variant, supported and whatever its inspect() reports. False when none does.
bool detect_family(json& e, const std::string& path) {
  for (const auto& fam : model_families()) {
    std::string variant;
    try {
      variant = fam.detect(path);
    } catch (const std::exception&) {
      continue;
    }
    if (variant.empty()) continue;
    e["family"] = fam.name;
    e["variant"] = variant;
    e["supported"] = true;
    if (fam.inspect) fam.inspect(path, e);
    return true;
  }
  return false;
}

void describe_safetensors(json& e, const std::string& path, const std::string& hint) {
  std::unique_ptr<io::SafetensorsFile> fp;
  try {
    fp = std::make_unique<io::SafetensorsFile>(path);
  } catch (const Error& err) {
    e["kind"] = hint.empty() ? "unknown" : hint;
    problem(e, "error", err.what(), "download the file again: it is damaged or incomplete");
    return;
  }
  const auto& f = *fp;
  const auto names = f.names();
  add_dtypes(e, f);
  auto has = [&](const std::string& n) { return f.has(n); };
  auto any_prefix = [&](const std::string& p) {
    auto it = std::lower_bound(names.begin(), names.end(), p);
    return it != names.end() && starts_with(*it, p);
  };
  auto any_part = [&](const std::string& s) {
    return !find_name(names, [&](const std::string& n) { return contains(n, s); }).empty();
  };

  // LoRA / LyCORIS
  if (any_part("lora_down") || any_part("lora_up") || any_part(".lora_A.") || any_part(".lora_B.") ||
      any_part("lora.down.") || any_part(".hada_w1") || any_part(".lokr_w1")) {
    e["kind"] = "lora";
    std::string evidence;
    const std::string base = lora_base(f, names, &evidence);
    e["base"] = base;
    if (!lora_family(base).empty()) {
      e["family"] = lora_family(base);
      e["variant"] = base;
      e["supported"] = true;
    } else if (base.empty()) {
      problem(e, "warning", "could not tell which model this LoRA is for (" + std::to_string(names.size()) + " tensors, e.g. '" +
                                (names.empty() ? std::string() : names.front()) + "')",
              "apply it to the model it was made for; a mismatch is reported when it is applied");
    } else {
      problem(e, "warning", "a LoRA for " + base_label(base) + " (" + evidence + "), a model family Loupe does not run",
              "use a version of this LoRA made for a model Loupe runs (SD 1.x/2.x, SDXL, FLUX.1)");
    }
    return;
  }
  // A whole checkpoint in the original layout (web UIs' checkpoints)
  if (any_prefix("model.diffusion_model.")) {
    e["kind"] = "model";
    std::string base;
    if (any_prefix("conditioner.embedders.")) base = "sdxl";
    else if (any_prefix("model.diffusion_model.joint_blocks.")) base = "sd3";
    else if (any_prefix("model.diffusion_model.double_blocks.")) base = "flux";
    // a family's answer counts when it agrees with what the names say (an SDXL- or FLUX-named file
    // that a family takes for something else is not what it claims)
    json probe = e;
    if (base != "sd3" && detect_family(probe, path) &&
        (base.empty() || starts_with(probe["variant"].get<std::string>(), base) || probe["family"] == base ||
         starts_with(probe["variant"].get<std::string>(), base + "-"))) {
      e = probe;
      const std::string variant = e["variant"].get<std::string>();
      e["base"] = !base.empty() ? base : starts_with(variant, "sd2") ? "sd2" : starts_with(variant, "sd15") ? "sd15" : "";
      if (base != "flux" && !any_prefix("first_stage_model."))
        problem(e, "warning", "the checkpoint holds no VAE (first_stage_model.*)", "use a checkpoint with its VAE baked in, or add a VAE");
      return;
    }
    e["base"] = base;
    if (base == "sd3")
      problem(e, "warning", "a " + base_label(base) + " checkpoint: Loupe cannot run it yet", kUnsupportedRemedy);
    else
      problem(e, "warning", "a " + (base.empty() ? std::string("Stable Diffusion-style") : base_label(base)) +
                                " checkpoint that Loupe does not recognise (open it to see what is wrong with it)",
              kUnsupportedRemedy);
    return;
  }
  // A FLUX diffusion transformer alone (ComfyUI's diffusion_models/): the FLUX family opens it with
  // its text encoders and VAE found next to it.
  if (has("double_blocks.0.img_attn.qkv.weight") || any_prefix("double_blocks.")) {
    e["base"] = "flux";
    if (detect_family(e, path)) {
      e["kind"] = "model";
      return;
    }
    e["kind"] = "unet";
    problem(e, "warning", "a FLUX diffusion transformer that Loupe does not recognise (open it to see what is wrong with it)",
            kUnsupportedRemedy);
    return;
  }
  if (has("input_blocks.0.0.weight") || (has("conv_in.weight") && any_prefix("down_blocks.") && any_prefix("time_embedding."))) {
    e["kind"] = "unet";
    const std::string k = find_name(names, [](const std::string& n) { return contains(n, "attn2.to_k.weight"); });
    if (!k.empty() && f.info(k).shape.size() == 2) e["base"] = base_from_context_width(f.info(k).shape[1]);
    if (has("label_emb.0.0.weight") || any_prefix("add_embedding.")) e["base"] = "sdxl";
    problem(e, "info", "a UNet without its text encoder and VAE: Loupe opens whole checkpoints or diffusers folders",
            "use the whole checkpoint, or the model's diffusers folder");
    return;
  }
  // VAE (original or diffusers names)
  for (const std::string p : {"", "first_stage_model."}) {
    if (!has(p + "decoder.conv_out.weight") || !has(p + "decoder.conv_in.weight")) continue;
    e["kind"] = "vae";
    const auto& s = f.info(p + "decoder.conv_in.weight").shape;
    const int64_t latent = s.size() == 4 ? s[1] : 0;
    e["family"] = "vae";
    if (latent == 4) {
      e["base"] = "sd";
      e["supported"] = true;
    } else {
      e["base"] = latent == 16 ? "flux" : "";
      if (latent == 16) {  // not "supported": it is no external VAE for the SD/SDXL sessions
        problem(e, "info", "a FLUX.1 VAE (16 latent channels): part of a FLUX model, found next to its diffusion model",
                "keep it in the models folder (vae/ or next to the diffusion model)");
      } else {
        problem(e, "warning", "a VAE with " + std::to_string(latent) + " latent channels: Stable Diffusion and SDXL need 4, FLUX.1 16",
                "use a VAE made for the model");
      }
    }
    return;
  }
  // Text encoders (CLIP in transformers' or OpenCLIP's names, T5)
  const std::string q = find_name(names, [](const std::string& n) { return ends_with(n, "encoder.layers.0.self_attn.q_proj.weight"); });
  const std::string oc = find_name(names, [](const std::string& n) { return ends_with(n, "transformer.resblocks.0.attn.in_proj_weight"); });
  if (!q.empty() || !oc.empty()) {
    e["kind"] = "text_encoder";
    e["family"] = "clip";
    const auto& s = f.info(q.empty() ? oc : q).shape;
    const int64_t w = s.size() == 2 ? s[1] : 0;
    e["variant"] = w == 768 ? "clip-l" : w == 1024 ? "clip-h" : w == 1280 ? "clip-g" : "clip";
    problem(e, "info", "a text encoder alone: it is part of a model, not opened by itself", "open the whole model");
    return;
  }
  if (any_part("encoder.block.0.layer.0.SelfAttention.q.weight")) {
    e["kind"] = "text_encoder";
    e["family"] = "t5";
    e["variant"] = "t5";
    problem(e, "info", "a T5 text encoder alone: part of a model (FLUX.1 finds t5xxl files next to its diffusion model), not opened by itself",
            "open the whole model");
    return;
  }
  // Textual-inversion embeddings
  if (has("emb_params") || any_prefix("string_to_param") || (names.size() <= 2 && (has("clip_l") || has("clip_g")))) {
    e["kind"] = "embedding";
    problem(e, "info", "a textual-inversion embedding: Loupe does not use embeddings yet", "");
    return;
  }
  e["kind"] = hint.empty() ? "unknown" : hint;
  problem(e, "info", "not a model Loupe recognises (" + std::to_string(names.size()) + " tensors" +
                         (names.empty() ? std::string() : ", e.g. '" + names.front() + "'") + ")",
          kUnsupportedRemedy);
}

struct Scanner {
  const Catalog& catalog;
  json models = json::array();
  json roots = json::array();
  std::set<std::string> seen;

  explicit Scanner(const Catalog& c) : catalog(c) {}

  static std::string key(const fs::path& p) {
    std::error_code ec;
    auto c = fs::canonical(p, ec);
    return ec ? fs::absolute(p, ec).lexically_normal().string() : c.string();
  }

  void finish(json& e, const json& extra) {
    for (auto it = extra.begin(); it != extra.end(); ++it) e[it.key()] = it.value();
    if (!e["family"].get<std::string>().empty() && e["tasks"].empty() && e["kind"] == "model") {
      for (const auto& f : model_families())
        if (f.name == e["family"]) e["tasks"] = f.tasks;
      if (e["tasks"].empty()) e["tasks"] = catalog.family_tasks(e["family"]);  // a family not compiled in
    }
    const CatalogVariant* v = nullptr;
    if (e.contains("repo")) v = catalog.match_repo(e["repo"]);
    if (!v && e["kind"] == "model" && e["format"] == "folder") v = catalog.match_folder(fs::path(e["path"].get<std::string>()).filename().string());
    if (v) e["catalog_id"] = v->id;
    if (e.contains("repo") && e["format"] == "folder") e["name"] = e["repo"];
    models.push_back(std::move(e));
  }

  void root(const fs::path& dir, const std::string& source_in) {
    std::error_code ec;
    const bool exists = fs::is_directory(dir, ec);
    std::string source = source_in;
    fs::path start = dir;
    if (exists && source != "hf-cache") {
      // A web UI's folder, its models folder, or any folder of models.
      auto web_ui = [&](const fs::path& models) -> std::string {
        if (fs::is_directory(models / "Stable-diffusion", ec) || fs::is_directory(models / "Lora", ec)) return "a1111";
        if (fs::is_directory(models / "checkpoints", ec) || fs::is_directory(models / "diffusion_models", ec) ||
            fs::is_directory(models / "loras", ec))
          return "comfyui";
        return "";
      };
      if (std::string w = web_ui(dir / "models"); !w.empty()) {
        source = w;
        start = dir / "models";
      } else if (std::string w2 = web_ui(dir); !w2.empty()) {
        source = w2;
      }
    }
    roots.push_back({{"path", dir.string()}, {"source", source}, {"exists", exists}});
    if (!exists) return;
    if (source == "hf-cache") hf_cache(dir);
    else tree(start, source, "", 0, json::object());
  }

  void hf_cache(const fs::path& hub) {
    std::error_code ec;
    std::vector<fs::path> repos;
    for (const auto& d : fs::directory_iterator(hub, ec))
      if (starts_with(d.path().filename().string(), "models--") && d.is_directory(ec)) repos.push_back(d.path());
    std::sort(repos.begin(), repos.end());
    for (const auto& r : repos) {
      std::string repo = r.filename().string().substr(8);
      if (auto p = repo.find("--"); p != std::string::npos) repo.replace(p, 2, "/");
      // The snapshot refs/main names, else the newest.
      const auto snaps = io::hf_cached_snapshots(repo, hub.string());
      const fs::path snap = snaps.empty() ? fs::path() : fs::path(snaps.front());
      const std::string revision = snap.filename().string();
      const json extra = {{"repo", repo}, {"revision", revision}};
      bool unfinished = false;
      for (const auto& b : fs::directory_iterator(r / "blobs", ec))
        unfinished = unfinished || ends_with(b.path().filename().string(), ".incomplete");
      if (snap.empty()) {
        json e = new_entry(r, "partial");
        e["source"] = "hf-cache";
        problem(e, "warning", "the Hugging Face cache holds no snapshot of " + repo + " (nothing downloaded yet)",
                "download the model again");
        finish(e, extra);
        continue;
      }
      const size_t before = models.size();
      tree(snap, "hf-cache", "", 1, extra);
      if (unfinished)
        for (size_t i = before; i < models.size(); ++i)
          problem(models[i], "warning", "an interrupted download of " + repo + " (a .incomplete file in its blobs)",
                  "download the model again to finish it");
    }
  }

  static bool model_folder(const fs::path& dir) {
    std::error_code ec;
    return fs::exists(dir / "config.json", ec) || fs::exists(dir / "model_index.json", ec);
  }

  void tree(const fs::path& dir, const std::string& source, const std::string& hint, int depth, const json& extra) {
    if (depth > 8) return;
    if (model_folder(dir)) {
      folder(dir, source, extra);
      return;
    }
    std::error_code ec;
    std::vector<fs::directory_entry> entries;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) entries.push_back(*it);
    std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) { return a.path() < b.path(); });
    for (const auto& d : entries) {
      const std::string name = d.path().filename().string();
      if (d.is_directory(ec)) {
        if (skipped_folder(name)) continue;
        const std::string k = kind_of_folder(name);
        tree(d.path(), source, k.empty() ? hint : k, depth + 1, extra);
        continue;
      }
      const std::string ext = lower(d.path().extension().string());
      if (ext == ".part" || ext == ".incomplete") {
        if (!seen.insert(key(d.path())).second) continue;
        json e = new_entry(d.path(), "partial");
        e["source"] = source;
        e["bytes"] = d.file_size(ec);
        problem(e, "warning", "an unfinished download: " + d.path().string(),
                "resume the download (Loupe continues where it stopped), or delete the file");
        finish(e, extra);
        continue;
      }
      if (!weight_extension(ext)) continue;
      if (d.is_symlink(ec) && !fs::exists(d.path(), ec)) {
        json e = new_entry(d.path(), hint.empty() ? "unknown" : hint);
        e["source"] = source;
        problem(e, "error", "missing file: " + d.path().string() + " links to a blob that is not there",
                "download the model again");
        finish(e, extra);
        continue;
      }
      if (!d.is_regular_file(ec)) continue;
      if (!seen.insert(key(d.path())).second) continue;
      json e = describe_weight_file(d.path().string(), hint);
      e["source"] = source;
      finish(e, extra);
    }
  }

  void folder(const fs::path& dir, const std::string& source, const json& extra) {
    if (!seen.insert(key(dir)).second) return;
    json e = new_entry(dir, "model");
    e["source"] = source;
    e["format"] = "folder";
    const json report = inspect_model(dir.string(), "");
    e["problems"] = report.value("problems", json::array());
    std::error_code ec;
    if (report.contains("family")) {
      e["family"] = report["family"];
      e["variant"] = report["variant"];
      e["supported"] = true;
      if (e["family"] == "stable-diffusion") {
        // SD 1.x and 2.x differ in the text encoder's width.
        try {
          const auto te = io::read_json_file((dir / "text_encoder" / "config.json").string());
          const int64_t w = te.value("hidden_size", int64_t(0));
          e["base"] = w == 768 ? "sd15" : w == 1024 ? "sd2" : "sd";
        } catch (const Error&) {
          e["base"] = "sd";
        }
      }
    } else {
      // A model folder of a family Loupe does not run: name it from its config, drop inspect's
      // generic message for a clearer one.
      std::string what;
      try {
        if (fs::exists(dir / "model_index.json", ec)) {
          what = io::read_json_file((dir / "model_index.json").string()).value("_class_name", "");
          if (contains(what, "XL")) e["base"] = "sdxl";
          else if (contains(what, "Flux")) e["base"] = "flux";
          else if (contains(what, "3")) e["base"] = "sd3";
        } else {
          what = io::read_json_file((dir / "config.json").string()).value("model_type", "");
          e["family"] = what;
        }
      } catch (const Error&) {
      }
      e["problems"] = json::array();
      problem(e, "warning", "'" + dir.filename().string() + "'" + (what.empty() ? std::string() : " (" + what + ")") +
                                " is not a model Loupe runs",
              kUnsupportedRemedy);
    }
    // Files: size, weights' dtypes, links into blobs that are missing, unfinished downloads.
    uint64_t bytes = 0;
    for (fs::recursive_directory_iterator it(dir, fs::directory_options::skip_permission_denied, ec), end;
         !ec && it != end; it.increment(ec)) {
      if (it.depth() > 3) {
        it.disable_recursion_pending();
        continue;
      }
      const fs::path p = it->path();
      const std::string name = p.filename().string();
      if (it->is_symlink(ec) && !fs::exists(p, ec)) {
        problem(e, "error", "missing file: " + fs::relative(p, dir, ec).string() + " links to a blob that is not there",
                "download the model again");
        continue;
      }
      if (!it->is_regular_file(ec)) continue;
      if (ends_with(name, ".part") || ends_with(name, ".incomplete"))
        problem(e, "warning", "an unfinished download: " + fs::relative(p, dir, ec).string(),
                "resume the download (Loupe continues where it stopped)");
      if (name == ".loupe-download")
        problem(e, "warning", "a download into this folder did not finish", "resume the download from the Models panel");
      bytes += it->file_size(ec);
      if (ends_with(name, ".safetensors")) {
        try {
          add_dtypes(e, io::SafetensorsFile(p.string()));
        } catch (const Error& err) {
          problem(e, "error", err.what(), "download the file again: it is damaged or incomplete");
        }
      }
    }
    e["bytes"] = bytes;
    finish(e, extra);
  }
};

}  // namespace

json describe_weight_file(const std::string& path, const std::string& kind_hint) {
  json e = new_entry(path, kind_hint.empty() ? "unknown" : kind_hint);
  std::error_code ec;
  e["bytes"] = fs::file_size(path, ec);
  const std::string ext = lower(fs::path(path).extension().string());
  e["format"] = ext.empty() ? "" : ext.substr(1);
  if (ext == ".safetensors" || ext == ".sft") {
    e["format"] = "safetensors";
    describe_safetensors(e, path, kind_hint);
  } else if (ext == ".gguf") {
    problem(e, "warning", "a GGUF file: Loupe reads safetensors and PyTorch checkpoints only", kUnsupportedRemedy);
  } else {
    problem(e, "info", "a pickle checkpoint (" + ext + "): its contents are read only when it is opened",
            "prefer the .safetensors version, or convert it with loupe-cli convert");
  }
  return e;
}

json scan_models(const ScanOptions& o) {
  Scanner s(o.catalog ? *o.catalog : Catalog::builtin());
  if (o.default_locations && !io::hf_hub_cache_dir().empty()) s.root(io::hf_hub_cache_dir(), "hf-cache");
  if (!o.models_dir.empty()) s.root(o.models_dir, "models_dir");
  for (const auto& d : o.dirs) {
    if (d.empty()) LOUPE_THROW(InvalidArgument, "an extra folder to scan is an empty string");
    s.root(d, "folder");
  }
  if (o.default_locations) {
    const char* home = std::getenv("HOME");
    if (home && *home)
      for (const char* n : {"stable-diffusion-webui", "stable-diffusion-webui-forge", "ComfyUI"}) {
        std::error_code ec;
        if (fs::is_directory(fs::path(home) / n, ec)) s.root(fs::path(home) / n, "folder");
      }
  }
  json out;
  out["roots"] = std::move(s.roots);
  json cat = json::array();
  for (const auto& v : s.catalog.variants()) {
    json found = json::array();
    std::string usable;  // a whole copy found anywhere: the variant is installed there
    for (const auto& m : s.models) {
      if (m.value("catalog_id", "") != v.id) continue;
      found.push_back(m["path"]);
      bool errors = false;
      for (const auto& p : m.value("problems", json::array())) errors = errors || p.value("severity", "") == "error";
      if (usable.empty() && !errors && m.value("supported", false)) usable = m["path"].get<std::string>();
    }
    // Its state in the models folder (a folder named as the entry's), unless it is whole elsewhere.
    std::string state = "missing", path = o.models_dir.empty() ? "" : (fs::path(o.models_dir) / v.folder).string();
    json missing = json::array();
    std::error_code ec;
    if (!path.empty() && fs::is_directory(path, ec)) {
      for (const auto& need : v.files) {
        bool any = false;
        for (size_t a = 0, b; a <= need.size(); a = b + 1) {
          b = need.find('|', a);
          if (b == std::string::npos) b = need.size();
          any = any || fs::exists(fs::path(path) / need.substr(a, b - a), ec);
        }
        if (!any) missing.push_back(need);
      }
      state = missing.empty() ? "installed" : "incomplete";
    }
    if (state != "installed" && !usable.empty()) {
      state = "installed";
      path = usable;
      missing = json::array();
    }
    std::vector<std::string> tasks = v.tasks;  // the family's own list when it is compiled in
    for (const auto& fam : model_families())
      if (fam.name == v.family && !fam.tasks.empty()) tasks = fam.tasks;
    cat.push_back({{"id", v.id}, {"name", v.name}, {"family", v.family}, {"family_name", v.family_name},
                   {"repo", v.repo}, {"folder", v.folder}, {"license", v.license}, {"size_bytes", v.size_bytes},
                   {"vram_bytes", v.vram_bytes}, {"tasks", tasks}, {"files", v.files}, {"found", found},
                   {"state", state}, {"path", path}, {"missing_files", missing}});
  }
  out["models"] = std::move(s.models);
  out["catalog"] = std::move(cat);
  return out;
}

}  // namespace loupe
