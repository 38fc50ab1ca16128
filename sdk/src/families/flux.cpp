// FLUX.1 as a Loupe model family: loading (diffusers folders, BFL single files, ComfyUI split files),
// the prompt through CLIP-L (pooled) and T5-XXL (last hidden state), and the txt2img / img2img /
// inpaint tasks (pipelines/flux.h), with the editor-facing parts of pipelines/compose.h.
#include "families/flux.h"

#include <algorithm>
#include <filesystem>
#include <mutex>
#include <random>

#include "core/error.h"
#include "core/hub.h"
#include "core/runtime.h"
#include "io/checkpoint.h"
#include "io/config.h"
#include "io/hf_cache.h"
#include "io/state_dict.h"
#include "models/clip/clip_text.h"
#include "models/clip/clip_vocab.h"
#include "models/flux/transformer.h"
#include "models/sd/prompt.h"
#include "models/sd/single_file.h"
#include "models/sd/vae.h"
#include "nn/t5.h"
#include "pipelines/compose.h"
#include "pipelines/flux.h"
#include "schedulers/scheduler.h"
#include "text/bpe_tokenizer.h"
#include "text/sentencepiece.h"

namespace fs = std::filesystem;

namespace loupe::flux_family {

namespace {

// The published configs of FLUX.1's parts (black-forest-labs/FLUX.1-dev and -schnell: vae/,
// text_encoder/, text_encoder_2/, scheduler/config), for files that carry weights only.
nlohmann::json reference_vae_config() {
  return {{"in_channels", 3},          {"out_channels", 3},        {"latent_channels", 16},
          {"block_out_channels", {128, 256, 512, 512}},            {"layers_per_block", 2},
          {"norm_num_groups", 32},     {"scaling_factor", 0.3611}, {"shift_factor", 0.1159},
          {"use_quant_conv", false},   {"use_post_quant_conv", false},
          {"mid_block_add_attention", true}, {"force_upcast", true}, {"sample_size", 1024}};
}
nlohmann::json reference_clip_config() {
  return {{"vocab_size", 49408}, {"hidden_size", 768}, {"intermediate_size", 3072}, {"num_hidden_layers", 12},
          {"num_attention_heads", 12}, {"max_position_embeddings", 77}, {"hidden_act", "quick_gelu"},
          {"layer_norm_eps", 1e-5}, {"eos_token_id", 2}, {"projection_dim", 768}};
}
nlohmann::json reference_t5_config() {
  return {{"vocab_size", 32128}, {"d_model", 4096}, {"d_kv", 64}, {"d_ff", 10240}, {"num_layers", 24},
          {"num_heads", 64}, {"relative_attention_num_buckets", 32}, {"relative_attention_max_distance", 128},
          {"layer_norm_epsilon", 1e-6}, {"feed_forward_proj", "gated-gelu"}, {"tie_word_embeddings", false},
          {"pad_token_id", 0}, {"eos_token_id", 1}};
}
nlohmann::json reference_scheduler_config(bool dynamic) {
  return {{"_class_name", "FlowMatchEulerDiscreteScheduler"}, {"num_train_timesteps", 1000},
          {"shift", dynamic ? 3.0 : 1.0}, {"use_dynamic_shifting", dynamic}, {"base_shift", 0.5},
          {"max_shift", 1.15}, {"base_image_seq_len", 256}, {"max_image_seq_len", 4096}};
}

bool lower_has(std::string s, const std::string& what) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s.find(what) != std::string::npos;
}

bool is_weights_file(const fs::path& p) {
  const auto e = p.extension().string();
  return e == ".safetensors" || e == ".sft";
}

bool has_t5_vocab(const fs::path& d) {
  std::error_code ec;
  return fs::is_regular_file(d / "spiece.model", ec) || fs::is_regular_file(d / "tokenizer.model", ec) ||
         fs::is_regular_file(d / "tokenizer.json", ec);
}

text::SentencePieceTokenizer load_t5_tokenizer(const std::string& dir) {
  return text::SentencePieceTokenizer::load_from_dir(dir);  // spiece.model / tokenizer.model, else tokenizer.json
}

// A diffusers folder's transformer config says FLUX.
bool flux_folder(const fs::path& dir) {
  const fs::path cfg = dir / "transformer" / "config.json";
  std::error_code ec;
  if (!fs::exists(cfg, ec)) return false;
  const auto j = io::read_json_file(cfg.string());
  return j.value("_class_name", std::string()) == "FluxTransformer2DModel";
}

}  // namespace

