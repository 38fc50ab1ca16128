// Stable Diffusion 1.x / 2.x (and the 9-channel inpainting UNet) as a Loupe model family: loading
// the diffusers folder layout, and the txt2img / img2img / inpaint tasks with the editor-facing
// parts (prompt syntax, processing size, "only masked", feathered composite, colour correction).
// SDXL diffusers folders (two text encoders, the "text_time" UNet) load into the same model; the
// family "sdxl" (families/sdxl.cpp) detects them.
#include "families/sd.h"

#include <filesystem>
#include <mutex>
#include <optional>
#include <random>

#include "core/error.h"
#include "core/log.h"
#include "io/checkpoint.h"
#include "io/config.h"
#include "io/state_dict.h"
#include "models/clip/clip_text.h"
#include "models/sd/lora.h"
#include "models/sd/prompt.h"
#include "models/sd/single_file.h"
#include "pipelines/compose.h"
#include "pipelines/diffusion.h"
#include "text/bpe_tokenizer.h"

namespace fs = std::filesystem;

namespace loupe::sd {

namespace {

std::string variant_name(const UNetConfig& u, const clip::TextConfig& t, const std::string& prediction) {
  if (u.text_time) return u.in_channels == 9 ? "sdxl-inpainting" : "sdxl";
  const bool sd2 = u.use_linear_projection || t.hidden_act == "gelu";
  std::string v = sd2 ? "sd2" : "sd15";
  if (u.in_channels == 9) v += "-inpainting";
  else if (sd2 && prediction == "v_prediction") v += "-v";
  return v;
}

int round8(double v) { return std::max(8, int(std::lround(v / 8.0)) * 8); }

Image to_rgb8(const Image& img) { return img.channels == 3 ? img : img.to_rgb(); }

}  // namespace

class StableDiffusionModel : public Model {
 public:
  StableDiffusionModel(const std::string& path, const ModelOptions& o) : opts_(o) {
    Components c = fs::is_directory(path) ? load_folder(path) : load_single_file(path, o);
    unet_ = c.unet;
    vae_ = c.vae;
    own_vae_ = c.vae;
    text_ = c.text;
    tok_ = std::make_shared<text::BpeTokenizer>(std::move(c.tokenizer));
    ids_ = c.ids;
    sched_ = c.scheduler;
    text2_ = c.text2;
    if (text2_) tok2_ = std::make_shared<text::BpeTokenizer>(std::move(c.tokenizer2));
    ids2_ = c.ids2;
    force_zeros_ = c.force_zeros_for_empty_prompt;
    variant_ = variant_name(unet_->cfg, text_->cfg, sched_.prediction_type);
    vae_dtype_ = (o.dtype == torch::kFloat16 && vae_->cfg.force_upcast) ? torch::kFloat32 : o.dtype;
    count_bytes();
  }

  void count_bytes() {
    bytes_ = 0;
    for (auto* m : {static_cast<torch::nn::Module*>(unet_.get()), static_cast<torch::nn::Module*>(vae_.get()),
                    static_cast<torch::nn::Module*>(text_.get()), text2_ ? static_cast<torch::nn::Module*>(text2_.get()) : nullptr})
      if (m)
        for (const auto& p : m->parameters()) bytes_ += p.numel() * p.element_size();
  }

  // What a checkpoint gives, whatever its layout.
  using Components = SingleFile;

