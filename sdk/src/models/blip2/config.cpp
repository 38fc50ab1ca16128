#include "models/blip2/config.h"

#include <filesystem>

#include "core/error.h"
#include "io/config.h"

namespace fs = std::filesystem;

namespace loupe::blip2 {

namespace {

constexpr double kIds = 1 << 24;  // the most token ids a vocabulary may have here

const nlohmann::json& object_or_empty(const nlohmann::json& j, const char* key, const std::string& file) {
  static const nlohmann::json empty = nlohmann::json::object();
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return empty;
  if (!it->is_object()) LOUPE_THROW(BadModel, file << ": \"" << key << "\" is not an object");
  return *it;
}

void check_activation(const std::string& act, const std::string& file, const char* where) {
  static const char* acts[] = {"gelu", "gelu_pytorch_tanh", "gelu_new", "gelu_fast", "quick_gelu", "relu"};
  for (const char* a : acts)
    if (act == a) return;
  LOUPE_THROW(Unsupported, file << ": \"" << where << ".hidden_act\" \"" << act << "\" is not supported");
}

// eos_token_id as one id or a list
std::vector<int64_t> id_list(const nlohmann::json& j, const char* key, std::vector<int64_t> def, const std::string& file) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return def;
  if (it->is_array()) return io::get_in<std::vector<int64_t>>(j, key, {}, file, 0, kIds);
  return {io::get_in<int64_t>(j, key, 0, file, 0, kIds)};
}

}  // namespace

std::string Config::variant() const { return is_t5() ? "blip2-flan-t5" : "blip2-opt"; }

