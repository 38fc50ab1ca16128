#include "io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/float8.h"

namespace loupe::io {

namespace {
constexpr uint64_t kMaxHeader = 100ull << 20;  // 100 MB, as the reference reader allows

struct DType {
  const char* name;
  size_t size;
};
constexpr DType kDTypes[] = {{"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8},  {"I32", 4},
                             {"I16", 2}, {"I8", 1},  {"U8", 1},  {"BOOL", 1}, {"F8_E4M3", 1}, {"F8_E5M2", 1},
                             {"U16", 2}, {"U32", 4}, {"U64", 8}};

using nlohmann::json;

// A shape or data_offsets value as written. An array of scalars (the usual case) keeps its
// elements in HeaderReader::items (no allocation per tensor); one holding arrays or objects is
// kept whole in `nested`. Anything but an array is "absent" for the checks.
struct RawList {
  bool is_array = false;
  bool is_nested = false;
  size_t first = 0, count = 0;
  json nested;
};

// One top-level entry of the header as written: a tensor's dtype, shape and data_offsets (other
// keys are skipped), or __metadata__'s entries (nullopt: not a string). Checked once the whole
// header has parsed, so that invalid JSON is reported before anything else.
struct RawEntry {
  std::string name;
  bool is_object = false;
  bool dtype_is_string = false;
  std::string dtype;
  RawList shape, offsets;
  std::vector<std::pair<std::string, std::optional<std::string>>> metadata;
};

// SAX events (nlohmann's interface) straight into RawEntry: no document is built for the header (a
// LoRA's header holds ~800 tensors; building the DOM was most of the time of reading it).
// Depths: 1 = inside the header object, 2 = inside an entry, 3 = inside a field's value.
class HeaderReader {
 public:
  std::vector<RawEntry> entries;
  std::vector<json> items;  // scalars of the shapes and data_offsets
  bool top_is_object = false;
  std::size_t error_byte = 0;
  std::string error;

  bool null() { return scalar(nullptr); }
  bool boolean(bool v) { return scalar(v); }
  bool number_integer(json::number_integer_t v) { return scalar(v); }
  bool number_unsigned(json::number_unsigned_t v) { return scalar(v); }
  bool number_float(json::number_float_t v, const std::string&) { return scalar(v); }
  bool string(std::string& v) { return scalar(std::move(v)); }
  bool binary(json::binary_t&) { return true; }  // the JSON parser never produces it
  bool start_object(std::size_t) { return open(true); }
  bool start_array(std::size_t) { return open(false); }
  bool end_object() { return close(); }
  bool end_array() { return close(); }
  bool key(std::string& k) {
    if (skip_from_) return true;
    if (!stack_.empty()) {
      capture_key_ = std::move(k);
    } else if (depth_ == 1) {  // a repeated name is kept apart: the last one wins after sorting
      entries.emplace_back();
      entries.back().name = std::move(k);
      in_metadata_ = entries.back().name == "__metadata__";
    } else if (in_metadata_) {
      meta_key_ = std::move(k);
    } else {  // a repeated field replaces the earlier value, as in a JSON object
      RawEntry& e = entries.back();
      field_ = k == "dtype" ? Field::Dtype : k == "shape" ? Field::Shape : k == "data_offsets" ? Field::Offsets : Field::Other;
      if (field_ == Field::Dtype) {
        e.dtype_is_string = false;
        e.dtype.clear();
      } else if (field_ == Field::Shape) {
        e.shape = RawList();
      } else if (field_ == Field::Offsets) {
        e.offsets = RawList();
      }
    }
    return true;
  }
  bool parse_error(std::size_t position, const std::string&, const nlohmann::detail::exception& ex) {
    error_byte = position;
    error = ex.what();
    return false;
  }

 private:
  enum class Field { Dtype, Shape, Offsets, Other };
  int depth_ = 0;      // containers open
  int skip_from_ = 0;  // > 0: inside a value that is not looked at, opened at this depth
  bool in_metadata_ = false;
  Field field_ = Field::Other;
  std::string meta_key_, capture_key_;
  RawList* list_ = nullptr;   // the shape / data_offsets array being read
  std::vector<json*> stack_;  // containers open inside it once it is nested

  // A new value inside the nested shape / data_offsets.
  json& slot() {
    json& top = *stack_.back();
    if (top.is_array()) {
      top.push_back(nullptr);
      return top.back();
    }
    return top[capture_key_];
  }
  template <class V>
  bool scalar(V&& v) {
    constexpr bool is_string = std::is_same_v<std::decay_t<V>, std::string>;
    if (skip_from_) return true;
    if (!stack_.empty()) {
      slot() = std::forward<V>(v);
    } else if (list_) {
      items.emplace_back(std::forward<V>(v));
      ++list_->count;
    } else if (depth_ == 1) {
      entries.back().is_object = false;
    } else if (depth_ == 2 && in_metadata_) {
      if constexpr (is_string) entries.back().metadata.emplace_back(std::move(meta_key_), std::move(v));
      else entries.back().metadata.emplace_back(std::move(meta_key_), std::nullopt);
    } else if (depth_ == 2 && field_ == Field::Dtype) {
      entries.back().dtype_is_string = is_string;
      if constexpr (is_string) entries.back().dtype = std::move(v);
    }
    // depth 0: the header is not an object; a scalar shape / data_offsets stays "not an array"
    return true;
  }
  bool open(bool object) {
    ++depth_;
    if (skip_from_) return true;
    if (list_ && stack_.empty()) {  // the array holds containers: kept whole from here on
      list_->nested = json::array_t(items.begin() + static_cast<std::ptrdiff_t>(list_->first), items.end());
      items.resize(list_->first);
      list_->is_nested = true;
      stack_.push_back(&list_->nested);
    }
    if (!stack_.empty()) {
      json& s = slot();
      s = object ? json::object() : json::array();
      stack_.push_back(&s);
    } else if (depth_ == 1) {
      top_is_object = object;
      if (!object) skip_from_ = 1;
    } else if (depth_ == 2) {
      entries.back().is_object = object;
      if (!object) skip_from_ = 2;
    } else if (!in_metadata_ && !object && (field_ == Field::Shape || field_ == Field::Offsets)) {
      list_ = field_ == Field::Shape ? &entries.back().shape : &entries.back().offsets;
      list_->is_array = true;
      list_->first = items.size();
    } else {
      if (in_metadata_) entries.back().metadata.emplace_back(std::move(meta_key_), std::nullopt);
      skip_from_ = depth_;  // a dtype that is a container stays "not a string"
    }
    return true;
  }
  bool close() {
    if (skip_from_ == depth_) {
      skip_from_ = 0;
    } else if (!skip_from_ && list_ && depth_ == 3) {  // the shape / data_offsets array ends
      stack_.clear();
      list_ = nullptr;
    } else if (!skip_from_ && !stack_.empty()) {
      stack_.pop_back();
    }
    --depth_;
    return true;
  }
};

// The JSON that safetensors writers produce, read straight into the SAX events: strings (escapes
// and UTF-8 checked as nlohmann's lexer does), non-negative integers, objects and arrays. Gives up
// (false) on anything else -- negative or non-integer numbers, literals, deep nesting, and every
// syntax error -- and then nlohmann's parser reads the header again: its events, its messages.
// nlohmann's lexer takes ~2 ms for a LoRA's 110 kB header; this takes a fraction of that.
template <class Sax>
bool fast_sax_parse(const char* p, const char* const end, Sax& sax) {
  std::string s;
  auto ws = [&] {
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) ++p;
  };
  auto hex4 = [&](uint32_t* out) {
    if (end - p < 4) return false;
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = *p++;
      v <<= 4;
      if (c >= '0' && c <= '9') v |= uint32_t(c - '0');
      else if (c >= 'a' && c <= 'f') v |= uint32_t(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') v |= uint32_t(c - 'A' + 10);
      else return false;
    }
    *out = v;
    return true;
  };
  auto utf8 = [&](uint32_t cp) {
    if (cp < 0x80) {
      s.push_back(char(cp));
    } else if (cp < 0x800) {
      s.push_back(char(0xC0 | (cp >> 6)));
      s.push_back(char(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      s.push_back(char(0xE0 | (cp >> 12)));
      s.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
      s.push_back(char(0x80 | (cp & 0x3F)));
    } else {
      s.push_back(char(0xF0 | (cp >> 18)));
      s.push_back(char(0x80 | ((cp >> 12) & 0x3F)));
      s.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
      s.push_back(char(0x80 | (cp & 0x3F)));
    }
  };
  auto string = [&]() -> bool {  // at the opening quote; the text goes into s
    s.clear();
    ++p;
    for (;;) {
      const char* run = p;
      while (p < end && *p != '"' && *p != '\\' && static_cast<unsigned char>(*p) >= 0x20 &&
             static_cast<unsigned char>(*p) < 0x80)
        ++p;
      s.append(run, p);
      if (p == end) return false;
      const auto c = static_cast<unsigned char>(*p);
      if (c == '"') {
        ++p;
        return true;
      }
      if (c < 0x20) return false;
      if (c == '\\') {
        if (++p == end) return false;
        switch (*p++) {
          case '"': s.push_back('"'); break;
          case '\\': s.push_back('\\'); break;
          case '/': s.push_back('/'); break;
          case 'b': s.push_back('\b'); break;
          case 'f': s.push_back('\f'); break;
          case 'n': s.push_back('\n'); break;
          case 'r': s.push_back('\r'); break;
          case 't': s.push_back('\t'); break;
          case 'u': {
            uint32_t cp = 0, lo = 0;
            if (!hex4(&cp)) return false;
            if (cp >= 0xDC00 && cp <= 0xDFFF) return false;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
              if (end - p < 2 || p[0] != '\\' || p[1] != 'u') return false;
              p += 2;
              if (!hex4(&lo) || lo < 0xDC00 || lo > 0xDFFF) return false;
              cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            utf8(cp);
            break;
          }
          default: return false;
        }
        continue;
      }
      // UTF-8 (RFC 3629: no overlong forms, no surrogates, at most U+10FFFF)
      int more = 0;
      unsigned char lo = 0x80, hi = 0xBF;
      if (c >= 0xC2 && c <= 0xDF) more = 1;
      else if (c == 0xE0) more = 2, lo = 0xA0;
      else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) more = 2;
      else if (c == 0xED) more = 2, hi = 0x9F;
      else if (c == 0xF0) more = 3, lo = 0x90;
      else if (c >= 0xF1 && c <= 0xF3) more = 3;
      else if (c == 0xF4) more = 3, hi = 0x8F;
      else return false;
      if (end - p <= more) return false;
      for (int i = 1; i <= more; ++i) {
        const auto b = static_cast<unsigned char>(p[i]);
        if (b < (i == 1 ? lo : 0x80) || b > (i == 1 ? hi : 0xBF)) return false;
      }
      s.append(p, p + more + 1);
      p += more + 1;
    }
  };
  std::vector<bool> in_object;  // the containers open: object or array
  ws();
  for (;;) {
    // a value
    if (p == end) return false;
    if (*p == '{') {
      ++p;
      if (!sax.start_object(std::size_t(-1))) return false;
      ws();
      if (p < end && *p == '}') {
        ++p;
        if (!sax.end_object()) return false;
      } else {
        in_object.push_back(true);
        goto key;
      }
    } else if (*p == '[') {
      ++p;
      if (!sax.start_array(std::size_t(-1))) return false;
      ws();
      if (p < end && *p == ']') {
        ++p;
        if (!sax.end_array()) return false;
      } else {
        in_object.push_back(false);
        continue;
      }
    } else if (*p == '"') {
      if (!string() || !sax.string(s)) return false;
    } else if (*p >= '0' && *p <= '9') {
      if (*p == '0' && end - p > 1 && p[1] >= '0' && p[1] <= '9') return false;
      uint64_t v = 0;
      for (; p < end && *p >= '0' && *p <= '9'; ++p) {
        const uint64_t d = uint64_t(*p - '0');
        if (v > (UINT64_MAX - d) / 10) return false;
        v = v * 10 + d;
      }
      if (p < end && (*p == '.' || *p == 'e' || *p == 'E')) return false;
      if (!sax.number_unsigned(v)) return false;
    } else {
      return false;
    }
    // after a value: the next one, or the end of containers
    for (;;) {
      ws();
      if (in_object.empty()) return p == end;
      if (p == end) return false;
      if (*p == ',') {
        ++p;
        ws();
        if (in_object.back()) goto key;
        break;  // the next array element
      }
      if (*p != (in_object.back() ? '}' : ']')) return false;
      ++p;
      if (!(in_object.back() ? sax.end_object() : sax.end_array())) return false;
      in_object.pop_back();
    }
    continue;
  key:
    if (p == end || *p != '"' || !string() || !sax.key(s)) return false;
    ws();
    if (p == end || *p != ':') return false;
    ++p;
    ws();
  }
}
}  // namespace

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

size_t dtype_size(const std::string& dtype) {
  for (const auto& d : kDTypes)
    if (dtype == d.name) return d.size;
  return 0;
}

torch::ScalarType to_torch_dtype(const std::string& dtype, const std::string& context) {
  if (dtype == "F64") return torch::kFloat64;
  if (dtype == "F32") return torch::kFloat32;
  if (dtype == "F16") return torch::kFloat16;
  if (dtype == "BF16") return torch::kBFloat16;
  if (dtype == "I64") return torch::kInt64;
  if (dtype == "I32") return torch::kInt32;
  if (dtype == "I16") return torch::kInt16;
  if (dtype == "I8") return torch::kInt8;
  if (dtype == "U8") return torch::kUInt8;
  if (dtype == "BOOL") return torch::kBool;
  LOUPE_THROW(Unsupported, context << ": dtype " << dtype
                                   << " is valid safetensors but this libtorch build cannot hold it; "
                                      "hint: convert the checkpoint to F16/BF16/F32");
}

std::string from_torch_dtype(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat64: return "F64";
    case torch::kFloat32: return "F32";
    case torch::kFloat16: return "F16";
    case torch::kBFloat16: return "BF16";
    case torch::kInt64: return "I64";
    case torch::kInt32: return "I32";
    case torch::kInt16: return "I16";
    case torch::kInt8: return "I8";
    case torch::kUInt8: return "U8";
    case torch::kBool: return "BOOL";
    default: LOUPE_THROW(Unsupported, "safetensors has no dtype for torch type " << c10::toString(t));
  }
}

struct SafetensorsFile::Mapping {
  void* addr = nullptr;
  size_t size = 0;
  ~Mapping() {
    if (addr && addr != MAP_FAILED) munmap(addr, size);
  }
};

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) LOUPE_THROW(NotFound, path << ": cannot open (" << std::strerror(errno) << ")");
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    LOUPE_THROW(BadModel, path << ": not a regular file");
  }
  const uint64_t file_size = static_cast<uint64_t>(st.st_size);
  if (file_size < 8) {
    ::close(fd);
    LOUPE_THROW(BadModel, path << ": file is " << file_size
                               << " bytes, too short for a safetensors header (8-byte length first); "
                                  "hint: the download may be incomplete");
  }
  map_ = std::make_shared<Mapping>();
  map_->size = file_size;
  map_->addr = mmap(nullptr, file_size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (map_->addr == MAP_FAILED) LOUPE_THROW(BadModel, path << ": mmap failed (" << std::strerror(errno) << ")");
  const auto* bytes = static_cast<const uint8_t*>(map_->addr);

  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | bytes[i];
  if (n > kMaxHeader)
    LOUPE_THROW(BadModel, path << ": header length " << n << " is larger than the 100 MB limit; not a safetensors file?");
  if (n > file_size - 8)
    LOUPE_THROW(BadModel, path << ": header length " << n << " runs past the end of the file (" << file_size
                               << " bytes): the file is truncated; hint: download it again");
  data_offset_ = 8 + n;
  const uint64_t data_size = file_size - data_offset_;

  const char* first = reinterpret_cast<const char*>(bytes + 8);
  auto reader = std::make_unique<HeaderReader>();
  if (!fast_sax_parse(first, first + n, *reader)) {
    reader = std::make_unique<HeaderReader>();
    if (!nlohmann::json::sax_parse(first, first + n, reader.get()))
      LOUPE_THROW(BadModel, path << ": header is not valid JSON (byte " << reader->error_byte << "): " << reader->error);
  }
  if (!reader->top_is_object) LOUPE_THROW(BadModel, path << ": header JSON is not an object");

  // Validated in name order (as a JSON object keeps its keys), so the first problem reported does
  // not depend on the order in the file; a repeated key counts once, with its last value.
  auto& entries = reader->entries;
  std::vector<uint32_t> order(entries.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<uint32_t>(i);
  const auto by_name = [&](uint32_t a, uint32_t b) { return entries[a].name < entries[b].name; };
  if (!std::is_sorted(order.begin(), order.end(), by_name)) std::stable_sort(order.begin(), order.end(), by_name);
  // The elements of a shape / data_offsets that is an array.
  const auto elements = [&](const RawList& l) -> std::pair<const json*, const json*> {
    if (l.is_nested) {
      const auto& a = l.nested.get_ref<const json::array_t&>();
      return {a.data(), a.data() + a.size()};
    }
    const json* b = reader->items.data() + l.first;
    return {b, b + l.count};
  };
  const auto dump = [&](const RawList& l) {
    const auto [b, e] = elements(l);
    return json(json::array_t(b, e)).dump();
  };
  std::vector<std::pair<std::pair<uint64_t, uint64_t>, const std::string*>> ranges;
  ranges.reserve(entries.size());
  for (size_t k = 0; k < order.size(); ++k) {
    if (k + 1 < order.size() && entries[order[k + 1]].name == entries[order[k]].name) continue;
    RawEntry& v = entries[order[k]];
    const std::string& name = v.name;
    if (name == "__metadata__") {
      if (!v.is_object) LOUPE_THROW(BadModel, path << ": __metadata__ is not an object");
      std::map<std::string, std::optional<std::string>> meta;  // name order; a repeated key: the last
      for (auto& [key, value] : v.metadata) meta[key] = std::move(value);
      for (const auto& [key, value] : meta) {
        if (!value) LOUPE_THROW(BadModel, path << ": __metadata__ entry '" << key << "' is not a string");
        metadata_[key] = *value;
      }
      continue;
    }
    const auto where = [&] { return path + ": tensor '" + name + "'"; };
    if (!v.is_object) LOUPE_THROW(BadModel, where() << ": entry is not an object");
    if (!v.dtype_is_string) LOUPE_THROW(BadModel, where() << ": missing dtype");
    if (!v.shape.is_array) LOUPE_THROW(BadModel, where() << ": missing shape");
    const auto [shape_begin, shape_end] = elements(v.shape);
    const auto [offsets_begin, offsets_end] = elements(v.offsets);
    if (!v.offsets.is_array || offsets_end - offsets_begin != 2)
      LOUPE_THROW(BadModel, where() << ": missing data_offsets [begin, end]");
    TensorInfo ti;
    ti.dtype = std::move(v.dtype);
    const size_t esize = dtype_size(ti.dtype);
    if (esize == 0)
      LOUPE_THROW(BadModel, where() << ": unknown dtype '" << ti.dtype
                                    << "' (known: F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL F8_E4M3 F8_E5M2 U16 U32 U64)");
    uint64_t numel = 1;
    bool overflow = false;
    ti.shape.reserve(static_cast<size_t>(shape_end - shape_begin));
    for (const json* it = shape_begin; it != shape_end; ++it) {
      const json& d = *it;
      if (!d.is_number_integer() || d.get<int64_t>() < 0)
        LOUPE_THROW(BadModel, where() << ": shape " << dump(v.shape) << " has a negative or non-integer size");
      const uint64_t dim = d.get<uint64_t>();
      if (dim != 0 && numel > UINT64_MAX / dim) overflow = true;
      numel *= dim;
      ti.shape.push_back(static_cast<int64_t>(dim));
    }
    if (overflow || numel > UINT64_MAX / esize || numel * esize > data_size)
      LOUPE_THROW(BadModel, where() << ": shape " << dump(v.shape) << " of " << ti.dtype
                                    << " needs more bytes than the file's data area (" << data_size << " bytes)");
    for (const json* o = offsets_begin; o != offsets_end; ++o)
      if (!o->is_number_integer() || o->get<int64_t>() < 0)
        LOUPE_THROW(BadModel, where() << ": data_offsets " << dump(v.offsets) << " are not non-negative integers");
    ti.begin = offsets_begin[0].get<uint64_t>();
    ti.end = offsets_begin[1].get<uint64_t>();
    if (ti.begin > ti.end)
      LOUPE_THROW(BadModel, where() << ": data_offsets begin " << ti.begin << " > end " << ti.end);
    if (ti.end > data_size)
      LOUPE_THROW(BadModel, where() << ": data_offsets [" << ti.begin << ", " << ti.end << "] run past the end of the data ("
                                    << data_size << " bytes): the file is truncated or corrupt");
    if (ti.end - ti.begin != numel * esize)
      LOUPE_THROW(BadModel, where() << ": byte size " << ti.end - ti.begin << " does not match dtype " << ti.dtype
                                    << " x shape " << shape_str(ti.shape) << " = " << numel * esize << " bytes");
    auto it = tensors_.emplace_hint(tensors_.end(), std::move(v.name), std::move(ti));
    ranges.push_back({{it->second.begin, it->second.end}, &it->first});
  }
  std::sort(ranges.begin(), ranges.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first < b.first : *a.second < *b.second;
  });
  for (size_t i = 1; i < ranges.size(); ++i) {
    const auto& a = ranges[i - 1];
    const auto& b = ranges[i];
    if (b.first.first < a.first.second && b.first.first != b.first.second && a.first.first != a.first.second)
      LOUPE_THROW(BadModel, path << ": tensors '" << *a.second << "' [" << a.first.first << ", " << a.first.second
                                 << "] and '" << *b.second << "' [" << b.first.first << ", " << b.first.second
                                 << "] overlap");
  }
}

