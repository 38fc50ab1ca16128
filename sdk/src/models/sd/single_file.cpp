#include "models/sd/single_file.h"

#include <filesystem>
#include <optional>

#include "core/error.h"
#include "io/config.h"
#include "models/clip/clip_vocab.h"

namespace fs = std::filesystem;

namespace loupe::sd {

namespace {

const std::string kUNet = "model.diffusion_model.";
const std::string kVae = "first_stage_model.";
const std::string kClip = "cond_stage_model.transformer.";   // SD 1.x: transformers' CLIPTextModel names
const std::string kOpenClip = "cond_stage_model.model.";     // SD 2.x: OpenCLIP names
// SDXL (sgm's conditioner): CLIP ViT-L in transformers' names, OpenCLIP ViT-bigG in OpenCLIP's; the
// refiner has OpenCLIP-G alone, as embedder 0.
const std::string kXlClip = "conditioner.embedders.0.transformer.";
const std::string kXlOpenClip = "conditioner.embedders.1.model.";
const std::string kXlRefinerOpenClip = "conditioner.embedders.0.model.";

bool is_checkpoint_file(const std::string& path) {
  const auto ext = fs::path(path).extension().string();
  return fs::is_regular_file(path) && (ext == ".safetensors" || ext == ".ckpt" || ext == ".bin" || ext == ".pt");
}

// Splits "a.b.c" after `prefix` into its dot-separated parts.
std::vector<std::string> parts_after(const std::string& name, const std::string& prefix) {
  std::vector<std::string> out;
  size_t p = prefix.size();
  while (p <= name.size()) {
    const size_t q = name.find('.', p);
    out.push_back(name.substr(p, q == std::string::npos ? std::string::npos : q - p));
    if (q == std::string::npos) break;
    p = q + 1;
  }
  return out;
}

std::string join(const std::vector<std::string>& v, size_t from) {
  std::string s;
  for (size_t i = from; i < v.size(); ++i) s += (s.empty() ? "" : ".") + v[i];
  return s;
}

// diffusers ResnetBlock2D names -> LDM ResBlock names (UNet)
std::string unet_resnet_inner(const std::string& rest) {
  static const std::vector<std::pair<std::string, std::string>> m{
      {"norm1.", "in_layers.0."}, {"conv1.", "in_layers.2."}, {"norm2.", "out_layers.0."},
      {"conv2.", "out_layers.3."}, {"time_emb_proj.", "emb_layers.1."}, {"conv_shortcut.", "skip_connection."}};
  for (const auto& [a, b] : m)
    if (rest.rfind(a, 0) == 0) return b + rest.substr(a.size());
  return rest;
}

nlohmann::json reference_unet_config(bool sd2, bool inpaint) {
  nlohmann::json j = {{"in_channels", inpaint ? 9 : 4}, {"out_channels", 4}, {"block_out_channels", {320, 640, 1280, 1280}},
                      {"layers_per_block", 2}, {"norm_num_groups", 32}, {"cross_attention_dim", sd2 ? 1024 : 768},
                      {"down_block_types", {"CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"}},
                      {"up_block_types", {"UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"}},
                      {"sample_size", sd2 && !inpaint ? 96 : 64}};
  if (sd2) {
    j["attention_head_dim"] = {5, 10, 20, 20};
    j["use_linear_projection"] = true;
  } else {
    j["attention_head_dim"] = 8;
  }
  return j;
}

nlohmann::json reference_vae_config(bool xl) {
  return {{"block_out_channels", {128, 256, 512, 512}}, {"layers_per_block", 2}, {"latent_channels", 4},
          {"norm_num_groups", 32}, {"scaling_factor", xl ? 0.13025 : 0.18215}, {"sample_size", xl ? 1024 : 512},
          {"force_upcast", true}};
}

// stabilityai/stable-diffusion-xl-base-1.0, -refiner-1.0 and diffusers/stable-diffusion-xl-1.0-inpainting-0.1
nlohmann::json reference_xl_unet_config(bool refiner, bool inpaint) {
  if (refiner)
    return {{"in_channels", 4}, {"out_channels", 4}, {"block_out_channels", {384, 768, 1536, 1536}}, {"layers_per_block", 2},
            {"attention_head_dim", {6, 12, 12, 6}}, {"cross_attention_dim", 1280}, {"transformer_layers_per_block", 4},
            {"down_block_types", {"DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"}},
            {"up_block_types", {"UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"}},
            {"use_linear_projection", true}, {"addition_embed_type", "text_time"}, {"addition_time_embed_dim", 256},
            {"projection_class_embeddings_input_dim", 2560}, {"sample_size", 128}, {"norm_num_groups", 32}};
  return {{"in_channels", inpaint ? 9 : 4}, {"out_channels", 4}, {"block_out_channels", {320, 640, 1280}}, {"layers_per_block", 2},
          {"attention_head_dim", {5, 10, 20}}, {"cross_attention_dim", 2048}, {"transformer_layers_per_block", {1, 2, 10}},
          {"down_block_types", {"DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"}},
          {"up_block_types", {"CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"}},
          {"use_linear_projection", true}, {"addition_embed_type", "text_time"}, {"addition_time_embed_dim", 256},
          {"projection_class_embeddings_input_dim", 2816}, {"sample_size", 128}, {"norm_num_groups", 32}};
}

// OpenCLIP ViT-bigG as transformers' CLIPTextModelWithProjection (SDXL's text_encoder_2)
nlohmann::json reference_bigg_config(int64_t layers) {
  return {{"vocab_size", 49408}, {"hidden_size", 1280}, {"intermediate_size", 5120}, {"num_hidden_layers", layers},
          {"num_attention_heads", 20}, {"max_position_embeddings", 77}, {"hidden_act", "gelu"}, {"projection_dim", 1280},
          {"architectures", {"CLIPTextModelWithProjection"}}};
}

nlohmann::json reference_clip_config(bool sd2, int64_t layers) {
  if (sd2)
    return {{"vocab_size", 49408}, {"hidden_size", 1024}, {"intermediate_size", 4096}, {"num_hidden_layers", layers},
            {"num_attention_heads", 16}, {"max_position_embeddings", 77}, {"hidden_act", "gelu"}};
  return {{"vocab_size", 49408}, {"hidden_size", 768}, {"intermediate_size", 3072}, {"num_hidden_layers", layers},
          {"num_attention_heads", 12}, {"max_position_embeddings", 77}, {"hidden_act", "quick_gelu"}};
}

int64_t count_layers(const io::Checkpoint& ck, const std::string& prefix) {
  int64_t n = 0;
  while (ck.has(prefix + std::to_string(n) + (std::string(prefix).find("resblocks") != std::string::npos ? ".ln_1.weight" : ".layer_norm1.weight")))
    ++n;
  return n;
}

// Where find_clip_vocab looks for a single file's CLIP vocabulary: the sidecar's tokenizer/ first,
// then the diffusers folders next to the file and in the models folder.
std::string look_for_tokenizer(const fs::path& file, const fs::path& sidecar, const std::string& models_dir,
                               std::vector<std::string>* looked) {
  std::vector<std::string> folders{file.parent_path().string()};
  if (!models_dir.empty() && fs::path(models_dir) != file.parent_path()) folders.push_back(models_dir);
  return clip::find_clip_vocab({(sidecar / "tokenizer").string()}, folders, looked);
}

// The CLIP vocabulary: the sidecar's tokenizer/, a diffusers folder next to the file or in the
// models folder, Loupe's copy, the Hugging Face cache; else fetched once into Loupe's copy (not in
// offline mode). Looked up before any weight is read.
std::string find_tokenizer(const fs::path& file, const fs::path& sidecar, const std::string& models_dir) {
  std::vector<std::string> looked;
  const std::string found = look_for_tokenizer(file, sidecar, models_dir, &looked);
  if (!found.empty()) return found;
  std::string fetch_error;
  try {
    return clip::fetch_clip_vocab();
  } catch (const std::exception& e) {
    fetch_error = e.what();
  }
  std::string where;
  for (const auto& l : looked) where += (where.empty() ? "" : ", ") + l;
  LOUPE_THROW(NotFound, file.string() << ": a single-file checkpoint carries no tokenizer, and no CLIP tokenizer "
                                      << "(vocab.json + merges.txt) was found (looked in: " << where << "); "
                                      << fetch_error << "; hint: " << clip::clip_vocab_hint()
                                      << ", or a sidecar folder '" << sidecar.filename().string()
                                      << "/tokenizer' next to the file");
}

}  // namespace

std::string detect_single_file(const std::string& path) {
  if (!is_checkpoint_file(path)) return "";
  try {
    auto ck = io::Checkpoint::open(path);
    const std::string in = std::string(kUNet) + "input_blocks.0.0.weight";
    if (!ck.has(in)) return "";
    const bool inpaint = ck.shape(in).size() == 4 && ck.shape(in)[1] == 9;
    // SDXL: the UNet's added conditioning (label_emb = diffusers' add_embedding)
    if (ck.has(std::string(kUNet) + "label_emb.0.0.weight")) {
      if (ck.has(kXlRefinerOpenClip + "positional_embedding")) return "sdxl-refiner";  // OpenCLIP-G alone
      return inpaint ? "sdxl-inpainting" : "sdxl";
    }
    const bool sd2 = ck.has(std::string(kOpenClip) + "transformer.resblocks.0.attn.in_proj_weight");
    return std::string(sd2 ? "sd2" : "sd15") + (inpaint ? "-inpainting" : "");
  } catch (const Error&) {
    return "";
  }
}

io::KeyMap unet_single_file_keymap(const UNetConfig& c) {
  const size_t n = c.block_out_channels.size();
  for (size_t i = 1; i < n; ++i)
    if (c.layers_per_block[i] != c.layers_per_block[0])
      LOUPE_THROW(Unsupported, "single-file UNets need the same number of layers in every block");
  const int64_t L = c.layers_per_block[0];
  std::vector<bool> up_attn;
  for (const auto& t : c.up_block_types) up_attn.push_back(t == "CrossAttnUpBlock2D");
  io::KeyMap km;
  km.function([=](const std::string& name) -> std::string {
    static const std::map<std::string, std::string> top{
        {"time_embedding.linear_1.", "time_embed.0."}, {"time_embedding.linear_2.", "time_embed.2."},
        {"conv_in.", "input_blocks.0.0."}, {"conv_norm_out.", "out.0."}, {"conv_out.", "out.2."},
        {"add_embedding.linear_1.", "label_emb.0.0."}, {"add_embedding.linear_2.", "label_emb.0.2."}};  // SDXL
    for (const auto& [a, b] : top)
      if (name.rfind(a, 0) == 0) return kUNet + b + name.substr(a.size());
    const auto p = parts_after(name, "");
    if (p.size() < 4) return "";
    if (p[0] == "down_blocks") {
      const int64_t i = std::stoll(p[1]), j = std::stoll(p[3]);
      if (p[2] == "resnets")
        return kUNet + "input_blocks." + std::to_string(1 + i * (L + 1) + j) + ".0." + unet_resnet_inner(join(p, 4));
      if (p[2] == "attentions") return kUNet + "input_blocks." + std::to_string(1 + i * (L + 1) + j) + ".1." + join(p, 4);
      if (p[2] == "downsamplers")  // downsamplers.0.conv.* -> op.*
        return kUNet + "input_blocks." + std::to_string(1 + i * (L + 1) + L) + ".0.op." + join(p, 5);
    } else if (p[0] == "up_blocks") {
      const int64_t i = std::stoll(p[1]), j = std::stoll(p[3]);
      if (p[2] == "resnets") return kUNet + "output_blocks." + std::to_string(i * (L + 1) + j) + ".0." + unet_resnet_inner(join(p, 4));
      if (p[2] == "attentions") return kUNet + "output_blocks." + std::to_string(i * (L + 1) + j) + ".1." + join(p, 4);
      if (p[2] == "upsamplers")
        return kUNet + "output_blocks." + std::to_string(i * (L + 1) + L) + "." + (up_attn[i] ? "2." : "1.") + join(p, 4);
    } else if (p[0] == "mid_block") {
      const int64_t j = std::stoll(p[2]);
      if (p[1] == "resnets") return kUNet + "middle_block." + std::to_string(2 * j) + "." + unet_resnet_inner(join(p, 3));
      if (p[1] == "attentions") return kUNet + "middle_block.1." + join(p, 3);
    }
    return "";
  });
  return km;
}

io::KeyMap vae_single_file_keymap(const VaeConfig& c) {
  const int64_t n = static_cast<int64_t>(c.block_out_channels.size());
  io::KeyMap km;
  km.function([=](const std::string& name) -> std::string {
    auto p = parts_after(name, "");
    auto inner = [](std::string rest) {
      if (rest.rfind("conv_shortcut.", 0) == 0) return "nin_shortcut." + rest.substr(14);
      return rest;
    };
    if (p.size() < 2) return "";
    const std::string coder = p[0];  // encoder / decoder
    if (p[0] == "quant_conv" || p[0] == "post_quant_conv") return kVae + name;
    if (p[1] == "conv_norm_out") return kVae + coder + ".norm_out." + join(p, 2);
    if (p[1] == "conv_in" || p[1] == "conv_out") return kVae + name;
    if (p[1] == "down_blocks" && p.size() > 4) {
      if (p[3] == "resnets") return kVae + coder + ".down." + p[2] + ".block." + p[4] + "." + inner(join(p, 5));
      if (p[3] == "downsamplers") return kVae + coder + ".down." + p[2] + ".downsample." + join(p, 5);
    }
    if (p[1] == "up_blocks" && p.size() > 4) {
      const std::string ldm = std::to_string(n - 1 - std::stoll(p[2]));
      if (p[3] == "resnets") return kVae + coder + ".up." + ldm + ".block." + p[4] + "." + inner(join(p, 5));
      if (p[3] == "upsamplers") return kVae + coder + ".up." + ldm + ".upsample." + join(p, 5);
    }
    if (p[1] == "mid_block" && p.size() > 4) {
      if (p[2] == "resnets") return kVae + coder + ".mid.block_" + std::to_string(std::stoll(p[3]) + 1) + "." + inner(join(p, 4));
      if (p[2] == "attentions") {
        static const std::map<std::string, std::string> attn{
            {"group_norm", "norm"}, {"to_q", "q"}, {"to_k", "k"}, {"to_v", "v"}, {"to_out", "proj_out"}};
        const std::string what = p[4];
        const auto it = attn.find(what);
        if (it == attn.end()) return "";
        const std::string leaf = p.back();  // weight / bias
        return kVae + coder + ".mid.attn_1." + it->second + "." + leaf;
      }
    }
    return "";
  });
  // the LDM VAE attention uses 1x1 convolutions: [C, C, 1, 1] -> [C, C]
  km.transform(R"(mid_block\.attentions\.0\.(to_q|to_k|to_v|to_out\.0)\.weight$)", [](const torch::Tensor& t) {
    return t.dim() == 4 ? t.flatten(1) : t;
  });
  return km;
}

io::KeyMap clip_single_file_keymap(bool open_clip, int64_t hidden, const std::string& prefix) {
  io::KeyMap km;
  if (!open_clip) {
    km.prefix("text_model.", (prefix.empty() ? kClip : prefix) + "text_model.");
    return km;
  }
  const std::string m = prefix.empty() ? kOpenClip : prefix;
  km.function([m](const std::string& name) -> std::string {
    if (name == "text_model.embeddings.token_embedding.weight") return m + "token_embedding.weight";
    if (name == "text_model.embeddings.position_embedding.weight") return m + "positional_embedding";
    if (name.rfind("text_model.final_layer_norm.", 0) == 0) return m + "ln_final." + name.substr(28);
    if (name == "text_projection.weight") return m + "text_projection";  // SDXL's encoder 2: [width, projection]
    const std::string pre = "text_model.encoder.layers.";
    if (name.rfind(pre, 0) != 0) return "";
    auto p = parts_after(name, pre);  // N, module..., leaf
    const std::string blk = m + "transformer.resblocks." + p[0] + ".";
    const std::string rest = join(p, 1);
    static const std::vector<std::pair<std::string, std::string>> t{
        {"self_attn.out_proj.", "attn.out_proj."}, {"layer_norm1.", "ln_1."}, {"layer_norm2.", "ln_2."},
        {"mlp.fc1.", "mlp.c_fc."}, {"mlp.fc2.", "mlp.c_proj."}};
    for (const auto& [a, b] : t)
      if (rest.rfind(a, 0) == 0) return blk + b + rest.substr(a.size());
    for (const char* q : {"q_proj", "k_proj", "v_proj"})
      if (rest.rfind(std::string("self_attn.") + q + ".", 0) == 0) return blk + "attn.in_proj_" + p.back();
    return "";
  });
  // OpenCLIP multiplies by text_projection (x @ P); a Linear keeps P transposed (always: bigG's is square)
  km.transform(R"(^text_projection\.weight$)", [](const torch::Tensor& t) { return t.t().contiguous(); });
  // q, k, v are one fused in_proj in OpenCLIP: take our third of it
  for (int part = 0; part < 3; ++part) {
    const char* q = part == 0 ? "q_proj" : part == 1 ? "k_proj" : "v_proj";
    km.transform(std::string(R"(self_attn\.)") + q + R"(\.(weight|bias)$)", [part, hidden](const torch::Tensor& t) {
      return t.size(0) == 3 * hidden ? t.slice(0, part * hidden, (part + 1) * hidden) : t;
    });
  }
  return km;
}

void check_components(const SingleFile& c, const std::string& where) {
  // SDXL's refiner has encoder 2 alone
  const int64_t width = (c.text ? c.text->cfg.hidden_size : 0) + (c.text2 ? c.text2->cfg.hidden_size : 0);
  for (int64_t d : c.unet->cfg.cross_attention_dim)
    if (d != width)
      LOUPE_THROW(BadModel, where << ": the UNet attends to " << d << "-wide text features but the text encoder"
                                  << (c.text && c.text2 ? "s give " : " gives ") << width);
  if (c.unet->cfg.text_time != static_cast<bool>(c.text2))
    LOUPE_THROW(BadModel, where << (c.text2 ? ": a second text encoder, but the UNet takes no pooled text embedding"
                                            : ": the UNet (addition_embed_type text_time) needs a second text encoder "
                                              "(text_encoder_2, CLIPTextModelWithProjection)"));
  if (c.text2) {
    const auto& u = c.unet->cfg;
    const int64_t pooled = c.text2->cfg.with_projection ? c.text2->cfg.projection_dim : c.text2->cfg.hidden_size;
    // 6 time ids (original size, crop top-left, target size) or the refiner's 5 (aesthetic score
    // instead of the target size)
    if (u.projection_class_embeddings_input_dim != pooled + 6 * u.addition_time_embed_dim &&
        u.projection_class_embeddings_input_dim != pooled + 5 * u.addition_time_embed_dim)
      LOUPE_THROW(BadModel, where << ": the UNet's added conditioning takes " << u.projection_class_embeddings_input_dim
                                  << " inputs, not the " << pooled << "-wide pooled text embedding and 6 (or the refiner's 5) time ids of "
                                  << u.addition_time_embed_dim);
    if (c.tokenizer2.vocab_size() > static_cast<size_t>(c.text2->cfg.vocab_size))
      LOUPE_THROW(BadModel, where << ": tokenizer_2 has " << c.tokenizer2.vocab_size() << " tokens, text_encoder_2 "
                                  << c.text2->cfg.vocab_size);
  }
  if (c.unet->cfg.out_channels != c.vae->cfg.latent_channels)
    LOUPE_THROW(BadModel, where << ": the UNet makes " << c.unet->cfg.out_channels << " latent channels, the VAE has "
                                << c.vae->cfg.latent_channels);
  if (c.text && c.tokenizer.vocab_size() > static_cast<size_t>(c.text->cfg.vocab_size))
    LOUPE_THROW(BadModel, where << ": the tokenizer has " << c.tokenizer.vocab_size() << " tokens, the text encoder "
                                << c.text->cfg.vocab_size);
}

namespace {

// A folder beside a single file that holds a diffusers component with its weights (config.json and
// model.safetensors / diffusion_pytorch_model.safetensors or a variant): what supplies a part the file lacks.
bool has_weights(const fs::path& dir) {
  return fs::exists(dir / "config.json") && !io::Checkpoint::weights_file(dir.string()).empty();
}

// One text encoder of a single file: where it sits in the file (or, when the file lacks it, the
// sidecar's diffusers folder with its weights).
struct TextPart {
  std::string prefix;   // in the file
  bool open_clip;       // OpenCLIP names (fused in_proj, resblocks) or transformers' (text_model.*)
  std::string sub;      // text_encoder / text_encoder_2: the diffusers folder name
  std::string what;     // for messages
  bool in_file = false;
};

}  // namespace

SingleFile read_single_file(const std::string& path, const torch::Device& device, torch::ScalarType dtype,
                            const std::string& models_dir) {
  const std::string variant = detect_single_file(path);
  if (variant.empty())
    LOUPE_THROW(BadModel, path << ": not a Stable Diffusion 1.x/2.x single-file checkpoint, nor an SDXL one (no '" << kUNet
                               << "input_blocks.0.0.weight'); SD3 and FLUX single files are not supported yet");
  auto ck = io::Checkpoint::open(path);  // headers only
  const bool xl = variant.rfind("sdxl", 0) == 0, refiner = variant == "sdxl-refiner";
  const bool sd2 = variant.rfind("sd2", 0) == 0, inpaint = variant.find("inpainting") != std::string::npos;
  const fs::path file(path);
  const fs::path sidecar = file.parent_path() / file.stem();
  const bool has_sidecar = fs::exists(sidecar / "unet" / "config.json");
  auto cfg = [&](const std::string& sub, const std::string& name, const nlohmann::json& fallback) {
    const auto f = (sidecar / sub / name).string();
    return fs::exists(f) ? io::read_json_file(f) : fallback;
  };
  const std::string where = has_sidecar ? (sidecar / "unet" / "config.json").string()
                                        : path + (xl ? " (reference SDXL config)" : " (reference SD config)");
  const std::string stem = file.stem().string();
  auto supply_hint = [&](const std::string& sub, const std::string& example) {
    return "hint: put the model's " + sub + "/ folder in the diffusers layout (config.json and its weights, e.g. " + example +
           ") into '" + (sidecar / sub).string() + "', or use a checkpoint that includes it";
  };

  // The text encoders: SD 1.x/2.x one, SDXL two (CLIP-L, OpenCLIP-G), the refiner OpenCLIP-G alone.
  std::vector<TextPart> parts;
  if (!xl) parts.push_back({sd2 ? kOpenClip : kClip, sd2, "text_encoder", sd2 ? "the OpenCLIP text encoder" : "the CLIP text encoder"});
  else if (refiner) parts.push_back({kXlRefinerOpenClip, true, "text_encoder_2", "text encoder 2 (OpenCLIP ViT-bigG)"});
  else {
    parts.push_back({kXlClip, false, "text_encoder", "text encoder 1 (CLIP ViT-L)"});
    parts.push_back({kXlOpenClip, true, "text_encoder_2", "text encoder 2 (OpenCLIP ViT-bigG)"});
  }
  for (auto& t : parts) {
    t.in_file = t.open_clip ? ck.has(t.prefix + "positional_embedding") || ck.has(t.prefix + "transformer.resblocks.0.ln_1.weight")
                            : ck.has(t.prefix + "text_model.embeddings.token_embedding.weight") ||
                                  ck.has(t.prefix + "embeddings.token_embedding.weight");
    if (!t.in_file && !has_weights(sidecar / t.sub))
      LOUPE_THROW(NotFound, path << ": this single file has no " << t.what << " (no '" << t.prefix << "*' tensors); "
                                 << supply_hint(t.sub, xl ? "the " + t.sub + "/ folder of stabilityai/stable-diffusion-xl-base-1.0"
                                                          : "the text_encoder/ folder of the diffusers model this file was made from"));
  }
  const bool vae_in_file = ck.has(kVae + "encoder.conv_in.weight");
  if (!vae_in_file && !has_weights(sidecar / "vae"))
    LOUPE_THROW(NotFound, path << ": this single file has no VAE (no '" << kVae << "*' tensors); "
                               << supply_hint("vae", xl ? "stabilityai/stable-diffusion-xl-base-1.0's vae/ or madebyollin/sdxl-vae-fp16-fix"
                                                        : "the vae/ folder of runwayml/stable-diffusion-v1-5 or stabilityai/sd-vae-ft-mse"));

  SingleFile sf;
  // Everything cheap first (tokenizers, configs, names and shapes from the header), so that a missing
  // piece is reported before gigabytes of weights are read. SDXL's two tokenizers share CLIP's
  // vocabulary; tokenizer_2 pads with "!" (as SDXL's and SD 2.x's OpenCLIP), tokenizer with <|endoftext|>.
  std::string found_vocab;
  auto tokenizer = [&](const std::string& sub, bool bang_pad, text::BpeTokenizer& tok, ClipTokens& ids) {
    std::string tdir = (sidecar / sub).string();
    const bool own = fs::exists(fs::path(tdir) / "vocab.json") && fs::exists(fs::path(tdir) / "merges.txt");
    if (!own) {
      if (found_vocab.empty()) found_vocab = find_tokenizer(file, sidecar, models_dir);
      tdir = found_vocab;
    }
    tok = text::BpeTokenizer::from_vocab_merges(tdir + "/vocab.json", tdir + "/merges.txt", text::BpeTokenizer::Flavor::Clip);
    ids = clip_tokens(tok, tdir);
    if (!own) {
      // a vocabulary found elsewhere: padding as the checkpoint's family pads, whatever that
      // folder's settings say
      const int64_t bang = tok.token_to_id("!");
      ids.pad = bang_pad && bang >= 0 ? bang : ids.eos;
    }
  };
  for (const auto& t : parts) {
    if (t.sub == "text_encoder") tokenizer("tokenizer", sd2, sf.tokenizer, sf.ids);
    else tokenizer("tokenizer_2", true, sf.tokenizer2, sf.ids2);
  }
  const auto sj = cfg("scheduler", "scheduler_config.json", nlohmann::json::object());
  sf.scheduler = schedulers::SchedulerConfig::from_json(sj, has_sidecar ? (sidecar / "scheduler").string() : path);
  const auto ucfg = UNetConfig::from_json(
      cfg("unet", "config.json", xl ? reference_xl_unet_config(refiner, inpaint) : reference_unet_config(sd2, inpaint)), where);
  const auto vcfg = VaeConfig::from_json(cfg("vae", "config.json", reference_vae_config(xl)), where);
  if (xl) {
    const auto idx = sidecar / "model_index.json";
    if (fs::exists(idx)) sf.force_zeros_for_empty_prompt = io::get_or<bool>(io::read_json_file(idx.string()), "force_zeros_for_empty_prompt", !refiner, idx.string());
    else sf.force_zeros_for_empty_prompt = !refiner;  // as diffusers' SDXL base / refiner configs
  }

  // Each network is checked against the header as soon as it is built (a wrong size stops before
  // the next one is allocated); the weights are read only once all fit.
  io::BindOptions bo;
  bo.device = device;
  bo.dtype = dtype;
  sf.unet = UNet2DConditionModel(ucfg);
  sf.unet->to(device, dtype);
  bo.keymap = unet_single_file_keymap(sf.unet->cfg);
  bo.scope = kUNet;
  io::check(*sf.unet, ck, bo);
  sf.vae = AutoencoderKL(vcfg);
  io::BindOptions vo = bo;
  vo.dtype = vae_dtype(dtype, device, sf.vae->cfg);
  sf.vae->to(device, *vo.dtype);
  std::optional<io::Checkpoint> vae_ck;
  if (vae_in_file) {
    vo.keymap = vae_single_file_keymap(sf.vae->cfg);
    vo.scope = kVae;
  } else {
    vae_ck = io::Checkpoint::open((sidecar / "vae").string(), io::Checkpoint::variant_for(*vo.dtype));
    vo.keymap = io::KeyMap();
    vo.scope.clear();
  }
  io::check(*sf.vae, vae_in_file ? ck : *vae_ck, vo);
  struct TextLoad {
    clip::ClipTextModel* model;
    io::BindOptions opts;
    std::optional<io::Checkpoint> own;
  };
  std::vector<TextLoad> texts;
  for (const auto& t : parts) {
    // SD 2.x checkpoints keep OpenCLIP's last block, which SD 2.x does not use (it reads the
    // penultimate layer): diffusers' text encoder has one layer fewer. SDXL's encoder 2 keeps all
    // (diffusers reads hidden_states[-2]).
    nlohmann::json tj;
    if (t.in_file) {
      const int64_t n = t.open_clip ? count_layers(ck, t.prefix + "transformer.resblocks.")
                                    : std::max(count_layers(ck, t.prefix + "text_model.encoder.layers."),
                                               count_layers(ck, t.prefix + "encoder.layers."));  // older files
      const int64_t layers = sd2 ? std::max<int64_t>(1, n - 1) : n;
      tj = cfg(t.sub, "config.json",
               !xl ? reference_clip_config(sd2, layers) : t.open_clip ? reference_bigg_config(layers) : reference_clip_config(false, layers));
      tj["num_hidden_layers"] = layers;
    } else {
      tj = io::read_json_file((sidecar / t.sub / "config.json").string());
    }
    auto tc = clip::TextConfig::from_json(tj, t.in_file ? where : (sidecar / t.sub / "config.json").string());
    if (xl && t.open_clip && t.in_file) tc.with_projection = true;  // SDXL conditions on the projected pooled output
    auto& m = t.sub == "text_encoder" ? sf.text : sf.text2;
    m = clip::ClipTextModel(tc);
    m->to(device, dtype);
    TextLoad l{&m, bo, std::nullopt};
    l.opts.allow_missing = [](const std::string& k) { return k.find("position_ids") != std::string::npos; };
    if (t.in_file) {
      l.opts.keymap = clip_single_file_keymap(t.open_clip, tc.hidden_size, t.prefix);
      l.opts.scope = t.prefix;
    } else {
      l.own = io::Checkpoint::open((sidecar / t.sub).string(), io::Checkpoint::variant_for(dtype));
      l.opts.keymap = io::KeyMap();
      l.opts.scope.clear();
    }
    io::check(**l.model, l.own ? *l.own : ck, l.opts);
    texts.push_back(std::move(l));
  }
  if (!sf.text && !sf.text2) LOUPE_THROW(Internal, path << ": no text encoder");
  check_components(sf, path);
  io::bind(*sf.unet, ck, bo);
  io::bind(*sf.vae, vae_in_file ? ck : *vae_ck, vo);
  for (auto& l : texts) {
    io::bind(**l.model, l.own ? *l.own : ck, l.opts);
    (*l.model)->eval();
  }
  if (!has_sidecar || !sj.contains("prediction_type")) {
    if (sd2 && !inpaint) {
      // SD 2.x comes as epsilon (512-base) and v-prediction (768-v) models with the same weights'
      // shapes: decide from the model itself, as the web UIs do (a v-model's output at t=999 on a
      // flat input sits far below the input).
      torch::NoGradGuard ng;
      const auto x = torch::full({1, 4, 8, 8}, 0.5, torch::TensorOptions().device(device).dtype(dtype));
      const auto ctx = torch::full({1, 2, sf.unet->cfg.cross_attention_dim[0]}, 0.5, x.options());
      const double out = (sf.unet->forward(x, torch::tensor({999.0f}).to(device), ctx) - x).mean().item<double>();
      sf.scheduler.prediction_type = out < -1 ? "v_prediction" : "epsilon";
    }
  }
  sf.unet->eval();
  sf.vae->eval();
  return sf;
}

AutoencoderKL read_vae(const std::string& path, const VaeConfig& cfg, const torch::Device& device, torch::ScalarType dtype,
                       bool shifted_latents_ok) {
  if (path.empty()) LOUPE_THROW(InvalidArgument, "the VAE path is empty");
  if (!fs::exists(path)) LOUPE_THROW(NotFound, path << ": no such VAE file or folder");
  fs::path dir(path);
  if (fs::is_directory(dir) && !fs::exists(dir / "config.json") && fs::exists(dir / "vae" / "config.json")) dir /= "vae";
  io::BindOptions o;
  o.device = device;
  o.dtype = dtype;
  AutoencoderKL vae{nullptr};
  std::string where = path;
  if (fs::is_directory(dir)) {  // diffusers' vae/ folder: its own config, diffusers' names
    const auto cfile = (dir / "config.json").string();
    if (!fs::exists(cfile))
      LOUPE_THROW(BadModel, path << ": a VAE folder needs config.json and its weights (diffusers' vae/ layout); "
                                 << "hint: choose the vae/ folder of a diffusers model, or a single VAE .safetensors file");
    vae = AutoencoderKL(VaeConfig::from_json(io::read_json_file(cfile), cfile, shifted_latents_ok));
    where = dir.string();
  } else {
    vae = AutoencoderKL(cfg);
  }
  const auto ck = io::Checkpoint::open(where);
  if (!ck.has("encoder.conv_in.weight") && !ck.has(kVae + "encoder.conv_in.weight"))
    LOUPE_THROW(BadModel, path << ": not a VAE (no tensor 'encoder.conv_in.weight'); hint: choose a VAE file (as kept in "
                               << "models/VAE) or the vae/ folder of a diffusers model");
  // A file in diffusers' names needs no map; the LDM layout (the web UIs' VAE files) goes through
  // the single-file table, with "first_stage_model." or without it (the key-prefix rule).
  bool diffusers_names = false;
  for (const auto& n : ck.names()) diffusers_names = diffusers_names || n.find("down_blocks.") != std::string::npos;
  if (!diffusers_names) o.keymap = vae_single_file_keymap(vae->cfg);
  o.dtype = vae_dtype(dtype, device, vae->cfg);  // as the checkpoint's own
  vae->to(device, *o.dtype);
  io::bind(*vae, ck, o);  // names and shapes checked from the header before anything is read
  vae->eval();
  return vae;
}

std::string single_file_tokenizer(const std::string& path, const std::string& models_dir) {
  const fs::path file(path);
  return look_for_tokenizer(file, file.parent_path() / file.stem(), models_dir, nullptr);
}

}  // namespace loupe::sd
