// BLIP-2 as a Loupe Model: loading (single or sharded safetensors, pytorch_model*.bin), the task
// prompts as Blip2Processor lays them out, generation on the decoder-only core (OPT, GPT-2 BPE
// tokenizer) or the one T5 (Flan-T5, SentencePiece Unigram tokenizer) with the checkpoint's
// generation defaults, and the answers as Results (text).
#include "families/blip2.h"

#include <algorithm>
#include <filesystem>
#include <memory>

#include "families/hf_folder.h"
#include "io/checkpoint.h"
#include "io/config.h"
#include "models/blip2/config.h"
#include "models/blip2/modeling.h"
#include "models/blip2/processor.h"
#include "text/bpe_tokenizer.h"
#include "text/sentencepiece.h"

namespace fs = std::filesystem;

namespace loupe::blip2 {

namespace {

const std::vector<std::string>& task_names() {
  static const std::vector<std::string> t = {"caption", "vqa"};
  return t;
}

std::string trim(const std::string& s) {
  const auto a = s.find_first_not_of(" \t\r\n");
  if (a == std::string::npos) return "";
  const auto b = s.find_last_not_of(" \t\r\n");
  return s.substr(a, b - a + 1);
}

// The checkpoint of a folder: what io::Checkpoint finds (model.safetensors, its shard index,
// pytorch_model.bin), else the shards of a pytorch_model.bin.index.json, each opened by the same
// reader.
std::vector<io::Checkpoint> open_weights(const std::string& dir) {
  const fs::path index = fs::path(dir) / "pytorch_model.bin.index.json";
  bool plain = false;
  for (const char* n : {"model.safetensors", "model.safetensors.index.json", "pytorch_model.bin"})
    plain = plain || fs::exists(fs::path(dir) / n);
  if (plain || !fs::exists(index)) return {io::Checkpoint::open(dir)};
  const std::string file = index.string();
  const auto j = io::read_json_file(file);
  if (!j.contains("weight_map") || !j["weight_map"].is_object())
    LOUPE_THROW(BadModel, file << ": no \"weight_map\" object in the shard index");
  std::vector<std::string> names;
  for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
    if (!it.value().is_string()) LOUPE_THROW(BadModel, file << ": weight_map entry '" << it.key() << "' is not a file name");
    const auto shard = it.value().get<std::string>();
    if (shard.find('/') != std::string::npos || shard.find('\\') != std::string::npos)
      LOUPE_THROW(BadModel, file << ": weight_map names the file '" << shard << "' outside the folder");
    if (std::find(names.begin(), names.end(), shard) == names.end()) names.push_back(shard);
  }
  if (names.empty()) LOUPE_THROW(BadModel, file << ": the weight_map is empty");
  std::vector<io::Checkpoint> out;
  for (const auto& n : names) out.push_back(io::Checkpoint::open((fs::path(dir) / n).string()));
  return out;
}

class Blip2Model : public Model {
 public:
  Blip2Model(const std::string& dir, const ModelOptions& o)
      : dir_(dir), cfg_(Config::load(dir)), net_(cfg_), dtype_(o.dtype), device_(o.device) {
    if (cfg_.is_t5())
      spm_ = std::make_unique<text::SentencePieceTokenizer>(text::SentencePieceTokenizer::load_from_dir(dir));
    else
      bpe_ = std::make_unique<text::BpeTokenizer>(text::BpeTokenizer::load_from_dir(dir));
    net_->eval();
    net_->load(open_weights(dir), dir, o.device, o.dtype);
    for (const auto& p : net_->parameters()) bytes_ += p.numel() * p.element_size();
    const int64_t tok_size = static_cast<int64_t>(bpe_ ? bpe_->vocab_size() : spm_->vocab_size());
    if (tok_size > cfg_.text_vocab_size + 1)
      LOUPE_THROW(BadModel, "tokenizer in " << dir << " has " << tok_size << " tokens, the language model's embedding "
                                           << cfg_.text_vocab_size);
    if (bpe_) {
      const int64_t image = bpe_->token_to_id("<image>");
      if (cfg_.layout == PromptLayout::ImageTokens && image >= 0 && image != cfg_.image_token_id)
        LOUPE_THROW(BadModel, "tokenizer in " << dir << ": <image> is id " << image << ", config.json's image_token_index is "
                                             << cfg_.image_token_id);
      bos_ = cfg_.bos_token_id;
      if (!cfg_.bos_token.empty() && bpe_->token_to_id(cfg_.bos_token) >= 0) bos_ = bpe_->token_to_id(cfg_.bos_token);
    }
    eos_ = cfg_.eos_token_ids;
    if (eos_.empty() && bpe_ && bpe_->eos_id() >= 0) eos_.push_back(bpe_->eos_id());
    if (eos_.empty() && spm_ && spm_->eos_id() >= 0) eos_.push_back(spm_->eos_id());
  }