Config Config::load(const std::string& dir) {
  Config c;
  c.dir = dir;
  const std::string file = (fs::path(dir) / "config.json").string();
  const auto j = io::read_json_file(file);
  const auto type = io::get_or<std::string>(j, "model_type", "", file);
  if (type != "blip-2")
    LOUPE_THROW(BadModel, file << ": \"model_type\" is \"" << type << "\", not \"blip-2\"");

  // vision_config (Blip2VisionConfig's defaults)
  const auto& vj = object_or_empty(j, "vision_config", file);
  auto& v = c.vision;
  v.hidden_size = io::get_in<int64_t>(vj, "hidden_size", v.hidden_size, file, 1, 65536);
  v.intermediate_size = io::get_in<int64_t>(vj, "intermediate_size", v.intermediate_size, file, 1, 1 << 20);
  v.num_layers = io::get_in<int64_t>(vj, "num_hidden_layers", v.num_layers, file, 1, 1024);
  v.num_heads = io::get_in<int64_t>(vj, "num_attention_heads", v.num_heads, file, 1, 1024);
  v.image_size = io::get_in<int64_t>(vj, "image_size", v.image_size, file, 1, 16384);
  v.patch_size = io::get_in<int64_t>(vj, "patch_size", v.patch_size, file, 1, 1024);
  v.eps = io::get_in<double>(vj, "layer_norm_eps", v.eps, file, 1e-30, 1);
  v.activation = io::get_or<std::string>(vj, "hidden_act", v.activation, file);
  v.qkv_bias = io::get_or<bool>(vj, "qkv_bias", v.qkv_bias, file);
  check_activation(v.activation, file, "vision_config");
  if (v.hidden_size % v.num_heads)
    LOUPE_THROW(BadModel, file << ": vision_config.hidden_size " << v.hidden_size << " is not a multiple of num_attention_heads "
                               << v.num_heads);
  if (v.image_size % v.patch_size)
    LOUPE_THROW(BadModel, file << ": vision_config.image_size " << v.image_size << " is not a multiple of patch_size "
                               << v.patch_size);

  // qformer_config (Blip2QFormerConfig's defaults)
  const auto& qj = object_or_empty(j, "qformer_config", file);
  auto& q = c.qformer;
  q.hidden_size = io::get_in<int64_t>(qj, "hidden_size", q.hidden_size, file, 1, 65536);
  q.num_layers = io::get_in<int64_t>(qj, "num_hidden_layers", q.num_layers, file, 1, 1024);
  q.num_heads = io::get_in<int64_t>(qj, "num_attention_heads", q.num_heads, file, 1, 1024);
  q.intermediate_size = io::get_in<int64_t>(qj, "intermediate_size", q.intermediate_size, file, 1, 1 << 20);
  q.eps = io::get_in<double>(qj, "layer_norm_eps", q.eps, file, 1e-30, 1);
  q.activation = io::get_or<std::string>(qj, "hidden_act", q.activation, file);
  q.cross_attention_frequency = io::get_in<int64_t>(qj, "cross_attention_frequency", q.cross_attention_frequency, file, 1, 1024);
  check_activation(q.activation, file, "qformer_config");
  // Blip2Config sets it from the vision tower; a config that says otherwise is damaged
  q.encoder_hidden_size = v.hidden_size;
  const auto enc = io::get_in<int64_t>(qj, "encoder_hidden_size", v.hidden_size, file, 1, 65536);
  if (enc != v.hidden_size)
    LOUPE_THROW(BadModel, file << ": qformer_config.encoder_hidden_size " << enc << " differs from vision_config.hidden_size "
                               << v.hidden_size);
  if (q.hidden_size % q.num_heads)
    LOUPE_THROW(BadModel, file << ": qformer_config.hidden_size " << q.hidden_size
                               << " is not a multiple of num_attention_heads " << q.num_heads);
  const auto pet = io::get_or<std::string>(qj, "position_embedding_type", "absolute", file);
  if (pet != "absolute")
    LOUPE_THROW(Unsupported, file << ": qformer_config.position_embedding_type \"" << pet << "\" (only \"absolute\")");
  if (io::get_or<bool>(qj, "use_qformer_text_input", false, file))
    LOUPE_THROW(Unsupported, file << ": qformer_config.use_qformer_text_input is true (InstructBLIP-style text input to the "
                                  << "Q-Former is not supported)");

  // text_config: OPT (Blip2Config's default) or T5
  nlohmann::json tj = object_or_empty(j, "text_config", file);
  c.text_model_type = io::get_or<std::string>(tj, "model_type", "opt", file);
  tj["model_type"] = c.text_model_type;
  c.text_json = tj;
  if (c.text_model_type == "opt") {
    c.text = nn::DecoderConfig::from_json(tj, file);
    c.text_hidden_size = c.text.hidden_size;
    c.text_vocab_size = c.text.vocab_size;
    if (c.text.embed_dim() != c.text.hidden_size)
      LOUPE_THROW(BadModel, file << ": text_config.word_embed_proj_dim " << c.text.embed_dim() << " differs from hidden_size "
                                 << c.text.hidden_size << " (BLIP-2 puts the projected queries among the word embeddings)");
    c.bos_token_id = c.text.bos_token_id;
    c.eos_token_ids = c.text.eos_token_ids;
    c.pad_token_id = c.text.pad_token_id;
  } else if (c.text_model_type == "t5") {
    // T5Config's defaults (t5-small) where text_config says nothing
    c.t5 = nn::T5Config::from_json(tj, file);
    c.text_hidden_size = c.t5.d_model;
    c.text_vocab_size = c.t5.vocab_size;
    c.bos_token_id = -1;
    c.add_bos = false;
    c.eos_token_ids = {c.t5.eos_token_id};
    c.pad_token_id = c.t5.pad_token_id;
    c.decoder_start_token_id = c.t5.decoder_start_token_id;
  } else {
    LOUPE_THROW(Unsupported, file << ": \"text_config.model_type\" is \"" << c.text_model_type
                                  << "\"; BLIP-2 runs on OPT (\"opt\") or Flan-T5 (\"t5\")");
  }

  c.num_query_tokens = io::get_in<int64_t>(j, "num_query_tokens", c.num_query_tokens, file, 1, 4096);
  if (j.contains("image_token_index") && !j["image_token_index"].is_null()) {
    c.image_token_id = io::get_in<int64_t>(j, "image_token_index", 0, file, 0, kIds);
    if (c.image_token_id >= c.text_vocab_size)
      LOUPE_THROW(BadModel, file << ": \"image_token_index\" " << c.image_token_id
                                 << " is outside the language model's vocabulary (" << c.text_vocab_size << ")");
    c.layout = PromptLayout::ImageTokens;
  }

  // processor_config.json: Blip2Processor's num_query_tokens (what expands the image tokens)
  const fs::path proc = fs::path(dir) / "processor_config.json";
  if (fs::exists(proc)) {
    const std::string pf = proc.string();
    const auto p = io::read_json_file(pf);
    if (p.contains("num_query_tokens") && !p["num_query_tokens"].is_null()) {
      const auto n = io::get_in<int64_t>(p, "num_query_tokens", c.num_query_tokens, pf, 1, 4096);
      if (n != c.num_query_tokens)
        LOUPE_THROW(BadModel, pf << ": \"num_query_tokens\" " << n << " differs from config.json's " << c.num_query_tokens);
      if (c.layout != PromptLayout::ImageTokens)
        LOUPE_THROW(BadModel, pf << ": \"num_query_tokens\" is set (image tokens in the prompt) but config.json has no "
                                 << "\"image_token_index\"; hint: download config.json and processor_config.json again");
    }
  }

  // preprocessor_config.json (BlipImageProcessor); absent: the vision tower's size, CLIP's mean/std
  c.image_height = c.image_width = v.image_size;
  const fs::path pre = fs::path(dir) / "preprocessor_config.json";
  if (fs::exists(pre)) {
    const std::string pf = pre.string();
    const auto p = io::read_json_file(pf);
    if (p.contains("size") && p["size"].is_object()) {
      const auto& s = p["size"];
      if (s.contains("shortest_edge") && !s.contains("height")) {
        c.image_height = c.image_width = io::get_in<int64_t>(s, "shortest_edge", c.image_height, pf, 1, 16384);
      } else {
        c.image_height = io::get_in<int64_t>(s, "height", c.image_height, pf, 1, 16384);
        c.image_width = io::get_in<int64_t>(s, "width", c.image_width, pf, 1, 16384);
      }
    } else if (p.contains("size") && p["size"].is_number()) {
      c.image_height = c.image_width = io::get_in<int64_t>(p, "size", c.image_height, pf, 1, 16384);
    }
    c.do_resize = io::get_or<bool>(p, "do_resize", c.do_resize, pf);
    c.rescale_factor = io::get_in<double>(p, "rescale_factor", c.rescale_factor, pf, 1e-9, 1);
    c.do_rescale = io::get_or<bool>(p, "do_rescale", c.do_rescale, pf);
    c.do_normalize = io::get_or<bool>(p, "do_normalize", c.do_normalize, pf);
    c.resample = io::get_in<int>(p, "resample", c.resample, pf, 0, 5);
    auto triple = [&](const char* key, std::array<double, 3>& out, double lo) {
      if (!p.contains(key) || p[key].is_null()) return;
      if (p[key].is_number()) {
        out.fill(io::get_in<double>(p, key, 0, pf, lo, 1e6));
        return;
      }
      const auto vals = io::get_in<std::vector<double>>(p, key, {}, pf, lo, 1e6);
      if (vals.size() != 3) LOUPE_THROW(BadModel, pf << ": \"" << key << "\" has " << vals.size() << " values, not 3");
      out = {vals[0], vals[1], vals[2]};
    };
    triple("image_mean", c.image_mean, -1e6);
    triple("image_std", c.image_std, 1e-12);
    if (c.resample != 2 && c.resample != 3)
      LOUPE_THROW(Unsupported, pf << ": \"resample\" " << c.resample << " (only 2 bilinear and 3 bicubic are supported)");
    if (c.image_height != v.image_size || c.image_width != v.image_size)
      LOUPE_THROW(BadModel, pf << ": \"size\" " << c.image_width << "x" << c.image_height << " differs from the vision tower's "
                               << "image_size " << v.image_size << " in config.json");
  }

  // tokenizer_config.json: OPT's tokenizer puts its bos_token ("</s>") first (add_bos_token)
  const fs::path tc = fs::path(dir) / "tokenizer_config.json";
  if (fs::exists(tc) && !c.is_t5()) {
    const std::string tf = tc.string();
    const auto t = io::read_json_file(tf);
    c.add_bos = io::get_or<bool>(t, "add_bos_token", c.add_bos, tf);
    if (t.contains("bos_token") && t["bos_token"].is_string()) c.bos_token = t["bos_token"].get<std::string>();
    if (t.contains("bos_token") && t["bos_token"].is_object())
      c.bos_token = io::get_or<std::string>(t["bos_token"], "content", "", tf);
  }

  // generation_config.json: the defaults of generate()
  const fs::path gen = fs::path(dir) / "generation_config.json";
  if (fs::exists(gen)) {
    const std::string gf = gen.string();
    const auto g = io::read_json_file(gf);
    c.eos_token_ids = id_list(g, "eos_token_id", c.eos_token_ids, gf);
    c.pad_token_id = io::get_in<int64_t>(g, "pad_token_id", c.pad_token_id, gf, -1, kIds);
    if (!c.is_t5()) c.bos_token_id = io::get_in<int64_t>(g, "bos_token_id", c.bos_token_id, gf, -1, kIds);
    c.decoder_start_token_id = io::get_in<int64_t>(g, "decoder_start_token_id", c.decoder_start_token_id, gf, 0, kIds);
    if (g.contains("max_new_tokens") && !g["max_new_tokens"].is_null())
      c.max_new_tokens = io::get_in<int>(g, "max_new_tokens", c.max_new_tokens, gf, 1, 1 << 20);
    else if (g.contains("max_length") && !g["max_length"].is_null())
      c.max_new_tokens = io::get_in<int>(g, "max_length", c.max_new_tokens, gf, 1, 1 << 20);
    c.num_beams = io::get_in<int>(g, "num_beams", c.num_beams, gf, 1, 64);
    c.no_repeat_ngram_size = io::get_in<int>(g, "no_repeat_ngram_size", c.no_repeat_ngram_size, gf, 0, 64);
    c.length_penalty = io::get_in<double>(g, "length_penalty", c.length_penalty, gf, -100, 100);
    c.repetition_penalty = io::get_in<double>(g, "repetition_penalty", c.repetition_penalty, gf, 1e-6, 100);
  }
  for (auto e : c.eos_token_ids)
    if (e >= c.text_vocab_size)
      LOUPE_THROW(BadModel, dir << ": eos_token_id " << e << " is outside the language model's vocabulary (" << c.text_vocab_size
                                << ")");
  return c;
}

}  // namespace loupe::blip2