int t5_tokens_for(const std::string& variant) { return variant == "schnell" ? 256 : 512; }

std::vector<int64_t> clip_prompt_ids(const text::BpeTokenizer& tok, const sd::ClipTokens& t, const std::string& prompt) {
  std::vector<int64_t> ids{t.bos};
  for (int64_t id : tok.encode(prompt)) {
    if (ids.size() == 76) break;
    ids.push_back(id);
  }
  ids.push_back(t.eos);
  ids.resize(77, t.pad);
  return ids;
}

// ---- where a split file's parts are --------------------------------------------------------------

SplitFiles find_split_files(const std::string& file, const std::string& models_dir) {
  SplitFiles out;
  std::vector<fs::path> dirs;
  const fs::path f = fs::absolute(fs::path(file));
  auto add = [&](const fs::path& d) {
    std::error_code ec;
    if (d.empty() || !fs::is_directory(d, ec)) return;
    for (const auto& x : dirs)
      if (fs::equivalent(x, d, ec)) return;
    dirs.push_back(d);
  };
  auto add_tree = [&](const fs::path& root) {
    add(root);
    for (const char* sub : {"text_encoders", "clip", "vae", "VAE", "t5"}) add(root / sub);
  };
  add(f.parent_path());
  add_tree(f.parent_path().parent_path());
  if (!models_dir.empty()) add_tree(fs::path(models_dir));
  for (const auto& d : dirs) {
    out.looked_in.push_back(d.string());
    std::vector<fs::path> files;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(d, ec))
      if (e.is_regular_file(ec) && is_weights_file(e.path())) files.push_back(e.path());
    std::sort(files.begin(), files.end());
    for (const auto& p : files) {
      const std::string name = p.filename().string();
      if (out.t5.empty() && lower_has(name, "t5") && lower_has(name, "xxl")) out.t5 = p.string();
      else if (out.clip.empty() && lower_has(name, "clip_l")) out.clip = p.string();
      else if (out.vae.empty() && (p.stem() == "ae" || (lower_has(name, "flux") && lower_has(name, "vae"))))
        out.vae = p.string();
    }
  }
  return out;
}

// ---- the T5 tokenizer of split files ---------------------------------------------------------------

std::string t5_vocab_cache_dir() {
  const std::string d = io::loupe_data_dir();
  return d.empty() ? "" : (fs::path(d) / "tokenizers" / "t5").string();
}

const char* t5_vocab_fetch_repo() { return "google/t5-v1_1-xxl"; }

std::string find_t5_vocab(const std::vector<std::string>& model_folders) {
  std::error_code ec;
  for (const auto& folder : model_folders) {
    if (folder.empty() || !fs::is_directory(folder, ec)) continue;
    for (const auto& e : fs::directory_iterator(folder, ec)) {
      const fs::path t = e.path() / "tokenizer_2";
      if (e.is_directory(ec) && flux_folder(e.path()) && has_t5_vocab(t)) return t.string();
    }
  }
  if (const auto own = t5_vocab_cache_dir(); !own.empty() && has_t5_vocab(own)) return own;
  const std::string cache = io::hf_hub_cache_dir();
  if (cache.empty()) return "";
  for (const char* repo : {"google/t5-v1_1-xxl", "black-forest-labs/FLUX.1-schnell", "black-forest-labs/FLUX.1-dev",
                           "black-forest-labs/FLUX.1-Fill-dev"})
    for (const auto& snap : io::hf_cached_snapshots(repo, cache)) {
      if (fs::is_regular_file(fs::path(snap) / "spiece.model", ec)) return snap;
      if (has_t5_vocab(fs::path(snap) / "tokenizer_2")) return (fs::path(snap) / "tokenizer_2").string();
    }
  return "";
}

