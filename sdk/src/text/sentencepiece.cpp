// SentencePiece tokenizers: Debian's libsentencepiece through a dlmopen'd shim for tokenizer.model,
// a native reader for tokenizer.json. See sentencepiece.h.
//
// Why dlmopen. libsentencepiece.so.0 (Debian 0.1.97) carries its own copy of protobuf-lite
// (sentencepiece's third_party/protobuf-lite, an older 3.x than Debian's libprotobuf.so.32 3.21)
// linked in statically but *exported*: 1,566 google::protobuf::* symbols with default visibility
// (MessageLite::InitializationErrorString, internal::MergeFromImpl<false>, ImplicitWeakMessage's
// vtable and typeinfo, ...). libtorch_cpu needs libprotobuf.so.32 (via libonnx_proto). When a
// program links both, libsentencepiece comes earlier in the global lookup scope than
// libprotobuf.so.32 (a direct DT_NEEDED before an indirect one), so the dynamic linker binds 269 of
// libprotobuf's own references to sentencepiece's copies (LD_DEBUG=bindings: "binding file
// libprotobuf.so.32 to libsentencepiece.so.0"). Before main(), libprotobuf's static initialiser
// registers descriptor.proto (DescriptorPool::InternalAddGeneratedFile ->
// EncodedDescriptorDatabase::Add), which calls MergeFromImpl<false> -- resolved into
// libsentencepiece's older copy -- which calls back into libprotobuf 3.21's
// Message::InitializationErrorString -> ReflectionOps::FindInitializationErrors with objects of
// the other version's layout: SIGSEGV in static initialisation (gdb backtrace, /tmp repro with
// -ltorch -lsentencepiece). The other load order breaks the other way (sentencepiece's generated
// code bound to 3.21's internals), and both libraries define the same STB_GNU_UNIQUE statics
// (ShutdownData::get()::data's guard), which glibc unifies process-wide whatever RTLD_LOCAL or
// RTLD_DEEPBIND say. So libsentencepiece gets a link namespace of its own: our shim
// (libloupe_sentencepiece.so, C interface only) is loaded with dlmopen(LM_ID_NEWLM), which gives it
// and its libsentencepiece, libstdc++ and libc their own symbol scope; nothing of libtorch's
// protobuf is visible there and nothing of it is visible here. Only C types cross, and memory is
// never freed across the line (the namespace has its own heap). The namespace is never closed.
#include "text/sentencepiece.h"

#include <dlfcn.h>

#include <algorithm>
#include <cfloat>
#include <cstring>
#include <filesystem>
#include <functional>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <queue>
#include <sstream>
#include <unordered_map>

#include "core/error.h"
#include "core/json_get.h"
#include "text/sentencepiece_shim.h"

namespace fs = std::filesystem;

