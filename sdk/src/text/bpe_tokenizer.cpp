#include "text/bpe_tokenizer.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "core/json_get.h"
#include "text/unicode.h"

namespace fs = std::filesystem;

namespace loupe::text {

namespace {

// GPT-2's reversible byte -> printable code point table.
const std::vector<char32_t>& byte_to_cp() {
  static const std::vector<char32_t> table = [] {
    std::vector<char32_t> t(256, 0);
    std::vector<bool> direct(256, false);
    for (int b = '!'; b <= '~'; ++b) direct[b] = true;
    for (int b = 0xA1; b <= 0xAC; ++b) direct[b] = true;
    for (int b = 0xAE; b <= 0xFF; ++b) direct[b] = true;
    int n = 0;
    for (int b = 0; b < 256; ++b) t[b] = direct[b] ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + n++);
    return t;
  }();
  return table;
}

const std::unordered_map<char32_t, uint8_t>& cp_to_byte() {
  static const std::unordered_map<char32_t, uint8_t> table = [] {
    std::unordered_map<char32_t, uint8_t> t;
    const auto& f = byte_to_cp();
    for (int b = 0; b < 256; ++b) t[f[b]] = static_cast<uint8_t>(b);
    return t;
  }();
  return table;
}

nlohmann::json read_json(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) LOUPE_THROW(NotFound, "tokenizer " << path << ": file does not exist or cannot be read");
  std::stringstream ss;
  ss << f.rdbuf();
  return settings::parse_json(ss.str(), "tokenizer " + path);
}

bool is_other(char32_t c) { return !is_space(c) && !is_letter(c) && !is_number(c); }

constexpr int64_t kMaxId = 10'000'000;  // the largest token id a file may give

// Runs a reader of `path`: JSON values of the wrong type (nlohmann's type errors) and ids that are
// not numbers become BadModel naming the file (issue 19: found by tests/fuzz/fuzz_bpe_tokenizer).
template <class F>
auto reading(const std::string& path, F&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const nlohmann::json::exception& e) {
    LOUPE_THROW(BadModel, "tokenizer " << path << ": a value has the wrong type (" << e.what() << ")");
  } catch (const std::invalid_argument&) {
    LOUPE_THROW(BadModel, "tokenizer " << path << ": a token id is not a number");
  } catch (const std::out_of_range&) {
    LOUPE_THROW(BadModel, "tokenizer " << path << ": a token id is out of range");
  }
}

// An added token's id from a file: within the ids a vocabulary can have.
int64_t added_id(int64_t id, const std::string& content, const std::string& path) {
  if (id < 0 || id > kMaxId)
    LOUPE_THROW(BadModel, "tokenizer " << path << ": added token '" << content << "' has invalid id " << id);
  return id;
}

// Length of the contraction ('s 't 're 've 'm 'll 'd) starting at s[i], 0 if none.
size_t contraction_at(const std::u32string& s, size_t i) {
  if (s[i] != U'\'') return 0;
  static const std::u32string kContractions[] = {U"re", U"ve", U"ll", U"s", U"t", U"m", U"d"};
  for (const auto& k : kContractions)
    if (s.compare(i + 1, k.size(), k) == 0) return 1 + k.size();
  return 0;
}

}  // namespace

