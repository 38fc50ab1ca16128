// Byte-level BPE (GPT-2 / RoBERTa / BART family, as Florence-2 uses it): GPT-2 pre-tokenization,
// bytes mapped to printable code points, merges applied by rank, added tokens matched whole first.
// Loaded from tokenizer.json, or vocab.json + merges.txt (+ added_tokens.json /
// tokenizer_config.json). Pure C++, no torch.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace loupe::text {

class BpeTokenizer {
 public:
  // ByteLevel: GPT-2 / BART. Clip: CLIP's text encoder (lower-cased, whitespace collapsed, CLIP's
  // pre-tokenization, "</w>" marking the end of each word), as Stable Diffusion uses it.
  enum class Flavor { ByteLevel, Clip };
  // From a folder holding tokenizer.json or vocab.json + merges.txt. Errors: loupe::Error
  // (NotFound, BadModel) naming the file.
  static BpeTokenizer load_from_dir(const std::string& dir);
  static BpeTokenizer from_tokenizer_json(const std::string& path);
  static BpeTokenizer from_vocab_merges(const std::string& vocab_path, const std::string& merges_path,
                                        Flavor flavor = Flavor::ByteLevel);
  Flavor flavor() const { return flavor_; }

  std::vector<int64_t> encode(const std::string& text) const;
  // encode() wrapped as <s> ... </s> when the vocabulary has them (BART / RoBERTa processing).
  std::vector<int64_t> encode_with_special(const std::string& text) const;
  std::string decode(const std::vector<int64_t>& ids, bool skip_special_tokens = false) const;

  int64_t token_to_id(const std::string& token) const;  // -1 if absent
  std::string id_to_token(int64_t id) const;            // "" if absent
  size_t vocab_size() const { return id_to_token_.size(); }
  int64_t bos_id() const { return token_to_id("<s>"); }
  int64_t eos_id() const { return token_to_id("</s>"); }
  int64_t pad_id() const { return token_to_id("<pad>"); }
  int64_t unk_id() const { return token_to_id("<unk>"); }
  // Adds a token matched whole before BPE (special: skipped by decode(skip_special_tokens)).
  void add_token(const std::string& content, int64_t id, bool special);

  // GPT-2's pre-tokenization of `text` (exposed for tests).
  static std::vector<std::string> pre_tokenize(const std::string& text);
  // CLIP's: lower-cased, whitespace collapsed, letters runs, single digits, other runs.
  static std::vector<std::string> pre_tokenize_clip(const std::string& text);

 private:
  void set_vocab(std::unordered_map<std::string, int64_t> vocab, const std::string& file);
  void set_merges(const std::vector<std::pair<std::string, std::string>>& merges, const std::string& file);
  void bpe_word(const std::string& word, std::vector<int64_t>& out) const;

  Flavor flavor_ = Flavor::ByteLevel;
  std::unordered_map<std::string, int64_t> vocab_;
  std::vector<std::string> id_to_token_;
  std::map<std::pair<std::string, std::string>, int> ranks_;
  struct Added {
    std::string content;
    int64_t id;
    bool special;
  };
  std::vector<Added> added_;  // longest first
  bool added_first_byte_[256] = {};  // bytes an added token can start with
  struct Cache {  // word -> ids; shared by copies, replaced when the vocabulary changes
    std::mutex mu;
    std::unordered_map<std::string, std::vector<int64_t>> map;
  };
  std::shared_ptr<Cache> cache_ = std::make_shared<Cache>();
};

}  // namespace loupe::text
