// PaliGemma as a Loupe Model: loading (both checkpoint layouts), the task prompts, generation on
// the decoder-only core, and the answers as Results (text; boxes and masks through
// models/paligemma/postprocess).
#include "families/paligemma.h"

#include <algorithm>
#include <filesystem>

#include "families/hf_folder.h"
#include "io/checkpoint.h"
#include "io/config.h"
#include "models/paligemma/config.h"
#include "models/paligemma/mask_decoder.h"
#include "models/paligemma/modeling.h"
#include "models/paligemma/postprocess.h"
#include "models/paligemma/processor.h"
#include "text/sentencepiece.h"

namespace fs = std::filesystem;

namespace loupe::paligemma {

namespace {

const std::vector<std::string>& task_names() {
  static const std::vector<std::string> t = {"caption", "vqa", "ocr", "detect", "segment"};
  return t;
}

class PaliGemmaModel : public Model {
 public:
  PaliGemmaModel(const std::string& dir, const ModelOptions& o)
      : dir_(dir), models_dir_(o.models_dir), cfg_(Config::load(dir)),
        tok_(text::SentencePieceTokenizer::load_from_dir(dir)), net_(cfg_), dtype_(o.dtype), device_(o.device) {
    net_->eval();
    auto ckpt = io::Checkpoint::open(dir);
    net_->load(ckpt, dir, o.device, o.dtype);
    for (const auto& p : net_->parameters()) bytes_ += p.numel() * p.element_size();
    if (static_cast<int64_t>(tok_.vocab_size()) > cfg_.text.vocab_size)
      LOUPE_THROW(BadModel, "tokenizer in " << dir << " has " << tok_.vocab_size() << " tokens, the model's embedding "
                                           << cfg_.text.vocab_size);
    if (tok_.piece_to_id("<image>") != cfg_.image_token_id)
      LOUPE_THROW(BadModel, "tokenizer in " << dir << ": <image> is id " << tok_.piece_to_id("<image>")
                                           << ", config.json's image_token_index is " << cfg_.image_token_id);
    eos_ = cfg_.text.eos_token_ids;
    if (eos_.empty() && tok_.eos_id() >= 0) eos_.push_back(tok_.eos_id());
  }

  std::string family() const override { return "paligemma"; }
  std::string variant() const override { return cfg_.variant(); }
  std::vector<tasks::Task> tasks() const override {
    std::vector<tasks::Task> out;
    const double room = std::max<double>(1, cfg_.text.max_position_embeddings - cfg_.num_image_tokens - 64);
    for (const auto& name : task_names()) {
      auto x = tasks::get(name);
      x.param("num_beams").def = 1;  // transformers' generate() default: greedy
      x.param("no_repeat_ngram_size").def = 0;
      auto& mnt = x.param("max_new_tokens");
      mnt.max = std::min(mnt.max, room);
      mnt.def = std::min<double>(name == "segment" || name == "detect" ? 256 : 128, mnt.max);
      if (name == "detect") {  // PaliGemma detects what it is told: "cat ; dog"
        x.inputs |= tasks::kText;
        x.required |= tasks::kText;
        x.text_key = "text";
        x.text_label = "objects";
        x.text_help = "what to detect, separated by \" ; \" (e.g. \"cat ; dog\")";
      }
      out.push_back(std::move(x));
    }
    return out;
  }
  uint64_t bytes() const override { return bytes_; }
  void to(torch::Device d) override {
    net_->to(d);
    device_ = d;
  }