std::vector<std::string> BpeTokenizer::pre_tokenize(const std::string& text) {
  // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
  const std::u32string s = utf8_to_u32(text);
  const size_t n = s.size();
  std::vector<std::string> out;
  size_t i = 0;
  auto emit = [&](size_t a, size_t b) { out.push_back(u32_to_utf8(s.substr(a, b - a))); };
  while (i < n) {
    const char32_t c = s[i];
    if (const size_t len = contraction_at(s, i)) {
      emit(i, i + len);
      i += len;
      continue;
    }
    const bool sp = c == U' ' && i + 1 < n;
    const char32_t d = sp ? s[i + 1] : c;
    using Pred = bool (*)(char32_t);
    Pred classes[] = {is_letter, is_number, is_other};
    bool matched = false;
    for (Pred p : classes) {
      if ((sp || c != U' ') && p(d)) {
        size_t j = sp ? i + 1 : i;
        while (j < n && p(s[j])) ++j;
        emit(i, j);
        i = j;
        matched = true;
        break;
      }
    }
    if (matched) continue;
    // whitespace: \s+(?!\S) then \s+
    size_t j = i;
    while (j < n && is_space(s[j])) ++j;
    if (j == i) {  // cannot happen (every code point is L, N, other or space), but never loop forever
      emit(i, i + 1);
      ++i;
    } else if (j == n || j - i == 1) {
      emit(i, j);
      i = j;
    } else {
      emit(i, j - 1);  // leave the last space to prefix the next word
      i = j - 1;
    }
  }
  return out;
}

std::vector<std::string> BpeTokenizer::pre_tokenize_clip(const std::string& text) {
  // whitespace_clean + lower(); then <|startoftext|>|<|endoftext|>|'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|[^\s\p{L}\p{N}]+
  std::u32string s;
  bool space = false;
  for (char32_t c : utf8_to_u32(text)) {
    if (is_space(c)) {
      space = !s.empty();
      continue;
    }
    if (space) s.push_back(U' ');
    space = false;
    s.push_back(c < 128 ? static_cast<char32_t>(std::tolower(static_cast<int>(c))) : c);
  }
  std::vector<std::string> out;
  const size_t n = s.size();
  auto emit = [&](size_t a, size_t b) { out.push_back(u32_to_utf8(s.substr(a, b - a))); };
  for (size_t i = 0; i < n;) {
    const char32_t c = s[i];
    if (is_space(c)) {
      ++i;
      continue;
    }
    bool matched = false;
    for (const std::u32string special : {U"<|startoftext|>", U"<|endoftext|>"})
      if (s.compare(i, special.size(), special) == 0) {
        emit(i, i + special.size());
        i += special.size();
        matched = true;
        break;
      }
    if (matched) continue;
    if (const size_t len = contraction_at(s, i)) {
      emit(i, i + len);
      i += len;
      continue;
    }
    size_t j = i + 1;
    if (is_letter(c)) {
      while (j < n && is_letter(s[j])) ++j;
    } else if (!is_number(c)) {
      while (j < n && is_other(s[j])) ++j;
    }
    emit(i, j);
    i = j;
  }
  return out;
}

void BpeTokenizer::set_vocab(std::unordered_map<std::string, int64_t> vocab, const std::string& file) {
  if (vocab.empty()) LOUPE_THROW(BadModel, "tokenizer " << file << ": the vocabulary is empty");
  int64_t max_id = -1;
  for (const auto& kv : vocab) {
    if (kv.second < 0 || kv.second > kMaxId)
      LOUPE_THROW(BadModel, "tokenizer " << file << ": token '" << kv.first << "' has invalid id " << kv.second);
    max_id = std::max(max_id, kv.second);
  }
  id_to_token_.assign(static_cast<size_t>(max_id + 1), std::string());
  for (const auto& kv : vocab) id_to_token_[static_cast<size_t>(kv.second)] = kv.first;
  vocab_ = std::move(vocab);
}

void BpeTokenizer::set_merges(const std::vector<std::pair<std::string, std::string>>& merges, const std::string& file) {
  int rank = 0;
  for (const auto& m : merges) {
    if (!vocab_.count(m.first) || !vocab_.count(m.second) || !vocab_.count(m.first + m.second))
      LOUPE_THROW(BadModel, "tokenizer " << file << ": merge " << rank << " ('" << m.first << "' '" << m.second
                                         << "') names a token that is not in the vocabulary");
    ranks_.emplace(m, rank++);
  }
}