  Components load_folder(const std::string& dir) {
    Components c;
    const fs::path d(dir);
    for (const char* sub : {"unet", "vae", "text_encoder", "tokenizer", "scheduler"})
      if (!fs::is_directory(d / sub))
        LOUPE_THROW(BadModel, dir << ": the folder '" << sub << "' of the diffusers layout is missing");
    // Everything cheap first (configs, tokenizer, tensor names and shapes), then the weights.
    const auto tdir = (d / "tokenizer").string();
    c.tokenizer = text::BpeTokenizer::from_vocab_merges(tdir + "/vocab.json", tdir + "/merges.txt", text::BpeTokenizer::Flavor::Clip);
    c.ids = clip_tokens(c.tokenizer, tdir);
    const auto scfg = (d / "scheduler" / "scheduler_config.json").string();
    c.scheduler = schedulers::SchedulerConfig::from_json(io::read_json_file(scfg), scfg);
    io::BindOptions bo;
    bo.device = opts_.device;
    bo.dtype = opts_.dtype;
    const auto ucfg = (d / "unet" / "config.json").string();
    c.unet = UNet2DConditionModel(UNetConfig::from_json(io::read_json_file(ucfg), ucfg));
    c.unet->to(opts_.device, opts_.dtype);
    const auto unet_ck = io::Checkpoint::open((d / "unet").string());
    const auto vcfg = (d / "vae" / "config.json").string();
    c.vae = AutoencoderKL(VaeConfig::from_json(io::read_json_file(vcfg), vcfg));
    io::BindOptions vo = bo;
    if (opts_.dtype == torch::kFloat16 && c.vae->cfg.force_upcast) vo.dtype = torch::kFloat32;
    c.vae->to(opts_.device, *vo.dtype);
    const auto vae_ck = io::Checkpoint::open((d / "vae").string());
    const auto tcfg = (d / "text_encoder" / "config.json").string();
    c.text = clip::ClipTextModel(clip::TextConfig::load(tcfg));
    c.text->to(opts_.device, opts_.dtype);
    io::BindOptions to = bo;
    to.allow_missing = [](const std::string& k) { return k.find("position_ids") != std::string::npos; };
    const auto text_ck = io::Checkpoint::open((d / "text_encoder").string());
    // SDXL: the second text encoder (CLIPTextModelWithProjection) and its tokenizer
    std::optional<io::Checkpoint> text2_ck;
    if (c.unet->cfg.text_time) {
      for (const char* sub : {"text_encoder_2", "tokenizer_2"})
        if (!fs::is_directory(d / sub))
          LOUPE_THROW(BadModel, dir << ": the folder '" << sub << "' of the SDXL diffusers layout is missing");
      const auto t2dir = (d / "tokenizer_2").string();
      c.tokenizer2 =
          text::BpeTokenizer::from_vocab_merges(t2dir + "/vocab.json", t2dir + "/merges.txt", text::BpeTokenizer::Flavor::Clip);
      c.ids2 = clip_tokens(c.tokenizer2, t2dir);
      const auto t2cfg = (d / "text_encoder_2" / "config.json").string();
      c.text2 = clip::ClipTextModel(clip::TextConfig::load(t2cfg));
      c.text2->to(opts_.device, opts_.dtype);
      text2_ck = io::Checkpoint::open((d / "text_encoder_2").string());
      const auto idx = d / "model_index.json";
      if (fs::exists(idx))
        c.force_zeros_for_empty_prompt = io::read_json_file(idx.string()).value("force_zeros_for_empty_prompt", true);
    }
    check_components(c, dir);
    io::check(*c.unet, unet_ck, bo);
    io::check(*c.vae, vae_ck, vo);
    io::check(*c.text, text_ck, to);
    if (c.text2) io::check(*c.text2, *text2_ck, to);
    io::bind(*c.unet, unet_ck, bo);
    io::bind(*c.vae, vae_ck, vo);
    io::bind(*c.text, text_ck, to);
    if (c.text2) {
      io::bind(*c.text2, *text2_ck, to);
      c.text2->eval();
    }
    c.unet->eval();
    c.vae->eval();
    c.text->eval();
    return c;
  }

  Components load_single_file(const std::string& file, const ModelOptions& o) {
    return read_single_file(file, o.device, o.dtype, o.models_dir);
  }

  // LoRA files merge into the weights; a running job finishes first (the model's lock).
  void set_lora(const std::string& path, float weight) override {
    std::lock_guard<std::mutex> lock(mu_);
    lora_.set(path, weight, *unet_, *text_);
  }

