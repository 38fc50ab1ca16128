#include "models/sd/lora.h"

#include <set>
#include <tuple>

#include "core/error.h"
#include "io/checkpoint.h"
#include "io/lora.h"
#include "models/sd/single_file.h"
#include "models/sd/unet.h"

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
  // SDXL's kohya files name the UNet after the original (LDM/SGM) model: input_blocks, middle_block,
  // output_blocks (the single-file key mapping, one definition of it)
  // (SD 1.x/2.x files use diffusers' paths: the original names there would let an SDXL LoRA half-match)
  auto* u = dynamic_cast<UNet2DConditionModelImpl*>(&unet);
  if (u && u->cfg.text_time) {
    bool same_layers = true;
    for (auto l : u->cfg.layers_per_block) same_layers = same_layers && l == u->cfg.layers_per_block[0];
    if (same_layers) {
      const io::KeyMap km = unet_single_file_keymap(u->cfg);
      const std::string root = "model.diffusion_model.";
      for (const auto& p : unet.named_parameters(true)) {
        const std::string& name = p.key();
        if (name.size() < 7 || name.compare(name.size() - 7, 7, ".weight") != 0) continue;
        const std::string ldm = km.map(name);
        if (ldm == name || ldm.rfind(root, 0) != 0) continue;
        std::string k = "lora_unet_" + ldm.substr(root.size(), ldm.size() - root.size() - 7);
        for (char& c : k)
          if (c == '.') c = '_';
        targets.emplace(k, p.value());
      }
    }
  }
  for (auto& kv : weights_by_kohya_name(text, text2 ? "lora_te1_" : "lora_te_")) targets.insert(kv);
  if (text2)
    for (auto& kv : weights_by_kohya_name(*text2, "lora_te2_")) targets.insert(kv);
  {
    for (const auto& [file, w] : files) {
      auto ck = io::Checkpoint::open(file);
      const auto modules = io::lora_modules(ck, file, text2 != nullptr);
      std::set<std::string> unmatched;
      if (modules.empty())
        LOUPE_THROW(BadModel, file << ": no LoRA tensors (kohya's lora_unet_* / lora_te_* with lora_down/lora_up, or "
                                      "diffusers/PEFT's unet.*.lora_A/lora_B)");
      size_t applied = 0;
      for (const auto& [mod, names] : modules) {
        auto it = targets.find(mod);
        if (it == targets.end()) {
          unmatched.insert(mod);
          continue;
        }
        if (names.down.empty() || names.up.empty())
          LOUPE_THROW(BadModel, file << ": '" << mod << "' lacks its " << (names.down.empty() ? "down (lora_down / lora_A)" : "up (lora_up / lora_B)")
                                     << " matrix");
        auto down = ck.load(names.down).to(torch::kFloat32), upw = ck.load(names.up).to(torch::kFloat32);
        const int64_t rank = down.size(0);
        const double scale = io::lora_scale(ck, names, rank);
        torch::Tensor& target = it->second;
        auto delta = torch::matmul(upw.flatten(1), down.flatten(1));
        if (delta.numel() != target.numel())
          LOUPE_THROW(BadModel, file << ": '" << mod << "' makes a " << delta.sizes() << " update for the weight "
                                     << target.sizes() << " (a LoRA for another model?)");
        delta = delta.reshape(target.sizes()) * (w * scale);
        if (!originals_.count(target.unsafeGetTensorImpl()))
          originals_[target.unsafeGetTensorImpl()] = {target, target.detach().to(torch::kCPU).clone()};
        target.add_(delta.to(target.device(), target.scalar_type()));
        ++applied;
      }
      if (applied == 0)
        LOUPE_THROW(BadModel, file << ": none of its " << modules.size() << " modules (e.g. '" << modules.begin()->first
                                   << "') is in this model: it is a LoRA for another model family (SDXL?)");
      if (!unmatched.empty())
        LOUPE_THROW(BadModel, file << ": " << unmatched.size() << " of its modules are not in this model (e.g. '"
                                   << *unmatched.begin() << "'): a LoRA for another model?");
    }
  }
}

}  // namespace loupe::sd