namespace loupe::text {

namespace {

const char kSpace[] = "\xE2\x96\x81";  // U+2581 "▁"
const char kReplacementChar[] = "\xEF\xBF\xBD";
const char kUnkSurface[] = " \xE2\x81\x87 ";  // " ⁇ ", sentencepiece's default unk_surface
constexpr float kUnkPenalty = 10.0f;
const char kInstallHint[] =
    "install Debian's libsentencepiece (apt-get install libsentencepiece-dev sentencepiece; "
    "scripts/setup-deps.sh does it) and rebuild, or ship tokenizer.json with the model";

// ---- the shim ---------------------------------------------------------------------------------
struct ShimApi {
  bool ok = false;
  std::string error;
  decltype(&lsp_load) load = nullptr;
  decltype(&lsp_free) free = nullptr;
  decltype(&lsp_encode) encode = nullptr;
  decltype(&lsp_decode) decode = nullptr;
  decltype(&lsp_piece_size) piece_size = nullptr;
  decltype(&lsp_id_to_piece) id_to_piece = nullptr;
  decltype(&lsp_score) score = nullptr;
  decltype(&lsp_type) type = nullptr;
  decltype(&lsp_piece_to_id) piece_to_id = nullptr;
  decltype(&lsp_special_id) special_id = nullptr;
};

const char kShimName[] = "libloupe_sentencepiece.so";

std::vector<std::string> shim_candidates() {
  std::vector<std::string> out;
  if (const char* env = std::getenv("LOUPE_SENTENCEPIECE_SHIM"); env && *env) out.push_back(env);
  Dl_info di{};
  if (dladdr(reinterpret_cast<void*>(&shim_candidates), &di) && di.dli_fname) {
    const fs::path self = fs::absolute(di.dli_fname).parent_path();
    out.push_back((self / kShimName).string());           // next to libloupe.so
    out.push_back((self / ".." / "lib" / kShimName).string());  // bin/ next to lib/
    out.push_back((self / ".." / "lib" / "loupe" / kShimName).string());
  }
#ifdef LOUPE_SPM_SHIM_BUILD_PATH
  out.push_back(LOUPE_SPM_SHIM_BUILD_PATH);  // the build tree (tests, uninstalled tools)
#endif
  return out;
}

ShimApi open_shim() {
  ShimApi api;
  std::string tried;
  void* h = nullptr;
  for (const auto& p : shim_candidates()) {
    std::error_code ec;
    if (!fs::exists(p, ec)) {
      tried += "\n  " + p + ": absent";
      continue;
    }
    h = dlmopen(LM_ID_NEWLM, p.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (h) break;
    const char* e = dlerror();
    tried += "\n  " + p + ": " + (e ? e : "dlmopen failed");
  }
  if (!h) {
    api.error = std::string("the SentencePiece library is not available (") + kShimName +
                " and Debian's libsentencepiece.so.0, loaded with dlmopen): " + kInstallHint +
                ". Tried:" + tried;
    return api;
  }
  auto sym = [&](auto& fn, const char* name) {
    fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(h, name));
    if (!fn && api.error.empty()) api.error = std::string(kShimName) + " lacks " + name;
  };
  sym(api.load, "lsp_load");
  sym(api.free, "lsp_free");
  sym(api.encode, "lsp_encode");
  sym(api.decode, "lsp_decode");
  sym(api.piece_size, "lsp_piece_size");
  sym(api.id_to_piece, "lsp_id_to_piece");
  sym(api.score, "lsp_score");
  sym(api.type, "lsp_type");
  sym(api.piece_to_id, "lsp_piece_to_id");
  sym(api.special_id, "lsp_special_id");
  api.ok = api.error.empty();
  return api;
}

const ShimApi& shim() {
  static const ShimApi api = open_shim();
  return api;
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  LOUPE_CHECK(f, NotFound, "tokenizer file " << path << " cannot be opened");
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

size_t utf8_len(const std::string& s, size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  const size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
  if (n == 0 || i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k)
    if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return 0;
  // Overlong forms, surrogates and code points past U+10FFFF are invalid too.
  uint32_t cp = n == 1 ? c : n == 2 ? c & 0x1F : n == 3 ? c & 0x0F : c & 0x07;
  for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
      (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
    return 0;
  return n;
}

// Valid UTF-8 runs copied, each invalid byte replaced by U+FFFD (sentencepiece's byte decoding).
void append_bytes_as_utf8(const std::string& bytes, std::string& out) {
  for (size_t i = 0; i < bytes.size();) {
    const size_t n = utf8_len(bytes, i);
    if (n == 0) {
      out += kReplacementChar;
      ++i;
    } else {
      out.append(bytes, i, n);
      i += n;
    }
  }
}

std::string base64_decode(const std::string& in) {
  auto val = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62;
    if (c == '/' || c == '_') return 63;
    return -1;
  };
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    const int v = val(c);
    if (v < 0) continue;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  return out;
}

bool byte_piece(const std::string& p, int* value) {
  // "<0x41>"
  if (p.size() != 6 || p.compare(0, 3, "<0x") != 0 || p[5] != '>') return false;
  auto hex = [](char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
  };
  const int hi = hex(p[3]), lo = hex(p[4]);
  if (hi < 0 || lo < 0) return false;
  *value = hi * 16 + lo;
  return true;
}

}  // namespace

// ---- the tokenizer --------------------------------------------------------------------------
struct SentencePieceTokenizer::Impl {
  Backend backend = Backend::Native;
  std::string name;  // the file, for messages
  // Library backend.
  lsp_model* model = nullptr;
  // Both: the vocabulary (read from the library at load time for the library backend).
  std::vector<std::string> pieces;
  std::vector<float> scores;
  std::vector<PieceType> types;
  std::unordered_map<std::string, int> ids;  // every piece
  int unk = -1, bos = -1, eos = -1, pad = -1;
  // Native backend.
  bool bpe = false;
  bool byte_fallback = false;
  int byte_ids[256];
  std::unordered_map<std::string, int> matchable;  // normal / user-defined pieces
  std::unordered_map<std::string, int> merge_rank;  // BPE: merged piece -> best merge rank
  size_t max_piece_bytes = 1;
  float min_score = 0;
  float max_score = 0;  // sentencepiece's unigram max_score_: FLT_MIN, raised by normal pieces
  // User-defined pieces (<image>, <loc0000>, ...): sentencepiece's PrefixMatcher takes the longest
  // one at each position whole, before normalizing and before segmenting; BPE never merges it.
  std::unordered_map<std::string_view, int> user_defined;  // views into `pieces`
  size_t max_user_bytes = 0;
  // Normalizer (sentencepiece's NormalizerSpec).
  std::vector<uint32_t> trie;  // precompiled charsmap: Darts-clone double array ...
  std::string normalized;      // ... and the NUL-separated strings its values point into
  bool add_dummy_prefix = false;
  bool remove_extra_whitespaces = false;
  bool escape_whitespaces = true;

