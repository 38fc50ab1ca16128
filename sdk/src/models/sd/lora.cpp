#include "models/sd/lora.h"

#include <set>

#include "core/error.h"
#include "io/checkpoint.h"

namespace loupe::sd {

namespace {

std::map<std::string, torch::Tensor> weights_by_kohya_name(torch::nn::Module& m, const std::string& prefix) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& p : m.named_parameters(true)) {
    const std::string& name = p.key();
    if (name.size() < 7 || name.compare(name.size() - 7, 7, ".weight") != 0) continue;
    std::string k = prefix + name.substr(0, name.size() - 7);
    for (char& c : k)
      if (c == '.') c = '_';
    out[k] = p.value();
  }
  return out;
}

}  // namespace

void LoraSet::restore() {
  torch::NoGradGuard ng;
  for (auto& [impl, pc] : originals_) pc.first.copy_(pc.second);
  originals_.clear();
}

void LoraSet::set(const std::string& path, float weight, torch::nn::Module& unet, torch::nn::Module& text,
                  torch::nn::Module* text2) {
  torch::NoGradGuard ng;
  auto wanted = active_;
  if (weight == 0.0f) wanted.erase(path);
  else wanted[path] = weight;
  restore();
  try {
    merge(wanted, unet, text, text2);
  } catch (...) {
    restore();
    merge(active_, unet, text, text2);  // what was active before (it merged before, so it merges again)
    throw;
  }
  active_ = wanted;
}

void LoraSet::merge(const std::map<std::string, float>& files, torch::nn::Module& unet, torch::nn::Module& text,
                    torch::nn::Module* text2) {
  auto targets = weights_by_kohya_name(unet, "lora_unet_");
  for (auto& kv : weights_by_kohya_name(text, text2 ? "lora_te1_" : "lora_te_")) targets.insert(kv);
  if (text2)
    for (auto& kv : weights_by_kohya_name(*text2, "lora_te2_")) targets.insert(kv);
  {
    for (const auto& [file, w] : files) {
      auto ck = io::Checkpoint::open(file);
      std::set<std::string> modules, unmatched;
      for (const auto& n : ck.names()) {
        const auto dot = n.find('.');
        if (dot != std::string::npos && n.rfind("lora_", 0) == 0) modules.insert(n.substr(0, dot));
      }
      if (modules.empty())
        LOUPE_THROW(BadModel, file << ": no kohya-format LoRA tensors (lora_unet_* / lora_te_* with lora_down/lora_up)");
      size_t applied = 0;
      for (const auto& mod : modules) {
        auto it = targets.find(mod);
        if (it == targets.end()) {
          unmatched.insert(mod);
          continue;
        }
        const std::string dn = mod + ".lora_down.weight", up = mod + ".lora_up.weight";
        if (!ck.has(dn) || !ck.has(up)) LOUPE_THROW(BadModel, file << ": '" << mod << "' lacks lora_down or lora_up");
        auto down = ck.load(dn).to(torch::kFloat32), upw = ck.load(up).to(torch::kFloat32);
        const int64_t rank = down.size(0);
        const double alpha = ck.has(mod + ".alpha") ? ck.load(mod + ".alpha").to(torch::kFloat64).item<double>() : double(rank);
        torch::Tensor& target = it->second;
        auto delta = torch::matmul(upw.flatten(1), down.flatten(1));
        if (delta.numel() != target.numel())
          LOUPE_THROW(BadModel, file << ": '" << mod << "' makes a " << delta.sizes() << " update for the weight "
                                     << target.sizes() << " (a LoRA for another model?)");
        delta = delta.reshape(target.sizes()) * (w * alpha / rank);
        if (!originals_.count(target.unsafeGetTensorImpl()))
          originals_[target.unsafeGetTensorImpl()] = {target, target.detach().to(torch::kCPU).clone()};
        target.add_(delta.to(target.device(), target.scalar_type()));
        ++applied;
      }
      if (applied == 0)
        LOUPE_THROW(BadModel, file << ": none of its " << modules.size() << " modules (e.g. '" << *modules.begin()
                                   << "') is in this model: it is a LoRA for another model family (SDXL?)");
      if (!unmatched.empty())
        LOUPE_THROW(BadModel, file << ": " << unmatched.size() << " of its modules are not in this model (e.g. '"
                                   << *unmatched.begin() << "'): a LoRA for another model?");
    }
  }
}

}  // namespace loupe::sd