std::string fetch_t5_vocab() {
  std::string which;
  if (hub::offline(&which))
    LOUPE_THROW(NotFound, "no T5 tokenizer (spiece.model) on this machine, and offline mode is on ("
                              << which << "), so it was not fetched from " << t5_vocab_fetch_repo()
                              << "; hint: put spiece.model (e.g. from https://huggingface.co/" << t5_vocab_fetch_repo()
                              << ") into " << (t5_vocab_cache_dir().empty() ? "~/.local/share/loupe/tokenizers/t5" : t5_vocab_cache_dir())
                              << ", or keep a FLUX.1 diffusers folder in the models folder");
  const std::string dest = t5_vocab_cache_dir();
  if (dest.empty()) LOUPE_THROW(NotFound, "no data folder to keep a fetched T5 tokenizer in (HOME and XDG_DATA_HOME are unset)");
  hub::DownloadSpec spec;
  spec.endpoint = hub::endpoint();
  spec.token = hub::token();
  spec.repo = t5_vocab_fetch_repo();
  spec.dest = dest;
  spec.files = {"spiece.model"};
  JobContext ctx(nullptr);
  try {
    hub::download(spec, ctx);
  } catch (const std::exception& e) {
    LOUPE_THROW(NotFound, "fetching the T5 tokenizer (spiece.model) from " << spec.endpoint << "/" << spec.repo
                                                                          << " failed: " << e.what());
  }
  if (!has_t5_vocab(dest)) LOUPE_THROW(Internal, "the T5 tokenizer was fetched but " << dest << " lacks spiece.model");
  return dest;
}

// ---- the model ---------------------------------------------------------------------------------------

class FluxModel : public Model {
 public:
  FluxModel(const std::string& path, const ModelOptions& o) : opts_(o) {
    if (fs::is_directory(path)) load_folder(path);
    else load_split(path);
    variant_ = transformer_->variant();
    vae_dtype_ = vae_->parameters().front().scalar_type();
    check_parts(path);
  }

  std::string family() const override { return "flux"; }
  std::string variant() const override { return "flux-" + variant_; }

  std::vector<loupe::tasks::Task> tasks() const override {
    // No classifier-free guidance, no negative prompt, one sampler (flow-matching Euler), no CLIP
    // skip; sizes in multiples of 16; the reference pipelines' defaults.
    static const std::vector<std::string> drop = {"negative_prompt", "sampler", "clip_skip", "refiner", "refiner_switch",
                                                  "original_width", "original_height", "crop_left", "crop_top",
                                                  "target_width", "target_height", "aesthetic_score",
                                                  "negative_aesthetic_score"};
    const bool schnell = variant_ == "schnell";
    std::vector<loupe::tasks::Task> out;
    for (const char* name : {"txt2img", "img2img", "inpaint"}) {
      auto t = loupe::tasks::get(name);
      t.params.erase(std::remove_if(t.params.begin(), t.params.end(),
                                    [&](const loupe::tasks::Param& p) {
                                      return std::find(drop.begin(), drop.end(), p.name) != drop.end() ||
                                             (schnell && p.name == "guidance_scale");
                                    }),
                     t.params.end());
      t.param("steps").def = schnell ? 4 : (variant_ == "fill" ? 50 : 28);
      if (!schnell) {
        auto& g = t.param("guidance_scale");
        g.def = variant_ == "fill" ? 30.0 : 3.5;
        g.min = 0;
        g.max = 100;
        g.help = "the distilled guidance the model is conditioned on (FLUX.1 dev: 3.5; Fill: 30); no classifier-free guidance";
      }
      for (const char* s : {"width", "height"}) {
        auto& p = t.param(s);
        p.step = 16;
        if (t.name == "txt2img") {
          p.def = 1024;
          p.min = 16;
        }
        p.help = t.name == "txt2img" ? "image size (multiple of 16)"
                                     : "processing size (multiple of 16); 0 = the image's size rounded to 16";
      }
      out.push_back(std::move(t));
    }
    return out;
  }

  // What the session needs on the device: with streamed blocks, the largest block (and the
  // always-resident parts, counted in it by the budget check) instead of the whole transformer.
  uint64_t bytes() const override {
    uint64_t b = transformer_->streaming() ? transformer_->largest_block_bytes(opts_.dtype) : transformer_->host_bytes();
    for (auto* m : {static_cast<const torch::nn::Module*>(clip_.get()), static_cast<const torch::nn::Module*>(t5_.get()),
                    static_cast<const torch::nn::Module*>(vae_.get())})
      for (const auto& p : m->parameters()) b += p.numel() * p.element_size();
    return b;
  }

  uint64_t placement_budget(torch::Device d) const {
    uint64_t budget = opts_.device_budget_bytes;
    if (d.is_cpu() && budget == 0) budget = std::max<uint64_t>(device_memory(d).first / 4 * 3, 1);
    return budget;
  }