  // An external VAE replaces the checkpoint's own, which waits in host memory; "" brings it back.
  void set_vae(const std::string& path) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (path.empty()) {
      if (vae_.get() != own_vae_.get()) {
        own_vae_->to(opts_.device);
        vae_ = own_vae_;
      }
      vae_file_.clear();
    } else {
      AutoencoderKL v = read_vae(path, own_vae_->cfg, opts_.device, opts_.dtype);
      if (v->cfg.latent_channels != unet_->cfg.out_channels)
        LOUPE_THROW(BadModel, path << ": this VAE has " << v->cfg.latent_channels << " latent channels, the UNet makes "
                                   << unet_->cfg.out_channels << "; hint: choose a VAE made for this model family");
      if (vae_.get() == own_vae_.get()) own_vae_->to(torch::kCPU);
      vae_ = v;
      vae_file_ = path;
    }
    vae_dtype_ = vae_->parameters().front().scalar_type();
    count_bytes();
  }

  std::string family() const override { return text2_ ? "sdxl" : "stable-diffusion"; }
  std::string variant() const override { return variant_; }
  std::vector<loupe::tasks::Task> tasks() const override {
    const int native = static_cast<int>(unet_->cfg.sample_size * vae_->cfg.scale_factor());
    std::vector<loupe::tasks::Task> out;
    for (const auto& name : task_names()) {
      auto t = loupe::tasks::get(name);
      int layers = text_->cfg.num_hidden_layers;
      if (text2_) layers = std::min(layers, text2_->cfg.num_hidden_layers);
      t.param("clip_skip").max = std::max(1, layers);
      if (t.name == "txt2img") t.param("width").def = t.param("height").def = native;
      out.push_back(std::move(t));
    }
    return out;
  }
  uint64_t bytes() const override { return bytes_; }
  void to(torch::Device d) override {
    unet_->to(d);
    vae_->to(d);
    text_->to(d);
    if (text2_) text2_->to(d);
    opts_.device = d;
  }