void BpeTokenizer::add_token(const std::string& content, int64_t id, bool special) {
  if (content.empty()) return;
  if (id < 0 || id > kMaxId) LOUPE_THROW(InvalidArgument, "tokenizer: token '" << content << "' has invalid id " << id);
  cache_ = std::make_shared<Cache>();
  vocab_[content] = id;
  if (static_cast<size_t>(id) >= id_to_token_.size()) id_to_token_.resize(static_cast<size_t>(id) + 1);
  id_to_token_[static_cast<size_t>(id)] = content;
  added_.erase(std::remove_if(added_.begin(), added_.end(), [&](const Added& a) { return a.content == content; }),
               added_.end());
  added_.push_back({content, id, special});
  added_first_byte_[static_cast<unsigned char>(content[0])] = true;
  std::stable_sort(added_.begin(), added_.end(),
                   [](const Added& a, const Added& b) { return a.content.size() > b.content.size(); });
}

BpeTokenizer BpeTokenizer::from_tokenizer_json(const std::string& path) {
  return reading(path, [&] {
    const auto j = read_json(path);
    if (!j.is_object() || !j.contains("model") || !j["model"].is_object())
      LOUPE_THROW(BadModel, "tokenizer " << path << ": no \"model\" object");
    const auto& m = j["model"];
    if (m.value("type", "BPE") != "BPE")
      LOUPE_THROW(Unsupported, "tokenizer " << path << ": model type " << m.value("type", "") << " is not BPE");
    if (!m.contains("vocab") || !m["vocab"].is_object()) LOUPE_THROW(BadModel, "tokenizer " << path << ": no model.vocab");
    if (!m.contains("merges") || !m["merges"].is_array()) LOUPE_THROW(BadModel, "tokenizer " << path << ": no model.merges");
    BpeTokenizer t;
    std::unordered_map<std::string, int64_t> vocab;
    for (auto it = m["vocab"].begin(); it != m["vocab"].end(); ++it) {
      if (!it.value().is_number_integer()) LOUPE_THROW(BadModel, "tokenizer " << path << ": id of '" << it.key() << "' is not an integer");
      vocab[it.key()] = it.value().get<int64_t>();
    }
    t.set_vocab(std::move(vocab), path);
    std::vector<std::pair<std::string, std::string>> merges;
    for (const auto& e : m["merges"]) {
      if (e.is_string()) {
        const std::string s = e.get<std::string>();
        const auto sp = s.find(' ');
        if (sp == std::string::npos) LOUPE_THROW(BadModel, "tokenizer " << path << ": merge '" << s << "' is not 'a b'");
        merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
      } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
        merges.emplace_back(e[0].get<std::string>(), e[1].get<std::string>());
      } else {
        LOUPE_THROW(BadModel, "tokenizer " << path << ": a merge is neither \"a b\" nor [\"a\", \"b\"]");
      }
    }
    t.set_merges(merges, path);
    if (j.contains("added_tokens") && j["added_tokens"].is_array())
      for (const auto& a : j["added_tokens"])
        if (a.is_object()) {
          const auto content = a.value("content", "");
          t.add_token(content, added_id(a.value("id", int64_t(0)), content, path), a.value("special", false));
        }
    return t;
  });
}

BpeTokenizer BpeTokenizer::from_vocab_merges(const std::string& vocab_path, const std::string& merges_path, Flavor flavor) {
  const auto j = read_json(vocab_path);
  if (!j.is_object()) LOUPE_THROW(BadModel, "tokenizer " << vocab_path << ": expected an object of token -> id");
  BpeTokenizer t;
  t.flavor_ = flavor;
  std::unordered_map<std::string, int64_t> vocab;
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (!it.value().is_number_integer())
      LOUPE_THROW(BadModel, "tokenizer " << vocab_path << ": id of '" << it.key() << "' is not an integer");
    vocab[it.key()] = it.value().get<int64_t>();
  }
  t.set_vocab(std::move(vocab), vocab_path);
  std::ifstream f(merges_path);
  if (!f) LOUPE_THROW(NotFound, "tokenizer " << merges_path << ": file does not exist or cannot be read");
  std::vector<std::pair<std::string, std::string>> merges;
  std::string line;
  while (std::getline(f, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || line.rfind("#version", 0) == 0) continue;
    const auto sp = line.find(' ');
    if (sp == std::string::npos) LOUPE_THROW(BadModel, "tokenizer " << merges_path << ": line '" << line << "' is not 'a b'");
    merges.emplace_back(line.substr(0, sp), line.substr(sp + 1));
  }
  t.set_merges(merges, merges_path);
  return t;
}