  void to(torch::Device d) override {
    std::lock_guard<std::mutex> lock(mu_);
    // Resident when the weights fit the runtime's budget, else blocks streamed one by one. On the
    // CPU the budget is the host's memory: the runtime's budget if set, else what is available now
    // less a quarter kept for activations, the VAE and the rest of the system (FLUX.1's 12B
    // transformer stored in bf16 takes 24 GB, 48 GB more upcast to fp32 at once; streamed, one
    // block at a time).
    transformer_->place(d, opts_.dtype, flux::Placement::Auto, placement_budget(d));
    vae_->to(d);
    opts_.device = d;  // the text encoders stay on the host between jobs
  }

  void set_lora(const std::string& path, float weight) override {
    std::lock_guard<std::mutex> lock(mu_);
    transformer_->set_lora(path, weight);
  }

  Result run_task(const Request& r, JobContext& ctx) override {
    std::lock_guard<std::mutex> lock(mu_);
    torch::NoGradGuard ng;
    if (r.task != "txt2img" && r.task != "img2img" && r.task != "inpaint")
      LOUPE_THROW(InvalidArgument, "FLUX.1 does not do task '" << r.task << "' (it does txt2img, img2img, inpaint)");
    pipelines::flux::Params p;
    p.steps = static_cast<int>(r.integer("steps"));
    p.guidance = variant_ == "schnell" ? 0.0 : r.real("guidance_scale");
    p.strength = r.task == "txt2img" ? 1.0 : r.real("strength");
    p.tiled_vae = r.flag("vae_tiling");
    const int batch = static_cast<int>(r.integer("batch_count"));
    int64_t seed = r.integer("seed");
    if (seed < 0) seed = static_cast<int64_t>(std::random_device{}() & 0x7fffffff);

    ctx.progress(0, 1, "encoding the prompt");
    const auto cond = encode(r.text("prompt"));
    ctx.check_cancelled();

    pipelines::flux::Models m = models();
    Result res;
    res.task = r.task;
    for (int b = 0; b < batch; ++b) {
      p.seed = static_cast<uint64_t>(seed + b);
      const int base_step = b * p.steps;
      auto on_step = [&](int step, int total, const torch::Tensor& latents, int64_t h, int64_t w) {
        ctx.check_cancelled();
        Image preview;
        const Image* pv = nullptr;
        if (ctx.wants_preview()) {
          preview = pipelines::hwc_to_image(pipelines::flux::latent_preview(m, latents, h, w));
          pv = &preview;
        }
        ctx.progress(base_step + step, batch * total, "denoising", pv);
      };
      Image out;
      if (r.task == "txt2img") {
        p.width = static_cast<int>(r.integer("width"));
        p.height = static_cast<int>(r.integer("height"));
        auto_tiling(p);
        out = pipelines::tensor_to_image(pipelines::flux::txt2img(m, cond, p, on_step));
      } else if (r.task == "img2img") {
        const Image src = rgb8(r.image());
        p.width = r.integer("width") ? static_cast<int>(r.integer("width")) : round16(src.width);
        p.height = r.integer("height") ? static_cast<int>(r.integer("height")) : round16(src.height);
        auto_tiling(p);
        auto x = pipelines::resize(pipelines::image_to_tensor(src), p.width, p.height) * 2 - 1;
        auto img = pipelines::flux::img2img(m, cond, x, p, on_step);
        out = pipelines::tensor_to_image(pipelines::resize(img, src.width, src.height));
      } else {
        const Image src = rgb8(r.image());
        if (!r.mask) LOUPE_THROW(InvalidArgument, "inpaint needs a mask: set one with loupe_request_set_mask (GRAY8, white = repaint)");
        pipelines::InpaintSettings s;
        s.mask_blur = r.real("mask_blur");
        s.feather = r.real("feather");
        s.only_masked = r.flag("only_masked");
        s.color_correction = r.flag("color_correction");
        s.padding = static_cast<int>(r.integer("padding"));
        s.width = static_cast<int>(r.integer("width"));
        s.height = static_cast<int>(r.integer("height"));
        s.native = 1024;
        s.multiple = 16;
        out = pipelines::inpaint_around(src, *r.mask, s, [&](const torch::Tensor& x, const torch::Tensor& mask) {
          p.width = static_cast<int>(x.size(3));
          p.height = static_cast<int>(x.size(2));
          auto_tiling(p);
          return pipelines::flux::inpaint(m, cond, x, mask, p, on_step);
        });
      }
      res.images.push_back(std::move(out));
    }
    res.numbers["seed"] = static_cast<double>(seed);
    res.numbers["steps"] = p.steps;
    if (variant_ != "schnell") res.numbers["guidance_scale"] = p.guidance;
    res.strings["variant"] = variant();
    res.strings["sampler"] = "flow_euler";
    // "streamed": the transformer's blocks were brought in one at a time (the weights do not fit)
    res.strings["transformer_placement"] = transformer_->streaming() ? "streamed" : "resident";
    for (const auto& [file, w] : transformer_->loras()) res.strings["lora:" + fs::path(file).filename().string()] = std::to_string(w);
    return res;
  }