  Result run_task(const Request& r, JobContext& ctx) override {
    std::lock_guard<std::mutex> lock(mu_);
    torch::NoGradGuard ng;
    if (r.task != "txt2img" && r.task != "img2img" && r.task != "inpaint")
      LOUPE_THROW(InvalidArgument, "Stable Diffusion does not do task '" << r.task << "' (it does txt2img, img2img, inpaint)");
    const int64_t f = vae_->cfg.scale_factor();
    const int native = static_cast<int>(unet_->cfg.sample_size * f);
    pipelines::DiffusionParams p;
    // Parameters resolved against tasks(): present and in range.
    p.sampler = r.text("sampler");
    schedulers::make(p.sampler, sched_);
    p.steps = static_cast<int>(r.integer("steps"));
    p.guidance_scale = r.real("guidance_scale");
    p.strength = r.task == "txt2img" ? 1.0 : r.real("strength");
    p.tiled_vae = r.flag("vae_tiling");
    const int clip_skip = static_cast<int>(r.integer("clip_skip"));
    const int batch = static_cast<int>(r.integer("batch_count"));
    int64_t seed = r.integer("seed");
    if (seed < 0) seed = static_cast<int64_t>(std::random_device{}() & 0x7fffffff);
    // An empty prompt is valid (unconditional generation): like diffusers, "" is BOS, EOS, padding.
    const std::string prompt = r.text("prompt");

    // prompts -> embeddings (same number of 77-token windows for both)
    const std::string negative = r.text("negative_prompt");
    auto pos = tokenize_prompt(*tok_, ids_, prompt);
    auto neg = tokenize_prompt(*tok_, ids_, negative);
    const size_t n = std::max(pos.size(), neg.size());
    torch::Tensor cond, uncond;
    pipelines::AddedConditioning added;
    if (text2_) {
      // SDXL: both encoders; the negative prompt left empty is zeros (force_zeros_for_empty_prompt)
      const bool zero_neg = negative.empty() && force_zeros_;
      const size_t nn = zero_neg ? pos.size() : n;
      auto c = encode_prompt_dual(text_, ids_, pos, text2_, ids2_, tokenize_prompt(*tok2_, ids2_, prompt),
                                  nn, clip_skip, opts_.device);
      cond = c.embeds;
      added.pooled = c.pooled;
      if (p.guidance_scale > 1.0) {
        if (zero_neg) {
          uncond = torch::zeros_like(cond);
          added.negative_pooled = torch::zeros_like(c.pooled);
        } else {
          auto u = encode_prompt_dual(text_, ids_, neg, text2_, ids2_, tokenize_prompt(*tok2_, ids2_, negative), nn, clip_skip,
                                      opts_.device);
          uncond = u.embeds;
          added.negative_pooled = u.pooled;
        }
      }
    } else {
      cond = encode_prompt(text_, ids_, pos, n, clip_skip, opts_.device);
      if (p.guidance_scale > 1.0) uncond = encode_prompt(text_, ids_, neg, n, clip_skip, opts_.device);
    }

    pipelines::DiffusionModels m{unet_, vae_, sched_, opts_.device, opts_.dtype, vae_dtype_};
    Result res;
    res.task = r.task;
    for (int b = 0; b < batch; ++b) {
      p.seed = static_cast<uint64_t>(seed + b);
      const int base_step = b * p.steps;
      auto on_step = [&](int step, int total, const torch::Tensor& latents) {
        ctx.check_cancelled();
        Image preview;
        const Image* pv = nullptr;
        if (ctx.wants_preview()) {
          auto t = pipelines::latent_preview(latents);
          preview.height = static_cast<int>(t.size(0));
          preview.width = static_cast<int>(t.size(1));
          preview.channels = 3;
          preview.pixels.assign(t.data_ptr<uint8_t>(), t.data_ptr<uint8_t>() + t.numel());
          pv = &preview;
        }
        ctx.progress(base_step + step, batch * total, "denoising", pv);
      };
      Image out;
      if (r.task == "txt2img") out = txt2img(m, cond, uncond, r, p, native, on_step, added);
      else if (r.task == "img2img") out = img2img(m, cond, uncond, r, p, on_step, added);
      else out = inpaint(m, cond, uncond, r, p, native, on_step, added);
      res.images.push_back(std::move(out));
    }
    res.numbers["seed"] = static_cast<double>(seed);
    res.numbers["steps"] = p.steps;
    res.strings["sampler"] = p.sampler;
    res.strings["variant"] = variant_;
    if (!vae_file_.empty()) res.strings["vae"] = fs::path(vae_file_).filename().string();
    for (const auto& [file, w] : lora_.active()) res.strings["lora:" + fs::path(file).filename().string()] = std::to_string(w);
    return res;
  }

 private:
  Image txt2img(pipelines::DiffusionModels& m, const torch::Tensor& cond, const torch::Tensor& uncond, const Request& r,
                pipelines::DiffusionParams& p, int native, const pipelines::StepFn& on_step,
                pipelines::AddedConditioning added) {
    (void)native;  // the task's default size (tasks())
    p.width = static_cast<int>(r.integer("width"));
    p.height = static_cast<int>(r.integer("height"));
    if (p.width % 8 || p.height % 8)
      LOUPE_THROW(InvalidArgument, "txt2img: width and height must be multiples of 8 (got " << p.width << "x" << p.height << ")");
    auto_tiling(p);
    set_time_ids(added, p);
    return pipelines::tensor_to_image(pipelines::txt2img(m, cond, uncond, p, on_step, added));
  }

  Image img2img(pipelines::DiffusionModels& m, const torch::Tensor& cond, const torch::Tensor& uncond, const Request& r,
                pipelines::DiffusionParams& p, const pipelines::StepFn& on_step, pipelines::AddedConditioning added) {
    const Image src = to_rgb8(r.image());
    check_image(src);
    processing_size(r, src.width, src.height, p);
    set_time_ids(added, p);
    auto x = pipelines::resize(pipelines::image_to_tensor(src), p.width, p.height) * 2 - 1;
    auto out = pipelines::img2img(m, cond, uncond, x, p, on_step, added);
    return pipelines::tensor_to_image(pipelines::resize(out, src.width, src.height));
  }

