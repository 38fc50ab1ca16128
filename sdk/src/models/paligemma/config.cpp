#include "models/paligemma/config.h"

#include <filesystem>

#include "core/error.h"
#include "io/config.h"

namespace fs = std::filesystem;

namespace loupe::paligemma {

std::string Config::variant() const {
  return std::string(gemma2() ? "paligemma2-" : "paligemma-") + std::to_string(image_height);
}

Config Config::load(const std::string& dir) {
  Config c;
  c.dir = dir;
  const std::string file = (fs::path(dir) / "config.json").string();
  const auto j = io::read_json_file(file);
  const auto type = io::get_or<std::string>(j, "model_type", "", file);
  if (type != "paligemma")
    LOUPE_THROW(BadModel, file << ": \"model_type\" is \"" << type << "\", not \"paligemma\"");

  // PaliGemmaConfig's defaults when a part is absent: SigLIP So400m/14 at 224, Gemma 2B.
  nlohmann::json vj = j.contains("vision_config") && !j["vision_config"].is_null()
                          ? j["vision_config"]
                          : nlohmann::json{{"intermediate_size", 4096}, {"hidden_size", 1152}, {"patch_size", 14},
                                           {"image_size", 224}, {"num_hidden_layers", 27},
                                           {"num_attention_heads", 16}};
  c.vision = siglip::VisionConfig::from_json(vj, file);
  c.vision.validate(file);

  nlohmann::json tj = j.contains("text_config") && !j["text_config"].is_null()
                          ? j["text_config"]
                          : nlohmann::json{{"model_type", "gemma"}, {"hidden_size", 2048}, {"num_hidden_layers", 18},
                                           {"intermediate_size", 16384}, {"num_attention_heads", 8},
                                           {"num_key_value_heads", 1}};
  if (!tj.is_object()) LOUPE_THROW(BadModel, file << ": \"text_config\" is not an object");
  const auto ttype = io::get_or<std::string>(tj, "model_type", "gemma", file);
  if (ttype != "gemma" && ttype != "gemma2")
    LOUPE_THROW(Unsupported, file << ": \"text_config.model_type\" is \"" << ttype
                                  << "\"; PaliGemma runs on Gemma (\"gemma\") or Gemma 2 (\"gemma2\")");
  if (!tj.contains("model_type")) tj["model_type"] = "gemma";
  c.text = nn::DecoderConfig::from_json(tj, file);
  c.text.validate();

  c.image_token_id = io::get_in<int64_t>(j, "image_token_index", c.image_token_id, file, 0, 1 << 24);
  c.image_token_id = io::get_in<int64_t>(j, "image_token_id", c.image_token_id, file, 0, 1 << 24);  // newer name
  c.projection_dim = io::get_in<int64_t>(j, "projection_dim", c.projection_dim, file, 1, 65536);
  if (vj.contains("projection_dim")) c.projection_dim = io::get_in<int64_t>(vj, "projection_dim", c.projection_dim, file, 1, 65536);
  c.num_image_tokens = c.vision.num_patches();
  if (c.projection_dim != c.text.hidden_size)
    LOUPE_THROW(BadModel, file << ": \"projection_dim\" " << c.projection_dim << " differs from text_config.hidden_size "
                               << c.text.hidden_size << " (the projector feeds image features to the text model)");
  if (c.image_token_id < 0 || c.image_token_id >= c.text.vocab_size)
    LOUPE_THROW(BadModel, file << ": \"image_token_index\" " << c.image_token_id << " is outside the text model's vocabulary ("
                               << c.text.vocab_size << ")");
  if (tj.contains("num_image_tokens")) {
    const auto n = io::get_in<int64_t>(tj, "num_image_tokens", c.num_image_tokens, file, 1, 1 << 20);
    if (n != c.num_image_tokens)
      LOUPE_THROW(BadModel, file << ": text_config.num_image_tokens " << n << " differs from (image_size / patch_size)^2 = "
                                 << c.num_image_tokens);
  }

  c.image_height = c.image_width = c.vision.image_size;
  const fs::path pre = fs::path(dir) / "preprocessor_config.json";
  if (fs::exists(pre)) {
    const std::string pf = pre.string();
    const auto p = io::read_json_file(pf);
    if (p.contains("size") && p["size"].is_object()) {
      c.image_height = io::get_in<int64_t>(p["size"], "height", c.image_height, pf, 1, 16384);
      c.image_width = io::get_in<int64_t>(p["size"], "width", c.image_width, pf, 1, 16384);
    }
    c.rescale_factor = io::get_in<double>(p, "rescale_factor", c.rescale_factor, pf, 1e-9, 1);
    c.do_rescale = io::get_or<bool>(p, "do_rescale", c.do_rescale, pf);
    c.do_normalize = io::get_or<bool>(p, "do_normalize", c.do_normalize, pf);
    c.resample = io::get_in<int>(p, "resample", c.resample, pf, 0, 5);
    auto triple = [&](const char* key, std::array<double, 3>& out) {
      if (!p.contains(key) || p[key].is_null()) return;
      if (p[key].is_number()) {
        out.fill(p[key].get<double>());
        return;
      }
      const auto v = io::get_or<std::vector<double>>(p, key, {}, pf);
      if (v.size() != 3) LOUPE_THROW(BadModel, pf << ": \"" << key << "\" has " << v.size() << " values, not 3");
      out = {v[0], v[1], v[2]};
    };
    triple("image_mean", c.image_mean);
    triple("image_std", c.image_std);
    if (c.image_height != c.vision.image_size || c.image_width != c.vision.image_size)
      LOUPE_THROW(BadModel, pf << ": \"size\" " << c.image_width << "x" << c.image_height << " differs from the vision tower's "
                               << "image_size " << c.vision.image_size << " in config.json");
    if (p.contains("image_seq_length")) {
      const auto n = io::get_in<int64_t>(p, "image_seq_length", c.num_image_tokens, pf, 1, 1 << 20);
      if (n != c.num_image_tokens)
        LOUPE_THROW(BadModel, pf << ": \"image_seq_length\" " << n << " differs from the vision tower's " << c.num_image_tokens
                                 << " patches");
    }
    if (c.resample != 2 && c.resample != 3)
      LOUPE_THROW(Unsupported, pf << ": \"resample\" " << c.resample << " (only 2 bilinear and 3 bicubic are supported)");
    for (double s : c.image_std)
      if (s == 0) LOUPE_THROW(BadModel, pf << ": \"image_std\" has a zero");
  }
  return c;
}

}  // namespace loupe::paligemma