  // The prompt as FluxPipeline.encode_prompt makes it: CLIP-L's pooled output of the prompt padded
  // to 77 tokens, and T5's last hidden state of the prompt padded to max_sequence_length tokens (no
  // attention mask). The encoders run on the session's device and go back to the host after.
  pipelines::flux::Conditioning encode(const std::string& prompt) {
    torch::NoGradGuard ng;
    pipelines::flux::Conditioning c;
    const torch::Device dev = opts_.device;
    {
      const auto ids = clip_prompt_ids(clip_tok_, clip_ids_, prompt);
      clip_->to(dev);
      c.pooled = clip_->hidden_and_pooled(torch::tensor(ids).unsqueeze(0).to(dev), clip_->cfg.num_hidden_layers, true)
                     .pooled.to(torch::kFloat32);
      if (dev != torch::kCPU) clip_->to(torch::kCPU);
    }
    {
      const auto ids = text::encode_t5(t5_tok_, prompt, t5_tokens_for(variant_), true);
      t5_->to(dev);
      c.context = t5_->encode(torch::tensor(ids).unsqueeze(0).to(dev)).to(torch::kFloat32);
      if (dev != torch::kCPU) t5_->to(torch::kCPU);
    }
    if (dev != torch::kCPU) release_cached_device_memory();
    return c;
  }

  pipelines::flux::Models models() {
    pipelines::flux::Models m;
    flux::FluxTransformer* tr = transformer_.get();
    m.transformer = [tr](const pipelines::flux::TransformerInputs& in) {
      return tr->forward(in.hidden, in.context, in.pooled, in.timestep, in.img_ids, in.txt_ids, in.guidance);
    };
    m.in_channels = transformer_->config().in_channels;
    m.guidance_embeds = transformer_->config().guidance_embeds;
    m.vae = vae_;
    m.scheduler = sched_;
    m.device = opts_.device;
    m.dtype = opts_.dtype;
    m.vae_dtype = vae_dtype_;
    return m;
  }

 private:
  static int round16(int v) { return std::max(16, int(std::lround(v / 16.0)) * 16); }
  static Image rgb8(const Image& img) {
    if (img.width < 16 || img.height < 16)
      LOUPE_THROW(InvalidArgument, "the image is " << img.width << "x" << img.height << "; at least 16x16 pixels are needed");
    return img.channels == 3 ? img : img.to_rgb();
  }
  static void auto_tiling(pipelines::flux::Params& p) {
    if (int64_t(p.width) * p.height > 1536LL * 1536) p.tiled_vae = true;
  }

  io::BindOptions bind_options(const torch::nn::Module&) const {
    io::BindOptions bo;
    bo.device = torch::kCPU;  // text encoders live on the host between jobs
    bo.dtype = opts_.dtype;
    return bo;
  }

  void load_clip(const std::string& config_json, const nlohmann::json& fallback, const std::string& weights) {
    clip::TextConfig cfg = config_json.empty() ? clip::TextConfig::from_json(fallback, "CLIP-L reference config")
                                               : clip::TextConfig::load(config_json);
    clip_ = clip::ClipTextModel(cfg);
    clip_->to(torch::kCPU, opts_.dtype);
    auto bo = bind_options(*clip_);
    bo.allow_missing = [](const std::string& k) { return k.find("position_ids") != std::string::npos; };
    io::bind(*clip_, io::Checkpoint::open(weights), bo);
    clip_->eval();
  }

  void load_t5(const std::string& config_json, const std::string& weights) {
    const auto j = config_json.empty() ? reference_t5_config() : io::read_json_file(config_json);
    auto cfg = nn::T5Config::from_json(j, config_json.empty() ? "T5-XXL reference config" : config_json);
    t5_ = nn::T5Model(cfg, false);
    auto ck = io::Checkpoint::open(weights);
    if (!ck.has("shared.weight"))
      for (const auto& a : nn::t5_shared_aliases())
        if (ck.has(a)) {
          ck.alias("shared.weight", a);
          break;
        }
    io::BindOptions bo;
    bo.device = torch::kCPU;
    // float8 files (t5xxl_fp8_e4m3fn) decode to the session's dtype (fp32 stays fp32)
    const std::string probe = "encoder.block.0.layer.0.SelfAttention.q.weight";
    if (ck.has(probe) && ck.dtype(probe).rfind("F8", 0) == 0) bo.dtype = opts_.dtype;
    io::bind(*t5_, ck, bo);
    t5_->to_dtype(opts_.dtype, torch::Device(torch::kCPU));
    t5_->eval();
  }