  Image inpaint(pipelines::DiffusionModels& m, const torch::Tensor& cond, const torch::Tensor& uncond, const Request& r,
                pipelines::DiffusionParams& p, int native, const pipelines::StepFn& on_step,
                pipelines::AddedConditioning added) {
    const Image src = to_rgb8(r.image());
    check_image(src);
    if (!r.mask) LOUPE_THROW(InvalidArgument, "inpaint needs a mask: set one with loupe_request_set_mask (GRAY8, white = repaint)");
    const Image& mask = *r.mask;
    if (mask.width != src.width || mask.height != src.height)
      LOUPE_THROW(InvalidArgument, "the mask is " << mask.width << "x" << mask.height << " but the image is " << src.width << "x"
                                                  << src.height << "; they must be the same size");
    const pipelines::Rect painted = pipelines::mask_bounds(mask);
    if (painted.empty()) LOUPE_THROW(InvalidArgument, "the mask is empty: paint the area to repaint in white");
    const double blur = r.real("mask_blur");
    const double feather = r.real("feather");
    const bool only_masked = r.flag("only_masked");
    const bool color_fix = r.flag("color_correction");

    pipelines::Rect region{0, 0, src.width, src.height};
    if (only_masked) {
      const int padding = static_cast<int>(r.integer("padding"));
      // generate at the model's native size (or the requested one) with the crop's aspect ratio
      int pw = static_cast<int>(r.integer("width")), ph = static_cast<int>(r.integer("height"));
      if (pw == 0 || ph == 0) {
        const pipelines::Rect grown = pipelines::crop_region(painted, padding, painted.w, painted.h, src.width, src.height);
        const double s = double(native) / std::max(grown.w, grown.h);
        pw = round8(grown.w * s);
        ph = round8(grown.h * s);
      }
      if (pw % 8 || ph % 8) LOUPE_THROW(InvalidArgument, "inpaint: width and height must be multiples of 8");
      region = pipelines::crop_region(painted, padding, pw, ph, src.width, src.height);
      p.width = pw;
      p.height = ph;
    } else {
      processing_size(r, src.width, src.height, p);
    }
    auto_tiling(p);
    const Image src_crop = pipelines::crop(src, region), mask_crop = pipelines::crop(mask, region);
    auto x = pipelines::resize(pipelines::image_to_tensor(src_crop), p.width, p.height) * 2 - 1;
    auto mm = pipelines::model_mask(pipelines::image_to_tensor(mask_crop), blur * std::max(double(p.width) / region.w, 1.0));
    mm = torch::nn::functional::interpolate(mm, torch::nn::functional::InterpolateFuncOptions()
                                                    .size(std::vector<int64_t>{p.height, p.width})
                                                    .mode(torch::kBilinear)
                                                    .align_corners(false));
    mm = (mm > 0.01).to(torch::kFloat32);  // resizing must not shrink the model's mask
    set_time_ids(added, p);
    auto out = pipelines::inpaint(m, cond, uncond, x, mm, p, on_step, added);
    Image gen = pipelines::tensor_to_image(pipelines::resize(out, region.w, region.h));
    if (color_fix) gen = pipelines::color_correct(gen, src_crop, mask_crop, std::max(4, int(feather) + 4));
    // paste back: only inside the painted mask, feathered inwards
    Image gen_full = src;
    for (int y = 0; y < region.h; ++y)
      std::copy_n(gen.row(y), size_t(region.w) * 3, gen_full.row(region.y + y) + size_t(region.x) * 3);
    return pipelines::composite(src, gen_full, pipelines::feather_alpha(mask, feather));
  }

