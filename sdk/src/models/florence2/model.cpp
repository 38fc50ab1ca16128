// Florence-2 as a Loupe Model: loading (transformers-native layout), preprocessing on the
// session's device, the task prompts, generation and post-processing into Results.
#include <filesystem>

#include "core/runtime.h"
#include "io/checkpoint.h"
#include "io/config.h"
#include "io/state_dict.h"
#include "models/florence2/config.h"
#include "models/florence2/family.h"
#include "models/florence2/generate.h"
#include "models/florence2/modeling.h"
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
  std::vector<std::string> tasks() const override {
    std::vector<std::string> t;
    for (const auto& s : florence2::tasks()) t.push_back(s.abi_task);
    return t;
  }
  uint64_t bytes() const override { return bytes_; }
  void to(torch::Device d) override {
    net_->to(d);
    device_ = d;
  }

  Result run(const Request& r, JobContext& ctx) override {
    const TaskSpec* spec = find_task(r.task);
    if (!spec) LOUPE_THROW(InvalidArgument, "Florence-2 does not do task '" << r.task << "'");
    if (r.images.empty()) LOUPE_THROW(InvalidArgument, "task '" << r.task << "' needs an image: set one with loupe_request_set_image");
    GenerateOptions go;
    go.num_beams = static_cast<int>(r.get_int("num_beams", cfg_.num_beams, 1, 16));
    go.no_repeat_ngram_size = static_cast<int>(r.get_int("no_repeat_ngram_size", cfg_.no_repeat_ngram_size, 0, 16));
    go.max_new_tokens = static_cast<int>(r.get_int("max_new_tokens", cfg_.max_new_tokens, 1, 4096));
    // The decoder's learned positions bound the output (decoder start token included).
    go.max_new_tokens = std::min(go.max_new_tokens, cfg_.text.max_position_embeddings - 1);
    Result out;
    out.task = r.task;
    const int n_images = static_cast<int>(r.images.size());
    for (int i = 0; i < n_images; ++i) {
      const Image& im = r.images[i];
      if (im.width < 8 || im.height < 8)
        LOUPE_THROW(InvalidArgument, "image " << i << " is " << im.width << "x" << im.height << ": Florence-2 needs at least 8x8 pixels");
      if (static_cast<int64_t>(im.width) * im.height > (int64_t(1) << 26))
        LOUPE_THROW(InvalidArgument, "image " << i << " is " << im.width << "x" << im.height
                                              << " (over 64 Mpixel); Florence-2 sees it at " << cfg_.image_size
                                              << " px anyway: downscale it first");
      const std::array<float, 4>* region = r.region ? &*r.region : nullptr;
      const std::string prompt = build_prompt(*spec, r.get_string("text"), region, im.width, im.height);
      ctx.progress(0, go.max_new_tokens, "encode");
      auto pixels = preprocess(im);
      auto feats = net_->image_features(pixels);
      std::vector<int64_t> ids(feats.size(1), cfg_.image_token_id);
      ids.push_back(tok_.bos_id());
      for (auto t : tok_.encode(prompt)) ids.push_back(t);
      ids.push_back(tok_.eos_id());
      auto input = torch::tensor(ids, torch::dtype(torch::kLong)).to(device_).unsqueeze(0);
      auto enc = net_->encode(input, feats);
      go.on_step = [&](int step, int total) { ctx.progress(step, total, n_images > 1 ? "generate " + std::to_string(i + 1) : "generate"); };
      const auto gen = generate(*net_, enc, go);
      const std::string text = tok_.decode(std::vector<int64_t>(gen.begin() + 1, gen.end()), false);
      Result one;
      parse(*spec, text, im.width, im.height, one, cfg_.banned_grounding_tokens);
      merge(out, one, i, n_images);
      out.strings["raw_" + std::to_string(i)] = text;
    }
    return out;
  }

 private:
  // Resize to the model's square input (bicubic with antialiasing, rounded to 8 bits like the
  // reference's PIL path), rescale and normalise, on the session's device.
  torch::Tensor preprocess(const Image& im) {
    const Image rgb = im.to_rgb();
    auto t = torch::from_blob(const_cast<uint8_t*>(rgb.pixels.data()), {1, rgb.height, rgb.width, 3}, torch::kUInt8)
                 .to(device_)
                 .permute({0, 3, 1, 2})
                 .to(torch::kFloat32);
    const int s = cfg_.image_size;
    t = torch::nn::functional::interpolate(
        t, torch::nn::functional::InterpolateFuncOptions().size(std::vector<int64_t>{s, s}).mode(torch::kBicubic)
               .align_corners(false).antialias(true));
    t = t.round().clamp(0, 255) * cfg_.rescale_factor;
    auto mean = torch::tensor(cfg_.image_mean).to(device_).view({1, 3, 1, 1});
    auto std = torch::tensor(cfg_.image_std).to(device_).view({1, 3, 1, 1});
    return ((t - mean) / std).to(dtype_);
  }

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

ModelFamily family() {
  ModelFamily f;
  f.name = "florence2";
  f.detect = [](const std::string& path) -> std::string {
    const fs::path cfg = fs::path(path) / "config.json";
    if (!fs::is_directory(path) || !fs::exists(cfg)) return "";
    const auto j = io::read_json_file(cfg.string());
    if (j.value("model_type", "") != "florence2") return "";
    try {
      return variant_of(Config::load(path));
    } catch (const Error&) {
      return "florence2";
    }
  };
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
    if (!fs::exists(d / "preprocessor_config.json"))
      report["problems"].push_back({{"severity", "warning"},
                                    {"message", "no preprocessor_config.json: using 768 px and ImageNet mean/std"},
                                    {"remedy", "download preprocessor_config.json"}});
    try {
      Config::load(path);
    } catch (const Error& e) {
      problem(e.what(), "download config.json again");
    }
  };
  return f;
}

}  // namespace loupe::florence2