  void load_folder(const std::string& dir) {
    const fs::path d(dir);
    for (const char* sub : {"transformer", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "scheduler"})
      if (!fs::is_directory(d / sub))
        LOUPE_THROW(BadModel, dir << ": the folder '" << sub << "' of the FLUX.1 diffusers layout is missing");
    // cheap parts first: configs and tokenizers
    const auto scfg = (d / "scheduler" / "scheduler_config.json").string();
    sched_ = schedulers::FlowMatchConfig::from_json(io::read_json_file(scfg), scfg);
    const auto tdir = (d / "tokenizer").string();
    clip_tok_ = text::BpeTokenizer::from_vocab_merges(tdir + "/vocab.json", tdir + "/merges.txt", text::BpeTokenizer::Flavor::Clip);
    clip_ids_ = sd::clip_tokens(clip_tok_, tdir);
    t5_tok_ = load_t5_tokenizer((d / "tokenizer_2").string());
    const auto vcfg = (d / "vae" / "config.json").string();
    vae_ = sd::AutoencoderKL(sd::VaeConfig::from_json(io::read_json_file(vcfg), vcfg, true));
    bind_vae(io::Checkpoint::open((d / "vae").string()), false);
    load_clip((d / "text_encoder" / "config.json").string(), {}, (d / "text_encoder").string());
    load_t5((d / "text_encoder_2" / "config.json").string(), (d / "text_encoder_2").string());
    flux::FluxLoadOptions fo;
    fo.device = opts_.device;
    fo.dtype = opts_.dtype;
    fo.budget_bytes = placement_budget(opts_.device);
    transformer_ = flux::FluxTransformer::load((d / "transformer").string(), fo);
  }