SafetensorsFile::~SafetensorsFile() = default;

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  out.reserve(tensors_.size());
  for (const auto& kv : tensors_) out.push_back(kv.first);
  return out;
}

const TensorInfo& SafetensorsFile::info(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) LOUPE_THROW(NotFound, path_ << ": no tensor '" << name << "'");
  return it->second;
}

torch::Tensor SafetensorsFile::load(const std::string& name, torch::Device device,
                                    c10::optional<torch::ScalarType> dtype) const {
  const TensorInfo& ti = info(name);
  // float8 (no libtorch 1.13 type): the stored bytes when kUInt8 is asked for, decoded exactly
  // when a floating dtype is (io/float8.h).
  Float8 f8;
  const bool is_f8 = float8_kind(ti.dtype, &f8);
  if (is_f8 && !(dtype && (*dtype == torch::kUInt8 || c10::isFloatingType(*dtype))))
    LOUPE_THROW(Unsupported, path_ << ": tensor '" << name << "': dtype " << ti.dtype
                                   << " is valid safetensors but this model's loader does not decode float8 (only "
                                      "FLUX's does); hint: convert the checkpoint to F16/BF16/F32");
  const auto st = is_f8 ? torch::kUInt8 : to_torch_dtype(ti.dtype, path_ + ": tensor '" + name + "'");
  const auto* src = static_cast<const uint8_t*>(map_->addr) + data_offset_ + ti.begin;
  // Copy out of the mapping (handles any alignment); then convert and move.
  auto t = torch::empty(ti.shape, torch::TensorOptions().dtype(st));
  if (ti.end > ti.begin) {
    std::memcpy(t.data_ptr(), src, ti.end - ti.begin);
    // The copy is ours now: hand the file's pages back, so that loading a model never holds the
    // weights twice (mapped file + tensors; the page cache keeps them for a later load). The
    // mapping is read-only and private, so a page touched again is simply read again.
    static const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
    const uintptr_t a = reinterpret_cast<uintptr_t>(src), b = a + (ti.end - ti.begin);
    const uintptr_t first = (a + page - 1) & ~(page - 1), last = b & ~(page - 1);
    if (last > first) madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED);
  }
  const auto target = dtype.value_or(st);
  if (is_f8 && target != torch::kUInt8) return decode_float8(t.to(device), f8, target);
  if (target != st || device != t.device()) t = t.to(device, target);
  return t;
}

void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<torch::Tensor> data;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    auto c = t.detach().to(torch::kCPU).contiguous();
    const uint64_t nbytes = static_cast<uint64_t>(c.numel()) * c.element_size();
    header[name] = {{"dtype", from_torch_dtype(c.scalar_type())},
                    {"shape", c.sizes().vec()},
                    {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
    data.push_back(c);
  }
  std::string h = header.dump();
  while ((h.size() + 8) % 8 != 0) h.push_back(' ');  // align the data area to 8 bytes
  std::ofstream f(path, std::ios::binary);
  if (!f) LOUPE_THROW(NotFound, path << ": cannot write");
  uint64_t n = h.size();
  char len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  f.write(len, 8);
  f.write(h.data(), static_cast<std::streamsize>(h.size()));
  for (const auto& c : data)
    f.write(static_cast<const char*>(c.data_ptr()), static_cast<std::streamsize>(c.numel() * c.element_size()));
  if (!f) LOUPE_THROW(Internal, path << ": write failed");
}

}  // namespace loupe::io
