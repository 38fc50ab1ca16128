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
#include "core/hub.h"
#include "core/log.h"
#include "io/checkpoint.h"
#include "io/config.h"
#include "io/state_dict.h"
#include "models/clip/clip_text.h"
#include "models/clip/clip_vocab.h"
#include "models/sd/lora.h"
#include "models/sd/prompt.h"
#include "models/sd/single_file.h"
#include "pipelines/compose.h"
#include "pipelines/diffusion.h"
#include "text/bpe_tokenizer.h"

namespace fs = std::filesystem;

namespace loupe::sd {

namespace {

std::string variant_name(const UNetConfig& u, const clip::TextConfig& t, const std::string& prediction, bool aesthetic) {
  if (u.text_time) return u.in_channels == 9 ? "sdxl-inpainting" : aesthetic ? "sdxl-refiner" : "sdxl";
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
    if (text2_) {
      // 5 time ids: the refiner's aesthetic-score conditioning (requires_aesthetics_score)
      const auto& u = unet_->cfg;
      const int64_t pooled = text2_->cfg.with_projection ? text2_->cfg.projection_dim : text2_->cfg.hidden_size;
      aesthetic_ = u.projection_class_embeddings_input_dim == pooled + 5 * u.addition_time_embed_dim;
    }
    variant_ = variant_name(unet_->cfg, (text_ ? text_ : text2_)->cfg, sched_.prediction_type, aesthetic_);
    vae_dtype_ = vae_->parameters().front().scalar_type();
    count_bytes();
  }

  void count_bytes() {
    bytes_ = 0;
    for (auto* m : {static_cast<torch::nn::Module*>(unet_.get()), static_cast<torch::nn::Module*>(vae_.get()),
                    text_ ? static_cast<torch::nn::Module*>(text_.get()) : nullptr,
                    text2_ ? static_cast<torch::nn::Module*>(text2_.get()) : nullptr})
      if (m)
        for (const auto& p : m->parameters()) bytes_ += p.numel() * p.element_size();
  }

  // What a checkpoint gives, whatever its layout.
  using Components = SingleFile;

  Components load_folder(const std::string& dir) {
    Components c;
    const fs::path d(dir);
    // SDXL's refiner has no text_encoder/ and tokenizer/ (encoder 2 alone)
    const bool encoder2_only = !fs::is_directory(d / "text_encoder") && fs::is_directory(d / "text_encoder_2");
    for (const char* sub : {"unet", "vae", "text_encoder", "tokenizer", "scheduler"})
      if (!fs::is_directory(d / sub) && !(encoder2_only && (std::string(sub) == "text_encoder" || std::string(sub) == "tokenizer")))
        LOUPE_THROW(BadModel, dir << ": the folder '" << sub << "' of the diffusers layout is missing");
    // Everything cheap first (configs, tokenizer, tensor names and shapes), then the weights.
    const auto tdir = (d / "tokenizer").string();
    if (!encoder2_only) {
      c.tokenizer =
          text::BpeTokenizer::from_vocab_merges(tdir + "/vocab.json", tdir + "/merges.txt", text::BpeTokenizer::Flavor::Clip);
      c.ids = clip_tokens(c.tokenizer, tdir);
    }
    const auto scfg = (d / "scheduler" / "scheduler_config.json").string();
    c.scheduler = schedulers::SchedulerConfig::from_json(io::read_json_file(scfg), scfg);
    io::BindOptions bo;
    bo.device = opts_.device;
    bo.dtype = opts_.dtype;
    const auto ucfg = (d / "unet" / "config.json").string();
    c.unet = UNet2DConditionModel(UNetConfig::from_json(io::read_json_file(ucfg), ucfg));
    c.unet->to(opts_.device, opts_.dtype);
    // a folder with fp16 (bf16) variants beside the full weights: the session's dtype picks
    const std::string variant = io::Checkpoint::variant_for(opts_.dtype);
    const auto unet_ck = io::Checkpoint::open((d / "unet").string(), variant);
    const auto vcfg = (d / "vae" / "config.json").string();
    c.vae = AutoencoderKL(VaeConfig::from_json(io::read_json_file(vcfg), vcfg));
    io::BindOptions vo = bo;
    vo.dtype = vae_dtype(opts_.dtype, opts_.device, c.vae->cfg);
    c.vae->to(opts_.device, *vo.dtype);
    const auto vae_ck = io::Checkpoint::open((d / "vae").string(), io::Checkpoint::variant_for(*vo.dtype));
    io::BindOptions to = bo;
    to.allow_missing = [](const std::string& k) { return k.find("position_ids") != std::string::npos; };
    std::optional<io::Checkpoint> text_ck;
    if (!encoder2_only) {
      const auto tcfg = (d / "text_encoder" / "config.json").string();
      c.text = clip::ClipTextModel(clip::TextConfig::load(tcfg));
      c.text->to(opts_.device, opts_.dtype);
      text_ck = io::Checkpoint::open((d / "text_encoder").string(), variant);
    }
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
      text2_ck = io::Checkpoint::open((d / "text_encoder_2").string(), variant);
      const auto idx = d / "model_index.json";
      if (fs::exists(idx))
        c.force_zeros_for_empty_prompt = io::get_or<bool>(io::read_json_file(idx.string()), "force_zeros_for_empty_prompt", !encoder2_only, idx.string());
      else
        c.force_zeros_for_empty_prompt = !encoder2_only;  // the refiner's pipeline: False
    }
    check_components(c, dir);
    io::check(*c.unet, unet_ck, bo);
    io::check(*c.vae, vae_ck, vo);
    if (c.text) io::check(*c.text, *text_ck, to);
    if (c.text2) io::check(*c.text2, *text2_ck, to);
    io::bind(*c.unet, unet_ck, bo);
    io::bind(*c.vae, vae_ck, vo);
    if (c.text) {
      io::bind(*c.text, *text_ck, to);
      c.text->eval();
    }
    if (c.text2) {
      io::bind(*c.text2, *text2_ck, to);
      c.text2->eval();
    }
    c.unet->eval();
    c.vae->eval();
    return c;
  }

