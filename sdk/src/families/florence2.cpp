// Florence-2 as a Loupe Model: loading (transformers-native layout), preprocessing on the
// session's device, the task prompts, generation and post-processing into Results.
#include "families/florence2.h"

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "core/runtime.h"
#include "families/hf_folder.h"
#include "io/checkpoint.h"
#include "io/config.h"
#include "io/state_dict.h"
#include "models/florence2/config.h"
#include "models/florence2/generate.h"
#include "models/florence2/modeling.h"
#include "models/florence2/preprocess.h"
#include "nn/pil_resize.h"
#include "models/florence2/processor.h"
#include "text/bpe_tokenizer.h"

namespace fs = std::filesystem;

namespace loupe::florence2 {

namespace {

// Module names -> the names of the first (remote-code) Florence-2 releases. The same mapping as
// transformers' conversion script, inverted.
io::KeyMap original_keymap() {
  const std::string blk = "^model\\.vision_tower\\.(blocks\\.\\d+\\.\\d+\\.";
  io::KeyMap k;
  k.regex("^model\\.vision_tower\\.convs\\.(\\d+)\\.conv\\.", "vision_tower.convs.$1.proj.")
      .regex(blk + "\\w+_block)\\.conv([12])\\.", "vision_tower.$1.conv$2.fn.dw.")
      .regex(blk + "spatial_block)\\.norm1\\.", "vision_tower.$1.window_attn.norm.")
      .regex(blk + "channel_block)\\.norm1\\.", "vision_tower.$1.channel_attn.norm.")
      .regex(blk + "\\w+_block)\\.(window_attn|channel_attn)\\.", "vision_tower.$1.$2.fn.")
      .regex(blk + "\\w+_block)\\.norm2\\.", "vision_tower.$1.ffn.norm.")
      .regex(blk + "\\w+_block)\\.ffn\\.(fc[12])\\.", "vision_tower.$1.ffn.fn.net.$2.")
      .prefix("model.vision_tower.", "vision_tower.")
      .regex("^model\\.multi_modal_projector\\.image_projection\\.weight$", "image_projection")
      .prefix("model.multi_modal_projector.image_position_embed.", "image_pos_embed.")
      .prefix("model.multi_modal_projector.", "")
      .prefix("model.language_model.", "language_model.model.")
      // stored as a raw [vision_dim, projection_dim] parameter, used as x @ W
      .transform("^model\\.multi_modal_projector\\.image_projection\\.weight$", [](const torch::Tensor& t) { return t.t(); });
  return k;
}

std::string variant_of(const Config& c) {
  const int d = c.text.d_model;
  if (d == 768) return "florence2-base";
  if (d == 1024) return "florence2-large";
  return "florence2-d" + std::to_string(d);
}

class Florence2Model : public Model {
 public:
  Florence2Model(const std::string& dir, const ModelOptions& o)
      : cfg_(Config::load(dir)), tok_(text::BpeTokenizer::load_from_dir(dir)), net_(cfg_), dtype_(o.dtype) {
    net_->eval();
    auto ckpt = io::Checkpoint::open(dir);
    io::BindOptions bo;
    bo.dtype = o.dtype;
    bo.device = o.device;
    net_->to(o.device, o.dtype);
    if (cfg_.original_layout) bo.keymap = original_keymap();
    io::bind(*net_, ckpt, bo);
    bytes_ = 0;
    for (const auto& p : net_->parameters()) bytes_ += p.numel() * p.element_size();
    if (tok_.token_to_id("<loc_0>") < 0 || tok_.token_to_id("<loc_999>") < 0)
      LOUPE_THROW(BadModel, "tokenizer in " << dir << ": the <loc_0>..<loc_999> tokens of Florence-2 are missing");
    if (static_cast<int64_t>(tok_.vocab_size()) > cfg_.text.vocab_size)
      LOUPE_THROW(BadModel, "tokenizer in " << dir << " has " << tok_.vocab_size() << " tokens, the model's embedding "
                                           << cfg_.text.vocab_size);
  }

