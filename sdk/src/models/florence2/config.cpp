#include "models/florence2/config.h"

#include <filesystem>

#include "io/config.h"

namespace fs = std::filesystem;

namespace loupe::florence2 {

namespace {
template <class T>
void read(const nlohmann::json& j, const char* key, T& out, const std::string& file) {
  out = io::get_or<T>(j, key, out, file);
}
// A number (or list of numbers) that must lie in [lo, hi] (io::get_in).
template <class T>
void read(const nlohmann::json& j, const char* key, T& out, const std::string& file, double lo, double hi) {
  out = io::get_in<T>(j, key, out, file, lo, hi);
}
constexpr double kIds = 1 << 24;  // token ids and vocabulary sizes
}  // namespace

std::string image_processor_settings(const std::string& dir, nlohmann::json* out) {
  const auto proc = (fs::path(dir) / "processor_config.json").string();
  if (fs::exists(proc)) {
    const auto p = io::read_json_file(proc);
    if (p.contains("image_processor")) {
      if (!p["image_processor"].is_object())
        LOUPE_THROW(BadModel, proc << ": \"image_processor\" is not an object of image processor settings");
      *out = p["image_processor"];
      return proc + " (image_processor)";
    }
  }
  const auto pre = (fs::path(dir) / "preprocessor_config.json").string();
  if (!fs::exists(pre)) return "";
  *out = io::read_json_file(pre);
  return pre;
}

int Config::image_tokens() const {
  int side = image_size;
  for (size_t i = 0; i < vision.patch_stride.size(); ++i) side = (side + 2 * vision.patch_padding[i] - vision.patch_size[i]) / vision.patch_stride[i] + 1;
  return side * side + 1;
}

Config Config::load(const std::string& dir) {
  Config c;
  const std::string file = (fs::path(dir) / "config.json").string();
  const auto j = io::read_json_file(file);
  c.model_type = io::get_or<std::string>(j, "model_type", "", file);
  read(j, "image_token_id", c.image_token_id, file, -1, kIds);
  if (j.contains("vision_config") && j["vision_config"].is_object()) {
    const auto& v = j["vision_config"];
    auto& vc = c.vision;
    if (v.contains("dim_embed")) {  // original remote-code config
      c.original_layout = true;
      c.image_token_id = -1;
      read(v, "dim_embed", vc.embed_dim, file, 1, 65536);
      if (v.contains("visual_temporal_embedding") && v["visual_temporal_embedding"].is_object())
        read(v["visual_temporal_embedding"], "max_temporal_embeddings", vc.max_temporal_embeddings, file, 1, 100000);
      if (v.contains("image_pos_embed") && v["image_pos_embed"].is_object())
        read(v["image_pos_embed"], "max_pos_embeddings", vc.max_position_embeddings, file, 1, 100000);
    }
    read(v, "in_channels", vc.in_channels, file, 1, 16);
    read(v, "depths", vc.depths, file, 0, 256);
    read(v, "patch_size", vc.patch_size, file, 1, 64);
    read(v, "patch_stride", vc.patch_stride, file, 1, 64);
    read(v, "patch_padding", vc.patch_padding, file, 0, 64);
    read(v, "patch_prenorm", vc.patch_prenorm, file);
    read(v, "embed_dim", vc.embed_dim, file, 1, 65536);
    read(v, "num_heads", vc.num_heads, file, 1, 1024);
    read(v, "num_groups", vc.num_groups, file, 1, 1024);
    read(v, "window_size", vc.window_size, file, 1, 1024);
    read(v, "mlp_ratio", vc.mlp_ratio, file, 0.01, 64);
    read(v, "qkv_bias", vc.qkv_bias, file);
    read(v, "projection_dim", vc.projection_dim, file, 1, 65536);
    read(v, "max_temporal_embeddings", vc.max_temporal_embeddings, file, 1, 100000);
    read(v, "max_position_embeddings", vc.max_position_embeddings, file, 1, 100000);
  }
  const size_t stages = c.vision.embed_dim.size();
  for (auto n : {c.vision.depths.size(), c.vision.num_heads.size(), c.vision.num_groups.size(), c.vision.patch_size.size(),
                 c.vision.patch_stride.size(), c.vision.patch_padding.size(), c.vision.patch_prenorm.size()})
    if (n != stages || stages == 0)
      LOUPE_THROW(BadModel, file << ": vision_config lists differ in length (embed_dim has " << stages << " stages)");
  for (size_t i = 0; i < stages; ++i)
    if (c.vision.num_heads[i] <= 0 || c.vision.num_groups[i] <= 0 || c.vision.embed_dim[i] % c.vision.num_heads[i] ||
        c.vision.embed_dim[i] % c.vision.num_groups[i])
      LOUPE_THROW(BadModel, file << ": vision stage " << i << ": embed_dim " << c.vision.embed_dim[i]
                                 << " is not divisible by its heads/groups");
  if (j.contains("text_config") && j["text_config"].is_object()) {
    const auto& t = j["text_config"];
    auto& tc = c.text;
    read(t, "vocab_size", tc.vocab_size, file, 1, kIds);
    read(t, "d_model", tc.d_model, file, 1, 65536);
    read(t, "encoder_layers", tc.encoder_layers, file, 1, 1024);
    read(t, "decoder_layers", tc.decoder_layers, file, 1, 1024);
    read(t, "encoder_attention_heads", tc.encoder_attention_heads, file, 1, 1024);
    read(t, "decoder_attention_heads", tc.decoder_attention_heads, file, 1, 1024);
    read(t, "encoder_ffn_dim", tc.encoder_ffn_dim, file, 1, 1048576);
    read(t, "decoder_ffn_dim", tc.decoder_ffn_dim, file, 1, 1048576);
    read(t, "max_position_embeddings", tc.max_position_embeddings, file, 1, 1048576);
    read(t, "scale_embedding", tc.scale_embedding, file);
    read(t, "activation_function", tc.activation_function, file);
    read(t, "pad_token_id", tc.pad_token_id, file, -1, kIds);
    read(t, "bos_token_id", tc.bos_token_id, file, -1, kIds);
    read(t, "eos_token_id", tc.eos_token_id, file, -1, kIds);
    read(t, "decoder_start_token_id", tc.decoder_start_token_id, file, 0, kIds);
    read(t, "forced_bos_token_id", tc.forced_bos_token_id, file, -1, kIds);
    read(t, "forced_eos_token_id", tc.forced_eos_token_id, file, -1, kIds);
  }
  for (const auto& [key, id] : {std::pair<const char*, int>{"pad_token_id", c.text.pad_token_id},
                                {"bos_token_id", c.text.bos_token_id}, {"eos_token_id", c.text.eos_token_id},
                                {"decoder_start_token_id", c.text.decoder_start_token_id},
                                {"forced_bos_token_id", c.text.forced_bos_token_id},
                                {"forced_eos_token_id", c.text.forced_eos_token_id}})
    if (id >= c.text.vocab_size)
      LOUPE_THROW(BadModel, file << ": \"" << key << "\" is " << id << ", not below vocab_size " << c.text.vocab_size);
  if (c.text.d_model % c.text.encoder_attention_heads || c.text.d_model % c.text.decoder_attention_heads)
    LOUPE_THROW(BadModel, file << ": d_model " << c.text.d_model << " is not divisible by the attention heads");
  if (c.text.activation_function != "gelu")
    LOUPE_THROW(Unsupported, file << ": activation_function '" << c.text.activation_function << "' (only gelu)");
  nlohmann::json p;
  const std::string pre = image_processor_settings(dir, &p);
  if (!pre.empty()) {
    if (p.contains("size") && p["size"].is_object()) {
      c.image_size = io::get_in<int>(p["size"], "height", c.image_size, pre, 32, 4096);
      const int w = io::get_in<int>(p["size"], "width", c.image_size, pre, 32, 4096);
      if (w != c.image_size) LOUPE_THROW(Unsupported, pre << ": non-square input size " << w << "x" << c.image_size);
    } else if (p.contains("crop_size") && p["crop_size"].is_object()) {
      c.image_size = io::get_in<int>(p["crop_size"], "height", c.image_size, pre, 32, 4096);
    }
    read(p, "image_mean", c.image_mean, pre, -10, 10);
    read(p, "image_std", c.image_std, pre, 1e-06, 100);
    read(p, "rescale_factor", c.rescale_factor, pre, 1e-09, 1);
  }
  const auto proc = fs::path(dir) / "processor_config.json";
  if (fs::exists(proc)) {
    const auto p = io::read_json_file(proc.string());
    if (p.contains("post_processor_config") && p["post_processor_config"].is_object()) {
      const auto& pp = p["post_processor_config"];
      if (pp.contains("phrase_grounding") && pp["phrase_grounding"].is_object())
        read(pp["phrase_grounding"], "banned_grounding_tokens", c.banned_grounding_tokens, proc.string());
    }
  }
  // Generation settings: generation_config.json when the checkpoint has one, else the text config
  // (transformers derives a generation config from the model config only when the file is absent).
  auto read_generation = [&](const nlohmann::json& g, const std::string& f) {
    read(g, "num_beams", c.num_beams, f, 1, 64);
    read(g, "no_repeat_ngram_size", c.no_repeat_ngram_size, f, 0, 64);
    read(g, "length_penalty", c.length_penalty, f, -100, 100);
    if (g.contains("early_stopping") && !g["early_stopping"].is_null()) {
      const auto& e = g["early_stopping"];
      if (e.is_boolean()) c.early_stopping = e.get<bool>() ? EarlyStopping::AllFinished : EarlyStopping::Heuristic;
      else if (e.is_string() && e.get<std::string>() == "never") c.early_stopping = EarlyStopping::Never;
      else LOUPE_THROW(BadModel, f << ": early_stopping must be true, false or \"never\", not " << e.dump());
    }
  };
  const auto gen = fs::path(dir) / "generation_config.json";
  if (fs::exists(gen)) read_generation(io::read_json_file(gen.string()), gen.string());
  else if (j.contains("text_config") && j["text_config"].is_object()) read_generation(j["text_config"], file);
  if (c.image_size < 32 || c.image_size > 4096) LOUPE_THROW(BadModel, pre << ": image size " << c.image_size << " is out of range");
  return c;
}

}  // namespace loupe::florence2