  // img2img / inpainting work at the image's size rounded to multiples of 8 unless width/height
  // are given (the result is resized back to the image).
  void processing_size(const Request& r, int w, int h, pipelines::DiffusionParams& p) {
    // 0 (the task's default) = the image's size rounded to multiples of 8
    p.width = r.integer("width") ? static_cast<int>(r.integer("width")) : round8(w);
    p.height = r.integer("height") ? static_cast<int>(r.integer("height")) : round8(h);
    if (p.width % 8 || p.height % 8)
      LOUPE_THROW(InvalidArgument, r.task << ": width and height must be multiples of 8 (got " << p.width << "x" << p.height << ")");
  }

  // SDXL: diffusers' defaults, original size = target size = the generated size, no crop.
  static void set_time_ids(pipelines::AddedConditioning& added, const pipelines::DiffusionParams& p) {
    if (!added.empty()) added.time_ids = pipelines::time_ids(p.height, p.width, 0, 0, p.height, p.width);
  }

  // Large images decode in tiles instead of running out of memory.
  void auto_tiling(pipelines::DiffusionParams& p) {
    if (int64_t(p.width) * p.height > 1536LL * 1536) p.tiled_vae = true;
  }

  static void check_image(const Image& img) {
    if (img.width < 8 || img.height < 8)
      LOUPE_THROW(InvalidArgument, "the image is " << img.width << "x" << img.height << "; at least 8x8 pixels are needed");
  }

  ModelOptions opts_;
  UNet2DConditionModel unet_{nullptr};
  AutoencoderKL vae_{nullptr};
  AutoencoderKL own_vae_{nullptr};  // the checkpoint's VAE (vae_ unless an external one is set)
  std::string vae_file_;            // the external VAE, "" = none
  clip::ClipTextModel text_{nullptr};
  std::shared_ptr<text::BpeTokenizer> tok_;
  ClipTokens ids_;
  clip::ClipTextModel text2_{nullptr};  // SDXL's second encoder (null for SD 1.x/2.x)
  std::shared_ptr<text::BpeTokenizer> tok2_;
  ClipTokens ids2_;
  bool force_zeros_ = true;
  schedulers::SchedulerConfig sched_;
  std::string variant_;
  torch::ScalarType vae_dtype_ = torch::kFloat32;
  uint64_t bytes_ = 0;
  LoraSet lora_;
  std::mutex mu_;
};

std::shared_ptr<Model> load_model(const std::string& path, const ModelOptions& o) {
  return std::make_shared<StableDiffusionModel>(path, o);
}

ModelFamily family() {
  ModelFamily f;
  f.name = "stable-diffusion";
  f.bf16_on_fast_cpu = true;
  f.tasks = task_names();
  f.detect = [](const std::string& path) -> std::string {
    if (fs::is_directory(path)) {
      const fs::path idx = fs::path(path) / "model_index.json";
      if (!fs::exists(idx)) return "";
      const auto j = io::read_json_file(idx.string());
      const std::string cls = j.value("_class_name", "");
      if (cls.rfind("StableDiffusion", 0) != 0 || cls.find("XL") != std::string::npos || cls.find("3") != std::string::npos)
        return "";
      return cls.find("Inpaint") != std::string::npos ? "sd-inpainting" : "sd";
    }
    return detect_single_file(path);
  };
  f.load = [](const std::string& path, const ModelOptions& o) -> std::shared_ptr<Model> {
    return std::make_shared<StableDiffusionModel>(path, o);
  };
  f.inspect = [](const std::string& path, nlohmann::json& report) {
    inspect_folders(path, {"unet", "vae", "text_encoder", "tokenizer", "scheduler"}, report);
  };
  return f;
}

const std::vector<std::string>& task_names() {
  static const std::vector<std::string> names = {"txt2img", "img2img", "inpaint"};
  return names;
}

void inspect_folders(const std::string& path, const std::vector<const char*>& subfolders, nlohmann::json& report) {
  if (!fs::is_directory(path)) return;
  const fs::path d(path);
  for (const char* sub : subfolders)
    if (!fs::is_directory(d / sub))
      report["problems"].push_back({{"severity", "error"},
                                    {"message", std::string("the folder '") + sub + "' is missing in " + path},
                                    {"remedy", "download the whole diffusers repository (all its folders)"}});
}

}  // namespace loupe::sd