  std::string family() const override { return "florence2"; }
  std::string variant() const override { return variant_of(cfg_); }
  std::vector<loupe::tasks::Task> tasks() const override {
    std::vector<loupe::tasks::Task> t;
    for (const auto& s : florence2::tasks()) {
      auto x = loupe::tasks::get(s.abi_task);
      // The generation settings of the checkpoint's config are the defaults.
      x.param("num_beams").def = cfg_.num_beams;
      x.param("no_repeat_ngram_size").def = cfg_.no_repeat_ngram_size;
      // The decoder's learned positions bound the output (decoder start token included).
      auto& mnt = x.param("max_new_tokens");
      mnt.max = cfg_.text.max_position_embeddings - 1;
      mnt.def = std::min<double>(cfg_.max_new_tokens, mnt.max);
      // Florence-2 writes English only and takes no caption prefix: it does not offer the table's
      // "language" or "prefix" (so a request that sets one is refused as an unknown parameter, not
      // silently ignored).
      x.params.erase(std::remove_if(x.params.begin(), x.params.end(),
                                    [](const loupe::tasks::Param& p) { return p.name == "language" || p.name == "prefix"; }),
                     x.params.end());
      t.push_back(std::move(x));
    }
    return t;
  }
  uint64_t bytes() const override { return bytes_; }
  void to(torch::Device d) override {
    net_->to(d);
    device_ = d;
  }

  Result run_task(const Request& r, JobContext& ctx) override {
    const TaskSpec* spec = find_task(r.task);
    if (!spec) LOUPE_THROW(InvalidArgument, "Florence-2 does not do task '" << r.task << "'");
    if (r.images.empty()) LOUPE_THROW(InvalidArgument, "task '" << r.task << "' needs an image: set one with loupe_request_set_image");
    // Parameters resolved against tasks(): present and in range.
    GenerateOptions go;
    go.num_beams = static_cast<int>(r.integer("num_beams"));
    go.no_repeat_ngram_size = static_cast<int>(r.integer("no_repeat_ngram_size"));
    go.max_new_tokens = static_cast<int>(r.integer("max_new_tokens"));
    go.early_stopping = cfg_.early_stopping;
    go.length_penalty = cfg_.length_penalty;
    Result out;
    out.task = r.task;
    const int n_images = static_cast<int>(r.images.size());
    // Every image's encoder input: the image features, then the task prompt.
    std::vector<torch::Tensor> encs;
    std::vector<std::string> prompts;
    for (int i = 0; i < n_images; ++i) {
      const Image& im = r.images[i];
      if (im.width < 8 || im.height < 8)
        LOUPE_THROW(InvalidArgument, "image " << i << " is " << im.width << "x" << im.height << ": Florence-2 needs at least 8x8 pixels");
      if (static_cast<int64_t>(im.width) * im.height > (int64_t(1) << 26))
        LOUPE_THROW(InvalidArgument, "image " << i << " is " << im.width << "x" << im.height
                                              << " (over 64 Mpixel); Florence-2 sees it at " << cfg_.image_size
                                              << " px anyway: downscale it first");
      const std::array<float, 4>* region = r.region ? &*r.region : nullptr;
      prompts.push_back(build_prompt(*spec, r.get_string("text"), region, im.width, im.height));
    }
    ctx.progress(0, go.max_new_tokens, "encode");
    std::vector<torch::Tensor> inputs;
    for (int i = 0; i < n_images; ++i) {
      std::vector<int64_t> ids(cfg_.image_tokens(), cfg_.image_token_id);
      ids.push_back(tok_.bos_id());
      for (auto t : tok_.encode(prompts[i])) ids.push_back(t);
      ids.push_back(tok_.eos_id());
      inputs.push_back(torch::tensor(ids, torch::dtype(torch::kLong)).to(device_).unsqueeze(0));
    }
    bool same_length = true;
    for (const auto& in : inputs) same_length = same_length && in.size(1) == inputs[0].size(1);
    std::vector<std::vector<int64_t>> gens;
    if (go.num_beams == 1 && n_images > 1 && same_length) {
      // one batch through the vision tower, the encoder and greedy decoding
      std::vector<torch::Tensor> pix;
      for (const auto& im : r.images) pix.push_back(preprocess_image(im, cfg_, device_, dtype_));
      auto feats = net_->image_features(torch::cat(pix, 0));
      auto enc = net_->encode(torch::cat(inputs, 0), feats);
      go.on_step = [&](int step, int total) { ctx.progress(step, total, "generate"); };
      gens = generate_greedy_batch(*net_, enc, go);
    } else {
      for (int i = 0; i < n_images; ++i) {
        auto feats = net_->image_features(preprocess_image(r.images[i], cfg_, device_, dtype_));
        auto enc = net_->encode(inputs[i], feats);
        go.on_step = [&](int step, int total) { ctx.progress(step, total, n_images > 1 ? "generate " + std::to_string(i + 1) : "generate"); };
        gens.push_back(generate(*net_, enc, go));
      }
    }
    for (int i = 0; i < n_images; ++i) {
      const auto& gen = gens[i];
      const std::string text = tok_.decode(std::vector<int64_t>(gen.begin() + 1, gen.end()), false);
      Result one;
      parse(*spec, text, r.images[i].width, r.images[i].height, one, cfg_.banned_grounding_tokens);
      merge(out, one, i, n_images);
      out.strings["raw_" + std::to_string(i)] = text;
    }
    return out;
  }

