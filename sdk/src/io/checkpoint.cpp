#include "io/checkpoint.h"

#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "core/torch_compat.h"
#include "io/config.h"
#include "io/torch_zip.h"

namespace fs = std::filesystem;

namespace loupe::io {

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// The variant of a weights file name: "V" in <stem>.V.safetensors / <stem>.V.bin and in
// <stem>.safetensors.index.V.json (diffusers' _add_variant: the variant before the last suffix).
std::string variant_of(const std::string& file) {
  static const char* const stems[] = {"model.", "diffusion_pytorch_model.", "pytorch_model."};
  for (const char* st : stems) {
    const std::string stem = st;
    if (file.rfind(stem, 0) != 0) continue;
    const std::string rest = file.substr(stem.size());
    std::string v;
    if (stem != "pytorch_model." && rest.rfind("safetensors.index.", 0) == 0 && ends_with(rest, ".json") &&
        rest.size() > 18 + 5)
      v = rest.substr(18, rest.size() - 18 - 5);
    else if (stem != "pytorch_model." && ends_with(rest, ".safetensors"))
      v = rest.substr(0, rest.size() - 12);
    else if (stem != "model." && ends_with(rest, ".bin"))
      v = rest.substr(0, rest.size() - 4);
    // one word (fp16, bf16, non_ema, ...): not a shard (model-00001-of-00002) nor a plain name
    if (v.empty() || v.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") != std::string::npos)
      continue;
    return v;
  }
  return "";
}

}  // namespace

std::string Checkpoint::variant_for(torch::ScalarType dtype) {
  if (dtype == torch::kFloat16) return "fp16";
  if (dtype == torch::kBFloat16) return "bf16";
  return "";
}

std::string Checkpoint::weights_file(const std::string& dir_in, const std::string& prefer_variant) {
  const fs::path dir(dir_in);
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return "";
  // the variants in the folder: variant -> its files (a single file sorts before an index)
  std::map<std::string, std::vector<std::string>> variants;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string n = e.path().filename().string();
    const std::string v = variant_of(n);
    if (!v.empty() && e.is_regular_file(ec)) variants[v].push_back(n);
  }
  auto pick = [&](const std::string& v) -> std::string {
    auto it = variants.find(v);
    if (it == variants.end()) return "";
    // safetensors before .bin, a single file before an index
    for (const char* kind : {".safetensors", ".json", ".bin"})
      for (const char* stem : {"model.", "diffusion_pytorch_model.", "pytorch_model."})
        for (const auto& n : it->second)
          if (n.rfind(stem, 0) == 0 && ends_with(n, kind)) return (dir / n).string();
    return "";
  };
  if (!prefer_variant.empty())
    if (auto f = pick(prefer_variant); !f.empty()) return f;
  for (const char* n : {"model.safetensors", "model.safetensors.index.json", "diffusion_pytorch_model.safetensors",
                        "diffusion_pytorch_model.safetensors.index.json", "pytorch_model.bin", "diffusion_pytorch_model.bin"})
    if (fs::exists(dir / n, ec)) return (dir / n).string();
  for (const char* v : {"fp16", "bf16"})
    if (auto f = pick(v); !f.empty()) return f;
  for (const auto& kv : variants)
    if (auto f = pick(kv.first); !f.empty()) return f;
  return "";
}

