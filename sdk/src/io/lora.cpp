#include "io/lora.h"

#include <tuple>
#include <utility>

#include "core/error.h"

namespace loupe::io {

std::map<std::string, LoraModule> lora_modules(const Checkpoint& ck, const std::string& file, bool two_text_encoders,
                                               std::vector<std::string>* other) {
  std::map<std::string, LoraModule> out;
  auto underscored = [](std::string k) {
    for (char& c : k)
      if (c == '.') c = '_';
    return k;
  };
  auto ends = [](const std::string& s, const std::string& suffix, std::string* head) {
    if (s.size() < suffix.size() || s.compare(s.size() - suffix.size(), suffix.size(), suffix) != 0) return false;
    *head = s.substr(0, s.size() - suffix.size());
    return true;
  };
  for (const auto& n : ck.names()) {
    if (n.find("dora_scale") != std::string::npos || n.find("lora_magnitude_vector") != std::string::npos)
      LOUPE_THROW(Unsupported, file << ": '" << n << "' is a DoRA tensor; DoRA files are not supported (plain LoRA only)");
    std::string head;
    if (n.rfind("lora_", 0) == 0) {  // kohya
      const auto dot = n.find('.');
      if (dot == std::string::npos) continue;
      const std::string mod = n.substr(0, dot), rest = n.substr(dot + 1);
      if (rest == "lora_down.weight") out[mod].down = n;
      else if (rest == "lora_up.weight") out[mod].up = n;
      else if (rest == "alpha") out[mod].alpha = n;
      else if (other) other->push_back(n);
      continue;
    }
    // diffusers / PEFT: the component, then the module path and the role
    std::string path = n.rfind("base_model.model.", 0) == 0 ? n.substr(17) : n;
    std::string prefix = "lora_unet_";
    bool denoiser = false;
    for (const std::string c : {"unet.", "transformer.", "model.diffusion_model.", "diffusion_model."})
      if (path.rfind(c, 0) == 0) {
        path = path.substr(c.size());
        denoiser = true;
        break;
      }
    if (denoiser) {
      // the UNet / transformer: lora_unet_
    } else if (path.rfind("text_encoder_2.", 0) == 0) prefix = "lora_te2_", path = path.substr(15);
    else if (path.rfind("text_encoder.", 0) == 0) prefix = two_text_encoders ? "lora_te1_" : "lora_te_", path = path.substr(13);
    else if (path.rfind("text_model.", 0) == 0) prefix = two_text_encoders ? "lora_te1_" : "lora_te_";
    const bool text = prefix != "lora_unet_";
    int role = -1;  // 0 down, 1 up, 2 alpha
    for (const auto& [suffix, r] : std::vector<std::pair<std::string, int>>{
             {".lora_A.weight", 0}, {".lora_B.weight", 1}, {".lora.down.weight", 0}, {".lora.up.weight", 1},
             {".lora_linear_layer.down.weight", 0}, {".lora_linear_layer.up.weight", 1}, {".alpha", 2},
             {"_lora.down.weight", 0}, {"_lora.up.weight", 1}})  // processors: <attn>.processor.to_q_lora.down.weight
      if (ends(path, suffix, &head)) {
        role = r;
        if (suffix[0] == '_') head += "_lora";  // the processor's name, mapped below
        break;
      }
    if (role < 0) {
      if (other) other->push_back(n);
      continue;
    }
    // attention processors' names (diffusers' older format)
    for (const auto& [from, unet_to, text_to] : std::vector<std::tuple<std::string, std::string, std::string>>{
             {"to_q_lora", "to_q", "q_proj"}, {"to_k_lora", "to_k", "k_proj"}, {"to_v_lora", "to_v", "v_proj"},
             {"to_out_lora", "to_out.0", "out_proj"}}) {
      std::string attn;
      if (ends(head, "." + from, &attn)) {
        if (!text && ends(attn, ".processor", &attn)) head = attn + "." + unet_to;
        else if (text) head = attn + "." + text_to;
        break;
      }
    }
    auto& m = out[prefix + underscored(head)];
    (role == 0 ? m.down : role == 1 ? m.up : m.alpha) = n;
  }
  return out;
}

double lora_scale(const Checkpoint& ck, const LoraModule& m, int64_t rank) {
  if (rank <= 0) return 0.0;
  const double alpha = m.alpha.empty() ? double(rank) : ck.load(m.alpha).to(torch::kFloat64).reshape({-1})[0].item<double>();
  return alpha / double(rank);
}

}  // namespace loupe::io