  Result run_task(const Request& r, JobContext& ctx) override {
    if (std::find(task_names().begin(), task_names().end(), r.task) == task_names().end())
      LOUPE_THROW(InvalidArgument, "PaliGemma does not do task '" << r.task << "'");
    if (r.images.empty())
      LOUPE_THROW(InvalidArgument, "task '" << r.task << "' needs an image: set one with loupe_request_set_image");
    std::string text, language;
    if (r.task == "vqa") text = r.get_string("question");
    if (r.task == "detect" || r.task == "segment") text = r.get_string("text");
    if (r.task == "caption" || r.task == "vqa") language = r.text("language");
    const std::string prompt = task_prompt(r.task, text, language);

    nn::GenerationConfig gen;
    gen.max_new_tokens = static_cast<int>(r.integer("max_new_tokens"));
    gen.num_beams = static_cast<int>(r.integer("num_beams"));
    gen.no_repeat_ngram_size = static_cast<int>(r.integer("no_repeat_ngram_size"));
    gen.eos_token_ids = eos_;
    gen.pad_token_id = cfg_.text.pad_token_id >= 0 ? cfg_.text.pad_token_id : 0;

    // segment needs the mask decoder: found (or the error naming the file) before generating
    std::string vae;
    if (r.task == "segment") vae = find_vae_oid(dir_, models_dir_);

    Result out;
    out.task = r.task;
    const int n = static_cast<int>(r.images.size());
    for (int i = 0; i < n; ++i) {
      const Image& im = r.images[i];
      if (im.width < 1 || im.height < 1)
        LOUPE_THROW(InvalidArgument, "image " << i << " is empty (" << im.width << "x" << im.height << ")");
      if (static_cast<int64_t>(im.width) * im.height > (int64_t(1) << 26))
        LOUPE_THROW(InvalidArgument, "image " << i << " is " << im.width << "x" << im.height << " (over 64 Mpixel); PaliGemma sees it at "
                                              << cfg_.image_width << " px anyway: downscale it first");
      torch::NoGradGuard ng;
      auto pixels = preprocess_image(im, cfg_, device_, dtype_);
      auto ids = prompt_ids(tok_, cfg_, prompt);
      auto input = torch::tensor(ids, torch::kLong).unsqueeze(0).to(device_);
      const std::string stage = n > 1 ? "generate " + std::to_string(i + 1) : "generate";
      ctx.progress(0, gen.max_new_tokens, stage);
      std::string partial;  // the text so far, streamed through progress (without the stop tokens)
      auto g = net_->generate(input, pixels, gen, [&](int step, int total, const std::vector<std::vector<int64_t>>& new_ids) {
        ctx.check_cancelled();
        std::vector<int64_t> so_far;
        if (!new_ids.empty())
          for (auto t : new_ids[0])
            if (std::find(eos_.begin(), eos_.end(), t) == eos_.end() && t != gen.pad_token_id) so_far.push_back(t);
        partial = tok_.decode(so_far);
        ctx.progress_text(step, total, stage, partial);
      });
      std::vector<int64_t> body;
      for (auto t : g.ids)
        if (std::find(eos_.begin(), eos_.end(), t) == eos_.end() && t != gen.pad_token_id) body.push_back(t);
      const std::string answer = tok_.decode(body);
      out.strings["raw_" + std::to_string(i)] = answer;
      if (r.task == "detect" || r.task == "segment") {
        auto objs = parse_loc_objects(answer, im.width, im.height);
        Result one;
        if (r.task == "detect") {
          append_detections(one, objs);
        } else {
          auto dec = MaskDecoder::load(vae, device_);
          append_segments(one, decode_segments(objs, dec, im.width, im.height), im.width, im.height);
        }
        const int group_base = out.polygons.empty() ? 0 : out.polygons.back().group + 1;
        for (auto b : one.boxes) {
          if (n > 1) b.label = std::to_string(i) + ":" + b.label;
          out.boxes.push_back(b);
        }
        for (auto p : one.polygons) {
          p.group += group_base;
          out.polygons.push_back(p);
        }
        for (auto& m : one.images) out.images.push_back(std::move(m));
        out.text += (i ? "\n" : "") + answer;
      } else {
        out.text += (i ? "\n" : "") + answer;
      }
    }
    return out;
  }

 private:
  std::string dir_, models_dir_;
  Config cfg_;
  text::SentencePieceTokenizer tok_;
  PaliGemma net_;
  torch::ScalarType dtype_;
  torch::Device device_;
  std::vector<int64_t> eos_;
  uint64_t bytes_ = 0;
};

}  // namespace

ModelFamily family() {
  ModelFamily f;
  f.name = "paligemma";
  f.tasks = task_names();
  f.detect = families::detect_by_model_type("paligemma", "paligemma", [](const std::string& p) { return Config::load(p).variant(); });
  f.load = [](const std::string& path, const ModelOptions& o) -> std::shared_ptr<Model> {
    return std::make_shared<PaliGemmaModel>(path, o);
  };
  f.inspect = [](const std::string& path, nlohmann::json& report) {
    const fs::path d(path);
    auto problem = [&](const std::string& msg, const std::string& remedy) {
      report["problems"].push_back({{"severity", "error"}, {"message", msg}, {"remedy", remedy}});
    };
    if (!fs::exists(d / "model.safetensors") && !fs::exists(d / "model.safetensors.index.json"))
      problem("no weights (model.safetensors or model.safetensors.index.json) in " + path, "download the model's weight files");
    if (!fs::exists(d / "tokenizer.model") && !fs::exists(d / "tokenizer.json"))
      problem("no tokenizer (tokenizer.model or tokenizer.json) in " + path, "download the tokenizer files");
    try {
      Config::load(path);
    } catch (const Error& e) {
      problem(e.what(), "download config.json (and preprocessor_config.json) again");
    }
  };
  return f;
}

}  // namespace loupe::paligemma