Checkpoint Checkpoint::open(const std::string& path_in, const std::string& prefer_variant) {
  std::string path = path_in;
  if (fs::is_directory(path)) {
    const std::string found = weights_file(path, prefer_variant);
    if (found.empty())
      LOUPE_THROW(NotFound, path << ": no weights found (looked for model.safetensors, "
                                    "model.safetensors.index.json, diffusion_pytorch_model.safetensors, "
                                    "pytorch_model.bin and their fp16/bf16 variants, e.g. "
                                    "diffusion_pytorch_model.fp16.safetensors); hint: the download may be incomplete");
    path = found;
  }
  if (!fs::exists(path)) LOUPE_THROW(NotFound, path << ": file does not exist");
  Checkpoint c;
  c.path_ = path;
  if (ends_with(path, ".index.json") || (ends_with(path, ".json") && path.find(".safetensors.index.") != std::string::npos)) {
    const auto index = read_json_file(path);
    if (!index.contains("weight_map") || !index["weight_map"].is_object())
      LOUPE_THROW(BadModel, path << ": no \"weight_map\" object in the shard index");
    std::map<std::string, std::shared_ptr<SafetensorsFile>> shards;
    const fs::path dir = fs::path(path).parent_path();
    for (auto it = index["weight_map"].begin(); it != index["weight_map"].end(); ++it) {
      if (!it.value().is_string()) LOUPE_THROW(BadModel, path << ": weight_map entry '" << it.key() << "' is not a file name");
      const std::string shard = it.value().get<std::string>();
      auto& f = shards[shard];
      if (!f) {
        f = std::make_shared<SafetensorsFile>((dir / shard).string());
        c.files_.push_back(f);
      }
      if (!f->has(it.key()))
        LOUPE_THROW(BadModel, path << ": weight_map says '" << it.key() << "' is in " << shard << ", but it is not there");
      c.where_[it.key()] = f;
    }
  } else if (ends_with(path, ".safetensors")) {
    auto f = std::make_shared<SafetensorsFile>(path);
    c.files_.push_back(f);
    for (const auto& n : f->names()) c.where_[n] = f;
  } else {
    // torch.save zip archive, read by our own restricted unpickler (no code runs). libtorch
    // 1.13's torch::pickle_load rejects what torch.save writes (SETITEM, OrderedDict state).
    std::ifstream in(path, std::ios::binary);
    if (!in) LOUPE_THROW(NotFound, path << ": cannot open");
    char magic[2] = {0, 0};
    in.read(magic, 2);
    if (magic[0] != 'P' || magic[1] != 'K')
      LOUPE_THROW(BadModel, path << ": not a torch.save zip archive (legacy pickle files are not read: they can run "
                                    "code); hint: convert it to safetensors on a trusted machine");
    c.eager_ = read_torch_zip(path);
    for (const char* wrapper : {"state_dict.", "model."}) {
      bool all = !c.eager_.empty();
      for (const auto& kv : c.eager_) all = all && kv.first.rfind(wrapper, 0) == 0;
      if (!all) continue;
      std::map<std::string, torch::Tensor> inner;
      for (auto& kv : c.eager_) inner[kv.first.substr(std::strlen(wrapper))] = kv.second;
      c.eager_.swap(inner);
    }
    if (c.eager_.empty()) LOUPE_THROW(BadModel, path << ": the archive holds no tensors");
  }
  return c;
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> out;
  for (const auto& kv : where_) out.push_back(kv.first);
  for (const auto& kv : eager_) out.push_back(kv.first);
  for (const auto& kv : aliases_) out.push_back(kv.first);
  return out;
}

bool Checkpoint::has(const std::string& name) const {
  return where_.count(name) || eager_.count(name) || aliases_.count(name);
}

std::vector<int64_t> Checkpoint::shape(const std::string& name) const {
  if (auto a = aliases_.find(name); a != aliases_.end()) return shape(a->second);
  if (auto w = where_.find(name); w != where_.end()) return w->second->info(name).shape;
  if (auto e = eager_.find(name); e != eager_.end()) return e->second.sizes().vec();
  LOUPE_THROW(NotFound, path_ << ": no tensor '" << name << "'");
}

std::string Checkpoint::dtype(const std::string& name) const {
  if (auto a = aliases_.find(name); a != aliases_.end()) return dtype(a->second);
  if (auto w = where_.find(name); w != where_.end()) return w->second->info(name).dtype;
  if (auto e = eager_.find(name); e != eager_.end()) return from_torch_dtype(e->second.scalar_type());
  LOUPE_THROW(NotFound, path_ << ": no tensor '" << name << "'");
}

torch::Tensor Checkpoint::load(const std::string& name, torch::Device device,
                               c10::optional<torch::ScalarType> dtype) const {
  if (auto a = aliases_.find(name); a != aliases_.end()) return load(a->second, device, dtype);
  if (auto w = where_.find(name); w != where_.end()) return w->second->load(name, device, dtype);
  if (auto e = eager_.find(name); e != eager_.end()) {
    auto t = e->second;
    return t.to(device, dtype.value_or(t.scalar_type()), /*non_blocking=*/false, /*copy=*/true);
  }
  LOUPE_THROW(NotFound, path_ << ": no tensor '" << name << "'");
}

std::string Checkpoint::path_of(const std::string& name) const {
  if (auto a = aliases_.find(name); a != aliases_.end()) return path_of(a->second);
  if (auto w = where_.find(name); w != where_.end()) return w->second->path();
  return path_;
}

void Checkpoint::alias(const std::string& name, const std::string& existing) {
  if (!has(existing)) LOUPE_THROW(NotFound, path_ << ": no tensor '" << existing << "' to alias as '" << name << "'");
  aliases_[name] = existing;
}

}  // namespace loupe::io