  // A BFL / ComfyUI diffusion-model file with its parts found around it (find_split_files), or a
  // sidecar diffusers folder "<stem>/" holding them (its transformer/ may lack weights).
  void load_split(const std::string& file) {
    const fs::path f(file);
    const fs::path sidecar = f.parent_path() / f.stem();
    flux::FluxLoadOptions fo;
    fo.device = opts_.device;
    fo.dtype = opts_.dtype;
    fo.budget_bytes = placement_budget(opts_.device);
    if (fs::exists(sidecar / "transformer" / "config.json"))
      fo.config_hint = io::read_json_file((sidecar / "transformer" / "config.json").string());
    transformer_ = flux::FluxTransformer::load(file, fo);
    const std::string v = transformer_->variant();
    // Each part: the sidecar's folder when it holds weights; else the split file, with the sidecar's
    // config.json when there is one (else the published config of FLUX.1's part).
    auto side_weights = [&](const char* sub) {
      const fs::path d = sidecar / sub;
      return fs::is_directory(d) && !io::Checkpoint::weights_file(d.string()).empty();
    };
    auto side_config = [&](const char* sub, const char* name) -> std::string {
      const fs::path c = sidecar / sub / name;
      return fs::exists(c) ? c.string() : "";
    };
    const bool all_side = side_weights("vae") && side_weights("text_encoder") && side_weights("text_encoder_2");
    const SplitFiles parts = all_side ? SplitFiles{} : find_split_files(file, opts_.models_dir);
    auto missing = [&](const char* what, const char* example) {
      std::string where;
      for (const auto& d : parts.looked_in) where += (where.empty() ? "" : ", ") + d;
      LOUPE_THROW(NotFound, file << " is a FLUX.1 " << v << " diffusion model alone; its " << what
                                 << " was not found (looked in: " << where << "); hint: put " << example
                                 << " next to it or in the models folder (ComfyUI's models/text_encoders and models/vae "
                                    "work too), or open the FLUX.1 diffusers folder instead");
    };
    // scheduler: the sidecar's, else the reference's for the variant (dynamic shifting but schnell)
    const std::string scfg = side_config("scheduler", "scheduler_config.json");
    sched_ = !scfg.empty() ? schedulers::FlowMatchConfig::from_json(io::read_json_file(scfg), scfg)
                           : schedulers::FlowMatchConfig::from_json(reference_scheduler_config(v != "schnell"), "reference");
    // VAE
    const std::string vcfg = side_config("vae", "config.json");
    const auto vae_cfg = vcfg.empty() ? sd::VaeConfig::from_json(reference_vae_config(), "FLUX VAE reference config", true)
                                      : sd::VaeConfig::from_json(io::read_json_file(vcfg), vcfg, true);
    if (side_weights("vae")) {
      vae_ = sd::AutoencoderKL(vae_cfg);
      bind_vae(io::Checkpoint::open((sidecar / "vae").string()), false);
    } else {
      if (parts.vae.empty()) missing("VAE (ae.safetensors)", "ae.safetensors (black-forest-labs/FLUX.1-schnell)");
      vae_ = sd::read_vae(parts.vae, vae_cfg, opts_.device, opts_.dtype, true);
    }
    // CLIP-L and its vocabulary
    if (side_weights("text_encoder")) {
      load_clip(side_config("text_encoder", "config.json"), reference_clip_config(), (sidecar / "text_encoder").string());
    } else {
      if (parts.clip.empty()) missing("CLIP-L text encoder (clip_l.safetensors)", "clip_l.safetensors (comfyanonymous/flux_text_encoders)");
      load_clip(side_config("text_encoder", "config.json"), reference_clip_config(), parts.clip);
    }
    std::string cdir = fs::is_directory(sidecar / "tokenizer") ? (sidecar / "tokenizer").string() : "";
    if (cdir.empty()) cdir = clip::find_clip_vocab({}, {opts_.models_dir, f.parent_path().string()});
    if (cdir.empty()) cdir = clip::fetch_clip_vocab();
    clip_tok_ = text::BpeTokenizer::from_vocab_merges(cdir + "/vocab.json", cdir + "/merges.txt", text::BpeTokenizer::Flavor::Clip);
    clip_ids_ = sd::clip_tokens(clip_tok_, cdir);
    // T5-XXL and its tokenizer
    if (side_weights("text_encoder_2")) {
      load_t5(side_config("text_encoder_2", "config.json"), (sidecar / "text_encoder_2").string());
    } else {
      if (parts.t5.empty())
        missing("T5-XXL text encoder (t5xxl_*.safetensors)", "t5xxl_fp16.safetensors (comfyanonymous/flux_text_encoders)");
      load_t5(side_config("text_encoder_2", "config.json"), parts.t5);
    }
    std::string tdir = has_t5_vocab(sidecar / "tokenizer_2") ? (sidecar / "tokenizer_2").string() : "";
    if (tdir.empty()) tdir = find_t5_vocab({opts_.models_dir, f.parent_path().string()});
    if (tdir.empty()) tdir = fetch_t5_vocab();
    t5_tok_ = load_t5_tokenizer(tdir);
  }

  void bind_vae(const io::Checkpoint& ck, bool) {
    io::BindOptions vo;
    vo.device = opts_.device;
    vo.dtype = sd::vae_dtype(opts_.dtype, opts_.device, vae_->cfg);
    vae_->to(opts_.device, *vo.dtype);
    io::bind(*vae_, ck, vo);
    vae_->eval();
  }

  // The parts fit together: widths, channels, vocabulary.
  void check_parts(const std::string& where) const {
    const auto& tc = transformer_->config();
    if (tc.joint_attention_dim != t5_->cfg.d_model)
      LOUPE_THROW(BadModel, where << ": the transformer takes " << tc.joint_attention_dim << "-wide text states (joint_attention_dim), the T5 encoder makes "
                                  << t5_->cfg.d_model << " (d_model); hint: use the T5 encoder made for FLUX.1 (T5-XXL v1.1)");
    if (tc.pooled_projection_dim != clip_->cfg.hidden_size)
      LOUPE_THROW(BadModel, where << ": the transformer takes a " << tc.pooled_projection_dim << "-wide pooled text embedding, CLIP makes "
                                  << clip_->cfg.hidden_size << "; hint: use CLIP-L (clip_l.safetensors)");
    const int64_t C = vae_->cfg.latent_channels, f = vae_->cfg.scale_factor();
    const int64_t out = tc.out_channels ? tc.out_channels : tc.in_channels;
    if (out != 4 * C || (tc.in_channels != 4 * C && tc.in_channels != 8 * C + 4 * f * f))
      LOUPE_THROW(BadModel, where << ": the transformer's " << tc.in_channels << " input / " << out << " output channels do not fit a VAE with "
                                  << C << " latent channels (FLUX.1: 64 / 64, Fill: 384 / 64 with the 16-channel FLUX VAE)");
    if (static_cast<int64_t>(t5_tok_.vocab_size()) > t5_->cfg.vocab_size)
      LOUPE_THROW(BadModel, where << ": the T5 tokenizer has " << t5_tok_.vocab_size() << " pieces but the encoder only "
                                  << t5_->cfg.vocab_size << " embeddings");
  }