BpeTokenizer BpeTokenizer::load_from_dir(const std::string& dir) {
  const fs::path d(dir);
  BpeTokenizer t;
  if (fs::exists(d / "tokenizer.json")) {
    t = from_tokenizer_json((d / "tokenizer.json").string());
  } else if (fs::exists(d / "vocab.json") && fs::exists(d / "merges.txt")) {
    t = from_vocab_merges((d / "vocab.json").string(), (d / "merges.txt").string());
    if (fs::exists(d / "added_tokens.json")) {
      const auto path = (d / "added_tokens.json").string();
      reading(path, [&] {
        const auto a = read_json(path);
        if (a.is_object())
          for (auto it = a.begin(); it != a.end(); ++it)
            t.add_token(it.key(), added_id(it.value().get<int64_t>(), it.key(), path), false);
      });
    }
  } else {
    LOUPE_THROW(NotFound, "tokenizer " << dir << ": neither tokenizer.json nor vocab.json + merges.txt is there");
  }
  if (fs::exists(d / "tokenizer_config.json")) {
    const auto path = (d / "tokenizer_config.json").string();
    reading(path, [&] {
      const auto c = read_json(path);
      if (c.contains("added_tokens_decoder") && c["added_tokens_decoder"].is_object())
        for (auto it = c["added_tokens_decoder"].begin(); it != c["added_tokens_decoder"].end(); ++it)
          if (it.value().is_object()) {
            const auto content = it.value().value("content", "");
            t.add_token(content, added_id(std::stoll(it.key()), content, path), it.value().value("special", false));
          }
    });
  }
  // Special tokens of the BART family are matched whole even when only in the vocabulary.
  for (const char* s : {"<s>", "</s>", "<pad>", "<unk>", "<mask>"})
    if (t.token_to_id(s) >= 0 && std::none_of(t.added_.begin(), t.added_.end(), [&](const Added& a) { return a.content == s; }))
      t.add_token(s, t.token_to_id(s), true);
  return t;
}

int64_t BpeTokenizer::token_to_id(const std::string& token) const {
  auto it = vocab_.find(token);
  return it == vocab_.end() ? -1 : it->second;
}

std::string BpeTokenizer::id_to_token(int64_t id) const {
  return id >= 0 && static_cast<size_t>(id) < id_to_token_.size() ? id_to_token_[static_cast<size_t>(id)] : std::string();
}

