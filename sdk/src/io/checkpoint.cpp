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

}  // namespace

Checkpoint Checkpoint::open(const std::string& path_in) {
  std::string path = path_in;
  if (fs::is_directory(path)) {
    std::string found;
    for (const char* n : {"model.safetensors", "model.safetensors.index.json", "diffusion_pytorch_model.safetensors",
                          "diffusion_pytorch_model.safetensors.index.json", "pytorch_model.bin",
                          "diffusion_pytorch_model.bin"}) {
      if (fs::exists(fs::path(path) / n)) {
        found = (fs::path(path) / n).string();
        break;
      }
    }
    if (found.empty())
      LOUPE_THROW(NotFound, path << ": no weights found (looked for model.safetensors, "
                                    "model.safetensors.index.json, diffusion_pytorch_model.safetensors, "
                                    "pytorch_model.bin); hint: the download may be incomplete");
    path = found;
  }
  if (!fs::exists(path)) LOUPE_THROW(NotFound, path << ": file does not exist");
  Checkpoint c;
  c.path_ = path;
  if (ends_with(path, ".index.json")) {
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