  ModelOptions opts_;
  std::unique_ptr<flux::FluxTransformer> transformer_;
  clip::ClipTextModel clip_{nullptr};
  text::BpeTokenizer clip_tok_;
  sd::ClipTokens clip_ids_;
  nn::T5Model t5_{nullptr};
  text::SentencePieceTokenizer t5_tok_;
  sd::AutoencoderKL vae_{nullptr};
  schedulers::FlowMatchConfig sched_;
  std::string variant_;
  torch::ScalarType vae_dtype_ = torch::kFloat32;
  std::mutex mu_;
};

namespace {
std::string detect(const std::string& path);
void inspect(const std::string& path, nlohmann::json& report);
}  // namespace

ModelFamily family() {
  ModelFamily f;
  f.name = "flux";
  f.bf16_on_fast_cpu = true;
  f.tasks = {"txt2img", "img2img", "inpaint"};
  f.detect = [](const std::string& path) -> std::string {
    try {
      return detect(path);
    } catch (const std::exception&) {
      return "";  // unreadable or not FLUX: not this family's
    }
  };
  f.load = [](const std::string& path, const ModelOptions& o) -> std::shared_ptr<Model> {
    return std::make_shared<FluxModel>(path, o);
  };
  f.inspect = inspect;
  return f;
}

namespace {

std::string detect(const std::string& path) {
  {
    if (fs::is_directory(path)) {
      if (!flux_folder(path)) return "";
      const auto j = io::read_json_file((fs::path(path) / "transformer" / "config.json").string());
      return "flux-" + flux::variant_of(flux::FluxConfig::from_json(j, path + "/transformer/config.json"));
    }
    if (!flux::FluxTransformer::is_bfl_single_file(path)) return "";
    try {
      const auto ck = io::Checkpoint::open(path);
      return "flux-" + flux::variant_of(flux::FluxConfig::from_single_file(ck, flux::FluxConfig::single_file_prefix(ck), nullptr));
    } catch (const std::exception&) {
      return "flux";
    }
  }
}

void inspect(const std::string& path, nlohmann::json& report) {
  {
    if (fs::is_directory(path)) {
      for (const char* sub : {"transformer", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "scheduler"})
        if (!fs::is_directory(fs::path(path) / sub))
          report["problems"].push_back({{"severity", "error"},
                                        {"message", std::string("the folder '") + sub + "' is missing in " + path},
                                        {"remedy", "download the whole FLUX.1 diffusers repository (all its folders)"}});
      return;
    }
    const fs::path sidecar = fs::path(path).parent_path() / fs::path(path).stem();
    auto side_weights = [&](const char* sub) {
      return fs::is_directory(sidecar / sub) && !io::Checkpoint::weights_file((sidecar / sub).string()).empty();
    };
    if (side_weights("text_encoder") && side_weights("text_encoder_2") && side_weights("vae")) return;
    auto parts = find_split_files(path, "");
    if (side_weights("text_encoder")) parts.clip = "(sidecar)";
    if (side_weights("text_encoder_2")) parts.t5 = "(sidecar)";
    if (side_weights("vae")) parts.vae = "(sidecar)";
    auto need = [&](const std::string& have, const std::string& what, const std::string& file) {
      if (!have.empty()) return;
      report["problems"].push_back(
          {{"severity", "error"},
           {"message", "a FLUX.1 diffusion model file without its " + what + ": none found next to it or in "
                           "ComfyUI's models/text_encoders, models/clip, models/vae folders"},
           {"remedy", "put " + file + " there (or into Loupe's models folder), or open the FLUX.1 diffusers folder"}});
    };
    need(parts.t5, "T5-XXL text encoder", "t5xxl_fp16.safetensors");
    need(parts.clip, "CLIP-L text encoder", "clip_l.safetensors");
    need(parts.vae, "VAE", "ae.safetensors");
  }
}

}  // namespace

}  // namespace loupe::flux_family