void BpeTokenizer::bpe_word(const std::string& word, std::vector<int64_t>& out) const {
  {
    std::lock_guard<std::mutex> lock(cache_->mu);
    auto it = cache_->map.find(word);
    if (it != cache_->map.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  // bytes -> printable symbols, one per byte
  std::vector<std::string> parts;
  const auto& f = byte_to_cp();
  for (unsigned char b : word) {
    std::string sym;
    append_utf8(sym, f[b]);
    parts.push_back(sym);
  }
  if (flavor_ == Flavor::Clip && !parts.empty()) parts.back() += "</w>";
  while (parts.size() > 1) {
    int best = -1;
    size_t at = 0;
    for (size_t k = 0; k + 1 < parts.size(); ++k) {
      auto r = ranks_.find({parts[k], parts[k + 1]});
      if (r != ranks_.end() && (best < 0 || r->second < best)) {
        best = r->second;
        at = k;
      }
    }
    if (best < 0) break;
    // merge every occurrence of the best pair, left to right
    const std::string a = parts[at], b = parts[at + 1];
    std::vector<std::string> next;
    for (size_t k = 0; k < parts.size();) {
      if (k + 1 < parts.size() && parts[k] == a && parts[k + 1] == b) {
        next.push_back(a + b);
        k += 2;
      } else {
        next.push_back(parts[k++]);
      }
    }
    parts.swap(next);
  }
  std::vector<int64_t> ids;
  for (const auto& p : parts) {
    const int64_t id = token_to_id(p);
    if (id >= 0) ids.push_back(id);
    else if (unk_id() >= 0) ids.push_back(unk_id());
  }
  out.insert(out.end(), ids.begin(), ids.end());
  std::lock_guard<std::mutex> lock(cache_->mu);
  if (cache_->map.size() > 50000) cache_->map.clear();
  cache_->map.emplace(word, std::move(ids));
}

std::vector<int64_t> BpeTokenizer::encode(const std::string& text) const {
  std::vector<int64_t> out;
  size_t start = 0;
  auto encode_plain = [&](const std::string& piece) {
    for (const auto& w : flavor_ == Flavor::Clip ? pre_tokenize_clip(piece) : pre_tokenize(piece)) {
      const int64_t special = flavor_ == Flavor::Clip && w.size() > 2 && w[0] == '<' && w[1] == '|' ? token_to_id(w) : -1;
      if (special >= 0) out.push_back(special);
      else bpe_word(w, out);
    }
  };
  // Split on added tokens (longest first at each position).
  size_t i = 0;
  while (i < text.size()) {
    const Added* hit = nullptr;
    if (added_first_byte_[static_cast<unsigned char>(text[i])])
      for (const auto& a : added_)
        if (text.compare(i, a.content.size(), a.content) == 0) {
          hit = &a;
          break;
        }
    if (hit) {
      if (i > start) encode_plain(text.substr(start, i - start));
      out.push_back(hit->id);
      i += hit->content.size();
      start = i;
    } else {
      ++i;
    }
  }
  if (start < text.size()) encode_plain(text.substr(start));
  return out;
}

std::vector<int64_t> BpeTokenizer::encode_with_special(const std::string& text) const {
  std::vector<int64_t> ids = encode(text);
  if (bos_id() >= 0) ids.insert(ids.begin(), bos_id());
  if (eos_id() >= 0) ids.push_back(eos_id());
  return ids;
}

std::string BpeTokenizer::decode(const std::vector<int64_t>& ids, bool skip_special_tokens) const {
  std::string out, bytes;
  const auto& inv = cp_to_byte();
  auto flush = [&] {
    out += u32_to_utf8(utf8_to_u32(bytes));  // invalid UTF-8 -> U+FFFD
    bytes.clear();
  };
  for (int64_t id : ids) {
    const std::string tok = id_to_token(id);
    const Added* added = nullptr;
    for (const auto& a : added_)
      if (a.id == id) added = &a;
    if (added) {
      if (skip_special_tokens && added->special) continue;
      flush();
      out += tok;
      continue;
    }
    std::string body = tok;
    const bool word_end = flavor_ == Flavor::Clip && body.size() >= 4 && body.compare(body.size() - 4, 4, "</w>") == 0;
    if (word_end) body.resize(body.size() - 4);
    for (char32_t c : utf8_to_u32(body)) {
      auto it = inv.find(c);
      if (it != inv.end()) bytes.push_back(static_cast<char>(it->second));
    }
    if (word_end) bytes.push_back(' ');
  }
  flush();
  if (flavor_ == Flavor::Clip) {  // words end in a space: drop the last one
    while (!out.empty() && out.back() == ' ') out.pop_back();
  }
  return out;
}

}  // namespace loupe::text