  ~Impl() {
    if (model) shim().free(model);
  }

  void index_pieces() {
    ids.clear();
    for (size_t i = 0; i < pieces.size(); ++i) ids.emplace(pieces[i], static_cast<int>(i));
  }

  // sentencepiece's PrefixMatcher::PrefixMatch: the length of the longest user-defined piece `in`
  // starts with, 0 if none.
  size_t user_defined_prefix(std::string_view in) const {
    for (size_t n = std::min(in.size(), max_user_bytes); n > 0; --n)
      if (user_defined.count(in.substr(0, n))) return n;
    return 0;
  }

  // sentencepiece's Normalizer::NormalizePrefix: a user-defined piece as it is, else the longest
  // charsmap match, else one character (an invalid byte becomes U+FFFD).
  std::pair<std::string_view, size_t> normalize_prefix(std::string_view in) const {
    if (const size_t u = user_defined_prefix(in)) return {in.substr(0, u), u};
    size_t longest = 0;
    uint32_t value = 0;
    if (!trie.empty()) {
      auto has_leaf = [](uint32_t u) { return ((u >> 8) & 1) != 0; };
      auto unit_value = [](uint32_t u) { return u & ((1U << 31) - 1); };
      auto label = [](uint32_t u) { return u & ((1U << 31) | 0xFF); };
      auto offset = [](uint32_t u) { return (u >> 10) << ((u & (1U << 9)) >> 6); };
      size_t pos = 0;
      pos ^= offset(trie[0]);
      for (size_t i = 0; i < in.size(); ++i) {
        const auto c = static_cast<unsigned char>(in[i]);
        pos ^= c;
        if (pos >= trie.size()) break;
        const uint32_t u = trie[pos];
        if (label(u) != c) break;
        pos ^= offset(u);
        if (pos >= trie.size()) break;
        if (has_leaf(u)) {
          longest = i + 1;
          value = unit_value(trie[pos]);
        }
      }
    }
    if (longest > 0 && value < normalized.size())
      return {std::string_view(normalized.c_str() + value), longest};
    const std::string s(in.substr(0, std::min<size_t>(4, in.size())));
    const size_t n = utf8_len(s, 0);
    if (n == 0) return {std::string_view(kReplacementChar, 3), 1};
    return {in.substr(0, n), n};
  }

  // sentencepiece's Normalizer::Normalize (treat_whitespace_as_suffix = false).
  std::string normalize(std::string_view in) const {
    std::string out;
    if (in.empty()) return out;
    if (remove_extra_whitespaces) {
      while (!in.empty()) {
        const auto p = normalize_prefix(in);
        if (p.first != " ") break;
        in.remove_prefix(p.second);
      }
    }
    if (in.empty()) return out;
    bool prev_space = remove_extra_whitespaces;
    if (add_dummy_prefix) out += escape_whitespaces ? kSpace : " ";
    while (!in.empty()) {
      auto [sp, consumed] = normalize_prefix(in);
      if (prev_space)
        while (!sp.empty() && sp.front() == ' ') sp.remove_prefix(1);
      if (!sp.empty()) {
        for (char c : sp) {
          if (escape_whitespaces && c == ' ')
            out += kSpace;
          else
            out.push_back(c);
        }
        prev_space = sp.back() == ' ';
      }
      in.remove_prefix(consumed);
      if (!remove_extra_whitespaces) prev_space = false;
    }
    if (remove_extra_whitespaces) {
      const std::string space = escape_whitespaces ? kSpace : " ";
      while (out.size() >= space.size() &&
             out.compare(out.size() - space.size(), space.size(), space) == 0)
        out.resize(out.size() - space.size());
    }
    return out;
  }