  Components load_single_file(const std::string& file, const ModelOptions& o) {
    return read_single_file(file, o.device, o.dtype, o.models_dir);
  }

  // LoRA files merge into the weights; a running job finishes first (the model's lock).
  void set_lora(const std::string& path, float weight) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (text_) lora_.set(path, weight, *unet_, *text_, text2_ ? text2_.get() : nullptr);
    else lora_.set(path, weight, *unet_, *text2_);  // the refiner: encoder 2 alone
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
      int layers = (text_ ? text_ : text2_)->cfg.num_hidden_layers;
      if (text2_) layers = std::min(layers, text2_->cfg.num_hidden_layers);
      t.param("clip_skip").max = std::max(1, layers);
      if (t.name == "txt2img") t.param("width").def = t.param("height").def = native;
      // SDXL's trained sizes (about one megapixel in its aspect-ratio buckets), offered as presets
      if (text2_ && t.name == "txt2img")
        t.param("width").choices = {"1024x1024", "1152x896", "896x1152", "1216x832", "832x1216",
                                    "1344x768",  "768x1344", "1536x640", "640x1536"};
      // SDXL's micro-conditioning: SDXL sessions only; the aesthetic scores are the refiner's (the
      // base's txt2img passes them to its refiner), the target size the base's
      auto drop = [&](const std::vector<std::string>& names) {
        for (const auto& n : names)
          t.params.erase(std::remove_if(t.params.begin(), t.params.end(), [&](const loupe::tasks::Param& p) { return p.name == n; }),
                         t.params.end());
      };
      if (!text2_)
        drop({"original_width", "original_height", "crop_left", "crop_top", "target_width", "target_height", "aesthetic_score",
              "negative_aesthetic_score"});
      else if (aesthetic_)
        drop({"target_width", "target_height"});
      else if (t.name != "txt2img")
        drop({"aesthetic_score", "negative_aesthetic_score"});
      out.push_back(std::move(t));
    }
    return out;
  }
  uint64_t bytes() const override { return bytes_ + (refiner_ ? refiner_->bytes() : 0); }
  void to(torch::Device d) override {
    unet_->to(d);
    vae_->to(d);
    if (text_) text_->to(d);
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

    const Conditioning c = encode(prompt, r.text("negative_prompt"), clip_skip, p.guidance_scale > 1.0);
    const torch::Tensor& cond = c.cond;
    const torch::Tensor& uncond = c.uncond;
    const pipelines::AddedConditioning& added = c.added;

    // SDXL's hand-over (txt2img): this model denoises down to refiner_switch, the refiner the rest
    std::shared_ptr<StableDiffusionModel> refiner;
    if (r.task == "txt2img" && !r.text("refiner").empty()) {
      refiner = refiner_for(r.text("refiner"));
      p.denoising_end = r.real("refiner_switch");
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
          preview = pipelines::hwc_to_image(pipelines::latent_preview(latents));
          pv = &preview;
        }
        ctx.progress(base_step + step, batch * total, "denoising", pv);
      };
      Image out;
      if (refiner) out = txt2img_refined(m, c, r, p, *refiner, on_step);
      else if (r.task == "txt2img") out = txt2img(m, cond, uncond, r, p, native, on_step, added);
      else if (r.task == "img2img") out = img2img(m, cond, uncond, r, p, on_step, added);
      else out = inpaint(m, cond, uncond, r, p, native, on_step, added);
      res.images.push_back(std::move(out));
    }
    res.numbers["seed"] = static_cast<double>(seed);
    res.numbers["steps"] = p.steps;
    res.strings["sampler"] = p.sampler;
    res.strings["variant"] = variant_;
    if (!vae_file_.empty()) res.strings["vae"] = fs::path(vae_file_).filename().string();
    if (refiner) {
      res.strings["refiner"] = refiner->variant();
      res.numbers["refiner_switch"] = p.denoising_end;
    }
    for (const auto& [file, w] : lora_.active()) res.strings["lora:" + fs::path(file).filename().string()] = std::to_string(w);
    return res;
  }

  // The prompt and negative prompt through the text encoder(s): SD 1.x/2.x's one; SDXL's two (the
  // refiner's encoder 2 alone) with the pooled embedding, an empty negative prompt being zeros when
  // the model says force_zeros_for_empty_prompt. Same number of 77-token windows for both.
  struct Conditioning {
    torch::Tensor cond, uncond;
    pipelines::AddedConditioning added;
  };
  Conditioning encode(const std::string& prompt, const std::string& negative, int clip_skip, bool guidance) {
    Conditioning c;
    if (!text2_) {
      auto pos = tokenize_prompt(*tok_, ids_, prompt);
      auto neg = tokenize_prompt(*tok_, ids_, negative);
      const size_t n = std::max(pos.size(), neg.size());
      c.cond = encode_prompt(text_, ids_, pos, n, clip_skip, opts_.device);
      if (guidance) c.uncond = encode_prompt(text_, ids_, neg, n, clip_skip, opts_.device);
      return c;
    }
    auto chunks1 = [&](const std::string& t) { return text_ ? tokenize_prompt(*tok_, ids_, t) : std::vector<PromptChunk>{}; };
    const auto pos1 = chunks1(prompt), neg1 = chunks1(negative);
    const auto pos2 = tokenize_prompt(*tok2_, ids2_, prompt), neg2 = tokenize_prompt(*tok2_, ids2_, negative);
    const bool zero_neg = negative.empty() && force_zeros_;
    const size_t n = zero_neg ? std::max(pos1.size(), pos2.size()) : std::max({pos1.size(), neg1.size(), pos2.size(), neg2.size()});
    auto e = encode_prompt_dual(text_, ids_, pos1, text2_, ids2_, pos2, n, clip_skip, opts_.device);
    c.cond = e.embeds;
    c.added.pooled = e.pooled;
    if (guidance) {
      if (zero_neg) {
        c.uncond = torch::zeros_like(c.cond);
        c.added.negative_pooled = torch::zeros_like(e.pooled);
      } else {
        auto u = encode_prompt_dual(text_, ids_, neg1, text2_, ids2_, neg2, n, clip_skip, opts_.device);
        c.uncond = u.embeds;
        c.added.negative_pooled = u.pooled;
      }
    }
    return c;
  }

  // The refiner named by a request, loaded once and kept (another one replaces it).
  std::shared_ptr<StableDiffusionModel> refiner_for(const std::string& path) {
    if (refiner_ && refiner_path_ == path) return refiner_;
    refiner_.reset();
    auto m = std::make_shared<StableDiffusionModel>(path, opts_);
    if (m->vae_->cfg.latent_channels != vae_->cfg.latent_channels || m->vae_->cfg.scaling_factor != vae_->cfg.scaling_factor ||
        m->unet_->cfg.in_channels != m->unet_->cfg.out_channels)
      LOUPE_THROW(InvalidArgument, path << ": this model (" << m->variant() << ") cannot take over from " << variant_
                                        << ": its latents differ (latent channels " << m->vae_->cfg.latent_channels
                                        << ", scaling " << m->vae_->cfg.scaling_factor << " vs " << vae_->cfg.latent_channels
                                        << ", " << vae_->cfg.scaling_factor << "); hint: choose an SDXL refiner (or a "
                                        << "base model of the same family)");
    refiner_ = m;
    refiner_path_ = path;
    return refiner_;
  }

  // txt2img with the hand-over as diffusers runs it: StableDiffusionXLPipeline(denoising_end,
  // output_type="latent") here, StableDiffusionXLImg2ImgPipeline(image=latents, denoising_start) on
  // the refiner, each from the job's seed.
  Image txt2img_refined(pipelines::DiffusionModels& m, const Conditioning& c, const Request& r, pipelines::DiffusionParams& p,
                        StableDiffusionModel& refiner, const pipelines::StepFn& on_step) {
    p.width = static_cast<int>(r.integer("width"));
    p.height = static_cast<int>(r.integer("height"));
    if (p.width % 8 || p.height % 8)
      LOUPE_THROW(InvalidArgument, "txt2img: width and height must be multiples of 8 (got " << p.width << "x" << p.height << ")");
    auto_tiling(p);
    pipelines::AddedConditioning added = c.added;
    set_time_ids(added, p, r);
    int done = 0;
    auto base_step = [&](int step, int total, const torch::Tensor& l) {
      done = step;
      if (on_step) on_step(step, total, l);
    };
    const auto latents = pipelines::txt2img_latents(m, c.cond, c.uncond, p, base_step, added);
    pipelines::DiffusionParams q = p;
    q.denoising_start = p.denoising_end;
    q.denoising_end = 1.0;
    auto refiner_step = [&](int step, int total, const torch::Tensor& l) {
      if (on_step) on_step(done + step, done + total, l);
    };
    return pipelines::tensor_to_image(refiner.continue_latents(r, latents, q, refiner_step));
  }

 public:
  // The refiner's part of a hand-over: its own encoders and added conditioning, the steps after
  // p.denoising_start from `latents`; the decoded image.
  torch::Tensor continue_latents(const Request& r, const torch::Tensor& latents, pipelines::DiffusionParams p,
                                 const pipelines::StepFn& on_step) {
    std::lock_guard<std::mutex> lock(mu_);
    torch::NoGradGuard ng;
    schedulers::make(p.sampler, sched_);
    const Conditioning c = encode(r.text("prompt"), r.text("negative_prompt"),
                                  std::min<int>(static_cast<int>(r.integer("clip_skip")), (text_ ? text_ : text2_)->cfg.num_hidden_layers),
                                  p.guidance_scale > 1.0);
    const int64_t f = vae_->cfg.scale_factor();
    p.height = static_cast<int>(latents.size(2) * f);
    p.width = static_cast<int>(latents.size(3) * f);
    pipelines::AddedConditioning added = c.added;
    set_time_ids(added, p, r);
    pipelines::DiffusionModels m{unet_, vae_, sched_, opts_.device, opts_.dtype, vae_dtype_};
    return pipelines::continue_from(m, c.cond, c.uncond, latents, p, on_step, added);
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
    set_time_ids(added, p, r);
    return pipelines::tensor_to_image(pipelines::txt2img(m, cond, uncond, p, on_step, added));
  }

  Image img2img(pipelines::DiffusionModels& m, const torch::Tensor& cond, const torch::Tensor& uncond, const Request& r,
                pipelines::DiffusionParams& p, const pipelines::StepFn& on_step, pipelines::AddedConditioning added) {
    const Image src = to_rgb8(r.image());
    check_image(src);
    processing_size(r, src.width, src.height, p);
    set_time_ids(added, p, r);
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
    // The region, processing size, model mask and composite as every diffusion family does them.
    pipelines::InpaintSettings s;
    s.mask_blur = r.real("mask_blur");
    s.feather = r.real("feather");
    s.only_masked = r.flag("only_masked");
    s.color_correction = r.flag("color_correction");
    s.padding = static_cast<int>(r.integer("padding"));
    s.width = static_cast<int>(r.integer("width"));
    s.height = static_cast<int>(r.integer("height"));
    s.native = native;
    s.multiple = 8;
    return pipelines::inpaint_around(src, *r.mask, s, [&](const torch::Tensor& x, const torch::Tensor& mm) {
      p.width = static_cast<int>(x.size(3));
      p.height = static_cast<int>(x.size(2));
      auto_tiling(p);
      set_time_ids(added, p, r);
      return pipelines::inpaint(m, cond, uncond, x, mm, p, on_step, added);
    });
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

  // SDXL's added time ids as diffusers' pipelines build them from original_size,
  // crops_coords_top_left and target_size (0 = diffusers' default: the generated size, no crop);
  // the refiner (requires_aesthetics_score): original size, crop, aesthetic_score (6) and for the
  // negative conditioning the original size, no crop (diffusers' default negative_crops_coords_top_left
  // (0, 0)) and negative_aesthetic_score (2.5). Without aesthetic scores the negative ids are the
  // positive ones (diffusers' defaults: negative_original_size = original_size, and so on).
  void set_time_ids(pipelines::AddedConditioning& added, const pipelines::DiffusionParams& p, const Request& r) const {
    if (added.empty()) return;
    auto value = [&](const char* key, int fallback) {
      const int64_t v = r.ints.count(key) ? r.integer(key) : 0;
      return v > 0 ? static_cast<int>(v) : fallback;
    };
    const int oh = value("original_height", p.height), ow = value("original_width", p.width);
    const int top = value("crop_top", 0), left = value("crop_left", 0);
    if (aesthetic_) {
      const double score = r.floats.count("aesthetic_score") ? r.real("aesthetic_score") : kAestheticScore;
      const double negative = r.floats.count("negative_aesthetic_score") ? r.real("negative_aesthetic_score") : kNegativeAestheticScore;
      added.time_ids = pipelines::aesthetic_time_ids(oh, ow, top, left, score);
      added.negative_time_ids = pipelines::aesthetic_time_ids(oh, ow, 0, 0, negative);
    } else {
      added.time_ids = pipelines::time_ids(oh, ow, top, left, value("target_height", p.height), value("target_width", p.width));
    }
  }
  static constexpr double kAestheticScore = 6.0, kNegativeAestheticScore = 2.5;  // diffusers' defaults

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
  bool aesthetic_ = false;  // the SDXL refiner's conditioning (5 time ids)
  std::shared_ptr<StableDiffusionModel> refiner_;  // the hand-over's refiner, kept between jobs
  std::string refiner_path_;
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
      const auto cls = io::get_or<std::string>(j, "_class_name", "", idx.string());
      if (cls.rfind("StableDiffusion", 0) != 0 || cls.find("XL") != std::string::npos || cls.find("3") != std::string::npos)
        return "";
      return cls.find("Inpaint") != std::string::npos ? "sd-inpainting" : "sd";
    }
    const std::string v = detect_single_file(path);
    return v.rfind("sdxl", 0) == 0 ? "" : v;  // SDXL files: the "sdxl" family
  };
  f.load = [](const std::string& path, const ModelOptions& o) -> std::shared_ptr<Model> {
    return std::make_shared<StableDiffusionModel>(path, o);
  };
  f.inspect = [](const std::string& path, nlohmann::json& report) {
    inspect_folders(path, {"unet", "vae", "text_encoder", "tokenizer", "scheduler"}, report);
    inspect_single_file_tokenizer(path, report);
  };
  return f;
}

const std::vector<std::string>& task_names() {
  static const std::vector<std::string> names = {"txt2img", "img2img", "inpaint"};
  return names;
}

void inspect_single_file_tokenizer(const std::string& path, nlohmann::json& report) {
  if (!fs::is_regular_file(path) || !single_file_tokenizer(path).empty()) return;
  std::string which;
  const std::string from = hub::endpoint() + "/" + clip::clip_vocab_fetch_repo();
  if (hub::offline(&which))
    report["problems"].push_back(
        {{"severity", "error"},
         {"message", "no CLIP tokenizer (vocab.json, merges.txt) for this single-file checkpoint on this machine, and "
                     "offline mode is on (" + which + "), so it cannot be fetched from " + from},
         {"remedy", clip::clip_vocab_hint()}});
  else
    report["problems"].push_back(
        {{"severity", "info"},
         {"message", "no CLIP tokenizer (vocab.json, merges.txt) for this single-file checkpoint on this machine: it "
                     "is fetched once from " + from + " (a few MB) when the model is first opened"},
         {"remedy", clip::clip_vocab_hint()}});
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