  std::vector<int64_t> encode(const std::string& text) const { return bpe_ ? bpe_->encode(text) : spm_->encode(text); }
  // skip_special_tokens: T5's extra ids and <image> (past the SentencePiece vocabulary) and its
  // control pieces are left out
  std::string decode(const std::vector<int64_t>& ids) const {
    if (bpe_) return bpe_->decode(ids, true);
    std::vector<int64_t> keep;
    for (auto t : ids)
      if (t >= 0 && t < static_cast<int64_t>(spm_->vocab_size()) &&
          spm_->type(t) != text::SentencePieceTokenizer::PieceType::Control)
        keep.push_back(t);
    return spm_->decode(keep);
  }

  std::string family() const override { return "blip2"; }
  std::string variant() const override { return cfg_.variant(); }
  std::vector<tasks::Task> tasks() const override {
    std::vector<tasks::Task> out;
    // the learned positions bound prompt + answer; the prompt is the queries, bos and a short text
    // (T5's relative positions have no bound)
    const double room = cfg_.is_t5() ? 1e9 : std::max<double>(1, cfg_.text.max_position_embeddings - cfg_.num_query_tokens - 64);
    for (const auto& name : task_names()) {
      auto x = tasks::get(name);
      // BLIP-2 writes English only: the table's "language" is not offered
      x.params.erase(std::remove_if(x.params.begin(), x.params.end(), [](const tasks::Param& p) { return p.name == "language"; }),
                     x.params.end());
      x.param("num_beams").def = std::min<double>(cfg_.num_beams, x.param("num_beams").max);
      x.param("no_repeat_ngram_size").def = cfg_.no_repeat_ngram_size;
      auto& mnt = x.param("max_new_tokens");
      mnt.max = std::min(mnt.max, room);
      mnt.def = std::min<double>(cfg_.max_new_tokens, mnt.max);
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
      LOUPE_THROW(InvalidArgument, "BLIP-2 does not do task '" << r.task << "'");
    if (r.images.empty())
      LOUPE_THROW(InvalidArgument, "task '" << r.task << "' needs an image: set one with loupe_request_set_image");
    const std::string given = r.task == "vqa" ? r.get_string("question") : r.text("prefix");
    const std::string prompt = task_prompt(r.task, trim(given));

    nn::GenerationConfig gen;
    gen.max_new_tokens = static_cast<int>(r.integer("max_new_tokens"));
    gen.num_beams = static_cast<int>(r.integer("num_beams"));
    gen.no_repeat_ngram_size = static_cast<int>(r.integer("no_repeat_ngram_size"));
    gen.length_penalty = cfg_.length_penalty;
    gen.repetition_penalty = cfg_.repetition_penalty;
    gen.eos_token_ids = eos_;
    gen.pad_token_id = cfg_.pad_token_id >= 0 ? cfg_.pad_token_id : (eos_.empty() ? 0 : eos_[0]);

    Result out;
    out.task = r.task;
    const int n = static_cast<int>(r.images.size());
    for (int i = 0; i < n; ++i) {
      const Image& im = r.images[i];
      if (im.width < 1 || im.height < 1)
        LOUPE_THROW(InvalidArgument, "image " << i << " is empty (" << im.width << "x" << im.height << ")");
      if (static_cast<int64_t>(im.width) * im.height > (int64_t(1) << 26))
        LOUPE_THROW(InvalidArgument, "image " << i << " is " << im.width << "x" << im.height << " (over 64 Mpixel); BLIP-2 sees it at "
                                              << cfg_.image_width << " px anyway: downscale it first");
      torch::NoGradGuard ng;
      auto pixels = preprocess_image(im, cfg_, device_, dtype_);
      auto ids = prompt_ids(cfg_, encode(prompt), bos_, eos_.empty() ? -1 : eos_[0]);
      auto input = torch::tensor(ids, torch::kLong).unsqueeze(0).to(device_);
      const std::string stage = n > 1 ? "generate " + std::to_string(i + 1) : "generate";
      ctx.progress(0, gen.max_new_tokens, stage);
      auto g = net_->generate(input, pixels, gen, [&](int step, int total, const std::vector<std::vector<int64_t>>&) {
        ctx.check_cancelled();
        ctx.progress(step, total, stage);
      });
      std::vector<int64_t> body;
      for (auto t : g.ids)
        if (std::find(eos_.begin(), eos_.end(), t) == eos_.end() && t != gen.pad_token_id) body.push_back(t);
      const std::string continuation = decode(body);
      out.strings["raw_" + std::to_string(i)] = continuation;
      // OPT continues the prefix: the caption reads with it ("a photo of" + " a cat"); Flan-T5's
      // decoder answers the prompt its encoder read, and an answer is the continuation alone
      const std::string text = trim(r.task == "caption" && !cfg_.is_t5() ? prompt + continuation : continuation);
      out.text += (i ? "\n" : "") + text;
    }
    return out;
  }

 private:
  std::string dir_;
  Config cfg_;
  std::unique_ptr<text::BpeTokenizer> bpe_;             // OPT
  std::unique_ptr<text::SentencePieceTokenizer> spm_;   // Flan-T5
  Blip2 net_;
  torch::ScalarType dtype_;
  torch::Device device_;
  int64_t bos_ = -1;
  std::vector<int64_t> eos_;
  uint64_t bytes_ = 0;
};

}  // namespace

ModelFamily family() {
  ModelFamily f;
  f.name = "blip2";
  f.tasks = task_names();
  f.detect = families::detect_by_model_type("blip-2", "blip2", [](const std::string& p) { return Config::load(p).variant(); });
  f.load = [](const std::string& path, const ModelOptions& o) -> std::shared_ptr<Model> {
    return std::make_shared<Blip2Model>(path, o);
  };
  f.inspect = [](const std::string& path, nlohmann::json& report) {
    const fs::path d(path);
    auto problem = [&](const std::string& msg, const std::string& remedy) {
      report["problems"].push_back({{"severity", "error"}, {"message", msg}, {"remedy", remedy}});
    };
    bool weights = false;
    for (const char* n : {"model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json"})
      weights = weights || fs::exists(d / n);
    if (!weights)
      problem("no weights (model.safetensors, model.safetensors.index.json, pytorch_model.bin or pytorch_model.bin.index.json) in " +
                  path,
              "download the model's weight files");
    if (!fs::exists(d / "tokenizer.json") && !(fs::exists(d / "vocab.json") && fs::exists(d / "merges.txt")) &&
        !fs::exists(d / "spiece.model"))
      problem("no tokenizer (tokenizer.json, vocab.json + merges.txt, or spiece.model) in " + path, "download the tokenizer files");
    try {
      Config::load(path);
    } catch (const Error& e) {
      problem(e.what(), "download config.json (and preprocessor_config.json, processor_config.json) again");
    }
  };
  return f;
}

}  // namespace loupe::blip2