  void emit_unknown(const std::string& piece, std::vector<int64_t>& out) const {
    if (byte_fallback) {
      for (unsigned char c : piece) out.push_back(byte_ids[c] >= 0 ? byte_ids[c] : unk);
      return;
    }
    if (out.empty() || out.back() != unk) out.push_back(unk);  // consecutive unknowns merge
  }

  // sentencepiece's bpe::Model::Encode: characters and whole user-defined pieces (frozen: never
  // merged); then the adjacent pair whose concatenation is a piece with the best merge rank is
  // merged first (ties: leftmost), until none is left.
  void encode_bpe(const std::string& s, std::vector<int64_t>& out) const {
    struct Sym {
      int prev, next;
      size_t start, len;
      bool freeze;
    };
    std::vector<Sym> sym;
    for (size_t i = 0; i < s.size();) {
      size_t n = user_defined_prefix(std::string_view(s).substr(i));
      const bool freeze = n > 0;
      if (!freeze) n = utf8_len(s, i);
      if (n == 0) n = 1;
      sym.push_back({static_cast<int>(sym.size()) - 1, static_cast<int>(sym.size()) + 1, i, n, freeze});
      i += n;
    }
    if (sym.empty()) return;
    sym.back().next = -1;
    struct Pair {
      int rank, left, right;
      size_t size;
    };
    auto worse = [](const Pair& a, const Pair& b) {
      return a.rank != b.rank ? a.rank > b.rank : a.left > b.left;
    };
    std::priority_queue<Pair, std::vector<Pair>, decltype(worse)> agenda(worse);
    auto add = [&](int l, int r) {
      if (l < 0 || r < 0 || sym[l].freeze || sym[r].freeze) return;
      const size_t size = sym[l].len + sym[r].len;
      auto it = merge_rank.find(s.substr(sym[l].start, size));
      if (it != merge_rank.end()) agenda.push({it->second, l, r, size});
    };
    for (size_t i = 1; i < sym.size(); ++i) add(static_cast<int>(i) - 1, static_cast<int>(i));
    while (!agenda.empty()) {
      const Pair top = agenda.top();
      agenda.pop();
      Sym& l = sym[top.left];
      Sym& r = sym[top.right];
      if (l.len == 0 || r.len == 0 || l.len + r.len != top.size || l.next != top.right) continue;
      l.len += r.len;
      r.len = 0;
      l.next = r.next;
      if (r.next >= 0) sym[r.next].prev = top.left;
      add(l.prev, top.left);
      add(top.left, l.next);
    }
    for (int i = 0; i >= 0; i = sym[i].next) {
      const std::string piece = s.substr(sym[i].start, sym[i].len);
      auto it = matchable.find(piece);
      if (it != matchable.end())
        out.push_back(it->second);
      else
        emit_unknown(piece, out);
    }
  }

  // sentencepiece's unigram::Model::EncodeOptimized: Viterbi over the normalized string; a
  // character no piece covers is one unknown of score min_score - 10.
  void encode_unigram(const std::string& s, std::vector<int64_t>& out) const {
    struct Node {
      int start = -1;
      int id = -1;
      float score = 0;
    };
    std::vector<Node> best(s.size() + 1);
    best[0].start = 0;
    const float unk_score = min_score - kUnkPenalty;
    for (size_t pos = 0; pos < s.size();) {
      size_t mblen = utf8_len(s, pos);
      if (mblen == 0) mblen = 1;
      const float base = best[pos].score;
      bool single = false;
      size_t end = pos;
      while (end < s.size() && end - pos < max_piece_bytes) {
        size_t n = utf8_len(s, end);
        if (n == 0) n = 1;
        end += n;
        if (end - pos > max_piece_bytes) break;
        auto it = matchable.find(s.substr(pos, end - pos));
        if (it == matchable.end()) continue;
        // a user-defined piece gets sentencepiece's bonus to be always chosen
        const float sc = base + (types[it->second] == PieceType::UserDefined
                                     ? static_cast<float>(end - pos) * max_score - 0.1f
                                     : scores[it->second]);
        Node& t = best[end];
        if (t.start == -1 || sc > t.score) t = {static_cast<int>(pos), it->second, sc};
        if (end - pos == mblen) single = true;
      }
      if (!single) {
        Node& t = best[pos + mblen];
        const float sc = base + unk_score;
        if (t.start == -1 || sc > t.score) t = {static_cast<int>(pos), unk, sc};
      }
      pos += mblen;
    }
    std::vector<std::pair<size_t, int>> path;
    for (size_t e = s.size(); e > 0; e = static_cast<size_t>(best[e].start))
      path.emplace_back(static_cast<size_t>(best[e].start), best[e].id);
    std::reverse(path.begin(), path.end());
    for (size_t k = 0; k < path.size(); ++k) {
      const size_t b = path[k].first;
      const size_t e = k + 1 < path.size() ? path[k + 1].first : s.size();
      if (path[k].second == unk)
        emit_unknown(s.substr(b, e - b), out);
      else
        out.push_back(path[k].second);
    }
  }