 private:
  static void merge(Result& out, const Result& one, int index, int count) {
    if (count == 1) {
      out.text = one.text;
    } else {
      out.text += (index ? "\n" : "") + one.text;
    }
    const int group_base = out.polygons.empty() ? 0 : out.polygons.back().group + 1;
    for (auto b : one.boxes) {
      if (count > 1) b.label = std::to_string(index) + ":" + b.label;
      out.boxes.push_back(b);
    }
    for (auto p : one.polygons) {
      p.group += group_base;
      out.polygons.push_back(p);
    }
  }

  Config cfg_;
  text::BpeTokenizer tok_;
  Florence2 net_;
  torch::ScalarType dtype_;
  torch::Device device_{torch::kCPU};
  uint64_t bytes_ = 0;
};

bool has_any(const fs::path& dir, std::initializer_list<const char*> names) {
  for (const char* n : names)
    if (fs::exists(dir / n)) return true;
  return false;
}

}  // namespace

// PIL's Image.resize(BICUBIC) on an 8-bit image, as the reference processor runs it (nn::pil_resize:
// PIL's to the bit), then transformers' rescale and normalisation.
torch::Tensor preprocess_image(const Image& im, const Config& cfg, torch::Device device, torch::ScalarType dtype) {
  const Image rgb = im.to_rgb();
  auto t = torch::from_blob(const_cast<uint8_t*>(rgb.pixels.data()), {rgb.height, rgb.width, 3}, torch::kUInt8)
               .to(device);  // [H, W, 3] uint8; the passes compute in int32
  const int s = cfg.image_size;
  t = nn::pil_resize(t, s, s, nn::PilFilter::Bicubic);
  t = t.permute({2, 0, 1}).to(torch::kInt32);  // [3, S, S]
  // rescale (float64 -> float32, as transformers' rescale) and normalise in float32
  auto x = (t.to(torch::kFloat64) * cfg.rescale_factor).to(torch::kFloat32).unsqueeze(0);
  auto mean = torch::tensor(cfg.image_mean).to(device).view({1, 3, 1, 1});
  auto std = torch::tensor(cfg.image_std).to(device).view({1, 3, 1, 1});
  return ((x - mean) / std).to(dtype);
}

ModelFamily family() {
  ModelFamily f;
  f.name = "florence2";
  for (const auto& t : florence2::tasks()) f.tasks.push_back(t.abi_task);
  f.detect = families::detect_by_model_type("florence2", "florence2", [](const std::string& p) { return variant_of(Config::load(p)); });
  f.load = [](const std::string& path, const ModelOptions& o) -> std::shared_ptr<Model> {
    return std::make_shared<Florence2Model>(path, o);
  };
  f.inspect = [](const std::string& path, nlohmann::json& report) {
    const fs::path d(path);
    auto problem = [&](const std::string& msg, const std::string& remedy) {
      report["problems"].push_back({{"severity", "error"}, {"message", msg}, {"remedy", remedy}});
    };
    if (!has_any(d, {"model.safetensors", "model.safetensors.index.json", "pytorch_model.bin"}))
      problem("no weights (model.safetensors or pytorch_model.bin) in " + path, "download the model's weight files");
    if (!has_any(d, {"tokenizer.json", "vocab.json"}))
      problem("no tokenizer (tokenizer.json or vocab.json + merges.txt) in " + path, "download the tokenizer files");
    if (fs::exists(d / "vocab.json") && !fs::exists(d / "merges.txt"))
      problem("vocab.json without merges.txt in " + path, "download merges.txt");
    nlohmann::json settings;
    try {
      if (image_processor_settings(path, &settings).empty())
        report["problems"].push_back(
            {{"severity", "warning"},
             {"message", "no image processor settings (preprocessor_config.json, or processor_config.json with "
                         "\"image_processor\"): using 768 px and ImageNet mean/std"},
             {"remedy", "download preprocessor_config.json (or processor_config.json)"}});
    } catch (const Error& e) {
      problem(e.what(), "download the processor configuration again");
    }
    try {
      Config::load(path);
    } catch (const Error& e) {
      problem(e.what(), "download config.json again");
    }
  };
  return f;
}

}  // namespace loupe::florence2
