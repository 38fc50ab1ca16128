// SentencePiece tokenizers (Gemma: BPE with byte fallback; T5: Unigram), one class for both file
// forms a model folder may ship:
//  - tokenizer.model: run by Debian's libsentencepiece itself, through our shim
//    libloupe_sentencepiece.so loaded with dlmopen() into a link namespace of its own (see
//    sentencepiece.cpp for why it cannot be linked next to libtorch);
//  - only tokenizer.json (Hugging Face tokenizers' form of the same model, model.type "BPE" with
//    byte_fallback or "Unigram", Metaspace / Replace / Precompiled normalization): read and run
//    natively, with sentencepiece's semantics (its normalizer, BPE merge order and Unigram Viterbi),
//    so both loads give the same ids. Special pieces (control, unknown) are never matched in text,
//    as in sentencepiece. Pure C++, no torch.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace loupe::text {

class SentencePieceTokenizer {
 public:
  enum class Backend { Library, Native };
  enum class PieceType { Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6 };

  // From a folder: tokenizer.model (or T5's spiece.model) when present, else tokenizer.json. Errors: loupe::Error
  // (NotFound, BadModel naming the file; Unsupported when libsentencepiece or our shim is missing,
  // naming the package to install).
  static SentencePieceTokenizer load_from_dir(const std::string& dir);
  static SentencePieceTokenizer from_model_file(const std::string& path);
  static SentencePieceTokenizer from_model_bytes(const std::string& bytes, const std::string& name);
  static SentencePieceTokenizer from_tokenizer_json(const std::string& path);
  // Whether the library path works in this process (shim and libsentencepiece found and loaded);
  // `why` gets the reason when not.
  static bool library_available(std::string* why = nullptr);

  Backend backend() const;
  std::vector<int64_t> encode(const std::string& text) const;
  std::string decode(const std::vector<int64_t>& ids) const;

  size_t vocab_size() const;
  std::string id_to_piece(int64_t id) const;  // "" if out of range
  int64_t piece_to_id(const std::string& piece) const;  // unk_id() when absent
  float score(int64_t id) const;
  PieceType type(int64_t id) const;
  int64_t unk_id() const;
  int64_t bos_id() const;  // -1 when the model has none
  int64_t eos_id() const;
  int64_t pad_id() const;

  struct Impl;

 private:
  std::shared_ptr<const Impl> impl_;
};

// T5's tokenizer (T5Tokenizer / T5TokenizerFast; Flan-T5, FLUX's T5-XXL) on top of the one
// SentencePiece tokenizer: the ids of `text`, then </s> (eos_id()); with max_length > 0 the pieces
// are cut to max_length - 1 before </s> (truncation=True) and, when `pad`, padded with pad_id() to
// max_length (padding="max_length"). Checked against transformers' T5Tokenizer in
// tests/models/test_t5_parity.cpp.
inline std::vector<int64_t> encode_t5(const SentencePieceTokenizer& tok, const std::string& text, int64_t max_length = 0,
                                      bool pad = false) {
  auto ids = tok.encode(text);
  if (max_length > 0 && static_cast<int64_t>(ids.size()) > max_length - 1)
    ids.resize(static_cast<size_t>(max_length > 1 ? max_length - 1 : 0));
  ids.push_back(tok.eos_id());
  if (pad && max_length > 0 && static_cast<int64_t>(ids.size()) < max_length)
    ids.resize(static_cast<size_t>(max_length), tok.pad_id() >= 0 ? tok.pad_id() : 0);
  return ids;
}

}  // namespace loupe::text