  std::vector<int64_t> encode_native(const std::string& text) const {
    const std::string s = normalize(text);
    std::vector<int64_t> out;
    if (bpe)
      encode_bpe(s, out);
    else
      encode_unigram(s, out);
    return out;
  }

  // sentencepiece's SentencePieceProcessor::Decode.
  std::string decode_native(const std::vector<int64_t>& in) const {
    std::string out, bytes;
    bool bos_ws = true;
    for (int64_t id : in) {
      LOUPE_CHECK(id >= 0 && id < static_cast<int64_t>(pieces.size()), InvalidArgument,
                  "token id " << id << " is outside the vocabulary of " << name << " ("
                              << pieces.size() << " pieces)");
      const PieceType t = types[id];
      if (t == PieceType::Byte) {
        int v = 0;
        byte_piece(pieces[id], &v);
        bytes.push_back(static_cast<char>(v));
        bos_ws = false;
        continue;
      }
      append_bytes_as_utf8(bytes, out);
      bytes.clear();
      if (t == PieceType::Control) continue;
      if (t == PieceType::Unknown) {
        out += kUnkSurface;
        bos_ws = false;
        continue;
      }
      std::string_view p = pieces[id];
      if (bos_ws && add_dummy_prefix && p.substr(0, 3) == kSpace) p.remove_prefix(3);
      bos_ws = false;
      for (size_t i = 0; i < p.size();) {
        if (p.substr(i, 3) == kSpace) {
          out.push_back(' ');
          i += 3;
        } else {
          out.push_back(p[i++]);
        }
      }
    }
    append_bytes_as_utf8(bytes, out);
    return out;
  }
};

bool SentencePieceTokenizer::library_available(std::string* why) {
  const auto& api = shim();
  if (!api.ok && why) *why = api.error;
  return api.ok;
}

SentencePieceTokenizer SentencePieceTokenizer::from_model_bytes(const std::string& bytes,
                                                                const std::string& name) {
  const auto& api = shim();
  LOUPE_CHECK(api.ok, Unsupported, "cannot read the SentencePiece model " << name << ": " << api.error);
  auto impl = std::make_shared<Impl>();
  impl->backend = Backend::Library;
  impl->name = name;
  char err[512] = {0};
  impl->model = api.load(bytes.data(), bytes.size(), err, sizeof err);
  LOUPE_CHECK(impl->model, BadModel,
              "SentencePiece model " << name << " is malformed: " << (err[0] ? err : "not a ModelProto"));
  const int32_t n = api.piece_size(impl->model);
  impl->pieces.resize(n);
  impl->scores.resize(n);
  impl->types.resize(n);
  std::vector<char> buf(256);
  for (int32_t i = 0; i < n; ++i) {
    long len = api.id_to_piece(impl->model, i, buf.data(), buf.size());
    if (len > static_cast<long>(buf.size())) {
      buf.resize(len);
      len = api.id_to_piece(impl->model, i, buf.data(), buf.size());
    }
    impl->pieces[i].assign(buf.data(), len < 0 ? 0 : len);
    impl->scores[i] = api.score(impl->model, i);
    impl->types[i] = static_cast<PieceType>(api.type(impl->model, i));
  }
  impl->index_pieces();
  impl->unk = api.special_id(impl->model, 0);
  impl->bos = api.special_id(impl->model, 1);
  impl->eos = api.special_id(impl->model, 2);
  impl->pad = api.special_id(impl->model, 3);
  SentencePieceTokenizer t;
  t.impl_ = std::move(impl);
  return t;
}

SentencePieceTokenizer SentencePieceTokenizer::from_model_file(const std::string& path) {
  return from_model_bytes(read_file(path), path);
}

SentencePieceTokenizer SentencePieceTokenizer::from_tokenizer_json(const std::string& path) {
  const auto j = settings::parse_json(read_file(path), "tokenizer file " + path);
  auto impl = std::make_shared<Impl>();
  impl->backend = Backend::Native;
  impl->name = path;
  std::fill(std::begin(impl->byte_ids), std::end(impl->byte_ids), -1);
  try {
    const auto& m = j.at("model");
    const std::string type = m.value("type", "");
    impl->byte_fallback = m.value("byte_fallback", false);
    if (type == "BPE") {
      impl->bpe = true;
      const auto& vocab = m.at("vocab");
      impl->pieces.resize(vocab.size());
      for (auto it = vocab.begin(); it != vocab.end(); ++it) {
        const int64_t id = it.value().get<int64_t>();
        LOUPE_CHECK(id >= 0 && id < static_cast<int64_t>(vocab.size()), BadModel,
                    "tokenizer file " << path << ": id " << id << " of \"" << it.key()
                                      << "\" is outside the vocabulary");
        impl->pieces[id] = it.key();
      }
      impl->scores.assign(impl->pieces.size(), 0.0f);
      for (size_t i = 0; i < impl->pieces.size(); ++i) impl->scores[i] = -static_cast<float>(i);
      if (m.contains("unk_token") && m["unk_token"].is_string()) {
        auto it = vocab.find(m["unk_token"].get<std::string>());
        if (it != vocab.end()) impl->unk = it->get<int>();
      }
    } else if (type == "Unigram") {
      const auto& vocab = m.at("vocab");
      for (const auto& e : vocab) {
        impl->pieces.push_back(e.at(0).get<std::string>());
        impl->scores.push_back(e.at(1).get<float>());
      }
      if (m.contains("unk_id") && m["unk_id"].is_number()) impl->unk = m["unk_id"].get<int>();
    } else {
      LOUPE_THROW(Unsupported, "tokenizer file " << path << ": model type \"" << type
                                                 << "\" is not a SentencePiece model (BPE with "
                                                    "Metaspace/byte fallback, or Unigram)");
    }
    impl->index_pieces();
    impl->types.assign(impl->pieces.size(), PieceType::Normal);
    if (j.contains("added_tokens") && j["added_tokens"].is_array())
      for (const auto& a : j["added_tokens"]) {
        const int64_t id = a.at("id").get<int64_t>();
        if (id < 0 || id >= static_cast<int64_t>(impl->pieces.size())) continue;
        if (a.value("special", false)) impl->types[id] = PieceType::Control;
        else impl->types[id] = PieceType::UserDefined;
      }
    if (impl->unk >= 0 && impl->unk < static_cast<int>(impl->pieces.size()))
      impl->types[impl->unk] = PieceType::Unknown;
    for (size_t i = 0; i < impl->pieces.size(); ++i) {
      int v = 0;
      if (impl->byte_fallback && byte_piece(impl->pieces[i], &v)) {
        impl->types[i] = PieceType::Byte;
        impl->byte_ids[v] = static_cast<int>(i);
      }
      const auto t = impl->types[i];
      if (t == PieceType::Normal || t == PieceType::UserDefined) {
        impl->matchable.emplace(impl->pieces[i], static_cast<int>(i));
        impl->max_piece_bytes = std::max(impl->max_piece_bytes, impl->pieces[i].size());
      }
    }
    bool first = true;
    impl->max_score = FLT_MIN;
    for (size_t i = 0; i < impl->pieces.size(); ++i)
      if (impl->types[i] == PieceType::Normal) {
        impl->min_score = first ? impl->scores[i] : std::min(impl->min_score, impl->scores[i]);
        impl->max_score = std::max(impl->max_score, impl->scores[i]);
        first = false;
      }
    for (size_t i = 0; i < impl->pieces.size(); ++i)
      if (impl->types[i] == PieceType::UserDefined && !impl->pieces[i].empty()) {
        impl->user_defined.emplace(impl->pieces[i], static_cast<int>(i));
        impl->max_user_bytes = std::max(impl->max_user_bytes, impl->pieces[i].size());
      }
    auto special = [&](std::initializer_list<const char*> names) {
      for (const char* n : names) {
        auto it = impl->ids.find(n);
        if (it != impl->ids.end() && impl->types[it->second] == PieceType::Control) return it->second;
      }
      return -1;
    };
    impl->bos = special({"<s>", "<bos>"});
    impl->eos = special({"</s>", "<eos>"});
    impl->pad = special({"<pad>"});
    if (impl->bpe && m.contains("merges")) {
      int rank = 0;
      for (const auto& mg : m["merges"]) {
        std::string a, b;
        if (mg.is_string()) {
          const std::string s = mg.get<std::string>();
          const auto sp = s.find(' ');
          LOUPE_CHECK(sp != std::string::npos, BadModel,
                      "tokenizer file " << path << ": merge \"" << s << "\" has no space");
          a = s.substr(0, sp);
          b = s.substr(sp + 1);
        } else {
          a = mg.at(0).get<std::string>();
          b = mg.at(1).get<std::string>();
        }
        const std::string merged = a + b;
        if (impl->matchable.count(merged)) impl->merge_rank.emplace(merged, rank);
        ++rank;
      }
    }
    // The normalizer, as a sentencepiece NormalizerSpec: Precompiled = the charsmap, Replace
    // " {2,}" = remove_extra_whitespaces, Metaspace with a prefix (or Prepend "▁") = dummy prefix.
    std::function<void(const nlohmann::json&)> norm = [&](const nlohmann::json& n) {
      if (n.is_null()) return;
      const std::string t = n.value("type", "");
      if (t == "Sequence") {
        for (const auto& c : n.at("normalizers")) norm(c);
      } else if (t == "Precompiled") {
        const std::string blob = base64_decode(n.value("precompiled_charsmap", ""));
        if (blob.size() < 4) return;
        uint32_t trie_size = 0;
        std::memcpy(&trie_size, blob.data(), 4);
        LOUPE_CHECK(trie_size % 4 == 0 && 4 + static_cast<size_t>(trie_size) <= blob.size(),
                    BadModel, "tokenizer file " << path << ": precompiled_charsmap is malformed");
        impl->trie.resize(trie_size / 4);
        std::memcpy(impl->trie.data(), blob.data() + 4, trie_size);
        impl->normalized = blob.substr(4 + trie_size);
      } else if (t == "Replace") {
        const auto& pat = n.at("pattern");
        const std::string content = n.value("content", "");
        if (pat.contains("Regex") && pat["Regex"] == " {2,}" && content == " ") {
          impl->remove_extra_whitespaces = true;
        } else if (pat.contains("String") && pat["String"] == " " && content == kSpace) {
          impl->escape_whitespaces = true;
        } else {
          LOUPE_THROW(Unsupported, "tokenizer file " << path << ": normalizer Replace "
                                                     << pat.dump() << " -> \"" << content
                                                     << "\" has no SentencePiece equivalent");
        }
      } else if (t == "Prepend") {
        if (n.value("prepend", "") == kSpace) impl->add_dummy_prefix = true;
      } else if (t == "Strip" || t == "StripAccents") {
        LOUPE_THROW(Unsupported, "tokenizer file " << path << ": normalizer " << t
                                                   << " has no SentencePiece equivalent");
      } else {
        LOUPE_THROW(Unsupported, "tokenizer file " << path << ": normalizer \"" << t
                                                   << "\" is not supported for SentencePiece models");
      }
    };
    if (j.contains("normalizer")) norm(j["normalizer"]);
    std::function<void(const nlohmann::json&)> pre = [&](const nlohmann::json& p) {
      if (p.is_null()) return;
      const std::string t = p.value("type", "");
      if (t == "Sequence") {
        for (const auto& c : p.at("pretokenizers")) pre(c);
      } else if (t == "Metaspace") {
        impl->escape_whitespaces = true;
        const std::string scheme = p.value("prepend_scheme", "");
        if (scheme == "always" || scheme == "first" ||
            (scheme.empty() && p.value("add_prefix_space", true)))
          impl->add_dummy_prefix = true;
      } else {
        LOUPE_THROW(Unsupported, "tokenizer file " << path << ": pre-tokenizer \"" << t
                                                   << "\" is not supported for SentencePiece models");
      }
    };
    if (j.contains("pre_tokenizer")) pre(j["pre_tokenizer"]);
  } catch (const nlohmann::json::exception& e) {
    LOUPE_THROW(BadModel, "tokenizer file " << path << " is malformed: " << e.what());
  }
  LOUPE_CHECK(!impl->pieces.empty(), BadModel, "tokenizer file " << path << " has an empty vocabulary");
  LOUPE_CHECK(impl->byte_fallback || impl->unk >= 0, BadModel,
              "tokenizer file " << path << " has neither an unknown piece nor byte fallback");
  SentencePieceTokenizer t;
  t.impl_ = std::move(impl);
  return t;
}

SentencePieceTokenizer SentencePieceTokenizer::load_from_dir(const std::string& dir) {
  const fs::path d(dir);
  if (fs::exists(d / "tokenizer.model")) return from_model_file((d / "tokenizer.model").string());
  // T5's folders (Flan-T5, FLUX's tokenizer_2/) name the model file spiece.model
  if (fs::exists(d / "spiece.model")) return from_model_file((d / "spiece.model").string());
  if (fs::exists(d / "tokenizer.json")) return from_tokenizer_json((d / "tokenizer.json").string());
  LOUPE_THROW(NotFound, "no SentencePiece tokenizer in " << dir
                                                         << ": expected tokenizer.model, spiece.model or tokenizer.json");
}

SentencePieceTokenizer::Backend SentencePieceTokenizer::backend() const { return impl_->backend; }

std::vector<int64_t> SentencePieceTokenizer::encode(const std::string& text) const {
  const Impl& m = *impl_;
  if (m.backend == Backend::Native) return m.encode_native(text);
  const auto& api = shim();
  std::vector<int32_t> buf(text.size() * 2 + 16);
  char err[512] = {0};
  long n = api.encode(m.model, text.data(), text.size(), buf.data(), buf.size(), err, sizeof err);
  if (n > static_cast<long>(buf.size())) {
    buf.resize(n);
    n = api.encode(m.model, text.data(), text.size(), buf.data(), buf.size(), err, sizeof err);
  }
  LOUPE_CHECK(n >= 0, Internal, "SentencePiece encoding with " << m.name << " failed: " << err);
  return std::vector<int64_t>(buf.begin(), buf.begin() + n);
}

std::string SentencePieceTokenizer::decode(const std::vector<int64_t>& ids) const {
  const Impl& m = *impl_;
  if (m.backend == Backend::Native) return m.decode_native(ids);
  std::vector<int32_t> in;
  in.reserve(ids.size());
  size_t guess = 16;
  for (int64_t id : ids) {
    LOUPE_CHECK(id >= 0 && id < static_cast<int64_t>(m.pieces.size()), InvalidArgument,
                "token id " << id << " is outside the vocabulary of " << m.name << " ("
                            << m.pieces.size() << " pieces)");
    in.push_back(static_cast<int32_t>(id));
    guess += m.pieces[id].size() + 4;
  }
  const auto& api = shim();
  std::string out(guess, '\0');
  char err[512] = {0};
  long n = api.decode(m.model, in.data(), in.size(), out.data(), out.size(), err, sizeof err);
  if (n > static_cast<long>(out.size())) {
    out.resize(n);
    n = api.decode(m.model, in.data(), in.size(), out.data(), out.size(), err, sizeof err);
  }
  LOUPE_CHECK(n >= 0, Internal, "SentencePiece decoding with " << m.name << " failed: " << err);
  out.resize(n);
  return out;
}

size_t SentencePieceTokenizer::vocab_size() const { return impl_->pieces.size(); }
std::string SentencePieceTokenizer::id_to_piece(int64_t id) const {
  return id >= 0 && id < static_cast<int64_t>(impl_->pieces.size()) ? impl_->pieces[id] : "";
}
int64_t SentencePieceTokenizer::piece_to_id(const std::string& piece) const {
  auto it = impl_->ids.find(piece);
  return it == impl_->ids.end() ? impl_->unk : it->second;
}
float SentencePieceTokenizer::score(int64_t id) const {
  return id >= 0 && id < static_cast<int64_t>(impl_->scores.size()) ? impl_->scores[id] : 0.0f;
}
SentencePieceTokenizer::PieceType SentencePieceTokenizer::type(int64_t id) const {
  return id >= 0 && id < static_cast<int64_t>(impl_->types.size()) ? impl_->types[id]
                                                                    : PieceType::Unused;
}
int64_t SentencePieceTokenizer::unk_id() const { return impl_->unk; }
int64_t SentencePieceTokenizer::bos_id() const { return impl_->bos; }
int64_t SentencePieceTokenizer::eos_id() const { return impl_->eos; }
int64_t SentencePieceTokenizer::pad_id() const { return impl_->pad; }

}  // namespace loupe::text
