#include "io/npz.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <sstream>
#include <vector>

#include "core/error.h"
#include "io/zip.h"

namespace loupe::io {

namespace {

struct NpyHeader {
  std::string descr;
  bool fortran = false;
  std::vector<int64_t> shape;
};

// The header is a Python dict literal written by numpy's write_array_header:
//   {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }
class HeaderParser {
 public:
  HeaderParser(const std::string& s, const std::string& where) : s_(s), where_(where) {}

  NpyHeader parse() {
    NpyHeader h;
    bool have_descr = false, have_fortran = false, have_shape = false;
    expect('{');
    while (true) {
      skip_ws();
      if (peek() == '}') break;
      const std::string key = quoted();
      expect(':');
      skip_ws();
      if (key == "descr") {
        if (peek() != '\'' && peek() != '"')
          LOUPE_THROW(Unsupported, where_ << ": structured dtype (descr " << s_.substr(pos_, 40)
                                          << "...) is not supported; only plain numeric arrays");
        h.descr = quoted();
        have_descr = true;
      } else if (key == "fortran_order") {
        if (s_.compare(pos_, 4, "True") == 0) {
          h.fortran = true;
          pos_ += 4;
        } else if (s_.compare(pos_, 5, "False") == 0) {
          pos_ += 5;
        } else {
          bad("fortran_order is neither True nor False");
        }
        have_fortran = true;
      } else if (key == "shape") {
        expect('(');
        while (true) {
          skip_ws();
          if (peek() == ')') {
            ++pos_;
            break;
          }
          if (!std::isdigit(static_cast<unsigned char>(peek()))) bad("shape is not a tuple of non-negative integers");
          int64_t v = 0;
          while (std::isdigit(static_cast<unsigned char>(peek()))) {
            if (v > (int64_t(1) << 50)) bad("shape dimension too large");
            v = v * 10 + (s_[pos_++] - '0');
          }
          h.shape.push_back(v);
          skip_ws();
          if (peek() == ',') ++pos_;
          else if (peek() != ')') bad("shape is not a tuple of non-negative integers");
        }
        have_shape = true;
      } else {
        bad("unexpected key '" + key + "'");
      }
      skip_ws();
      if (peek() == ',') ++pos_;
      else if (peek() != '}') bad("expected ',' or '}'");
    }
    if (!have_descr || !have_fortran || !have_shape) bad("missing 'descr', 'fortran_order' or 'shape'");
    return h;
  }

 private:
  [[noreturn]] void bad(const std::string& why) {
    std::string h = s_.substr(0, 120);
    while (!h.empty() && std::isspace(static_cast<unsigned char>(h.back()))) h.pop_back();
    LOUPE_THROW(BadModel, where_ << ": bad .npy header (" << why << "): " << h);
  }
  char peek() const { return pos_ < s_.size() ? s_[pos_] : '\0'; }
  void skip_ws() {
    while (pos_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[pos_]))) ++pos_;
  }
  void expect(char c) {
    skip_ws();
    if (peek() != c) bad(std::string("expected '") + c + "'");
    ++pos_;
  }
  std::string quoted() {
    skip_ws();
    const char q = peek();
    if (q != '\'' && q != '"') bad("expected a quoted string");
    const size_t end = s_.find(q, pos_ + 1);
    if (end == std::string::npos) bad("unterminated string");
    std::string v = s_.substr(pos_ + 1, end - pos_ - 1);
    pos_ = end + 1;
    return v;
  }
  const std::string& s_;
  const std::string& where_;
  size_t pos_ = 0;
};

torch::ScalarType dtype_of(const std::string& descr, const std::string& where, size_t* itemsize) {
  if (descr.size() < 2) LOUPE_THROW(Unsupported, where << ": dtype '" << descr << "' is not supported");
  const char order = descr[0];
  const std::string kind = descr.substr(1);
  static const std::map<std::string, std::pair<torch::ScalarType, size_t>> kinds = {
      {"f2", {torch::kFloat16, 2}}, {"f4", {torch::kFloat32, 4}}, {"f8", {torch::kFloat64, 8}},
      {"i1", {torch::kInt8, 1}},    {"i2", {torch::kInt16, 2}},   {"i4", {torch::kInt32, 4}},
      {"i8", {torch::kInt64, 8}},   {"u1", {torch::kUInt8, 1}},   {"b1", {torch::kBool, 1}}};
  auto it = kinds.find(kind);
  if (it == kinds.end() || (order != '<' && order != '|' && order != '=' && order != '>'))
    LOUPE_THROW(Unsupported, where << ": dtype '" << descr
                                   << "' is not supported (read: float16/32/64, int8/16/32/64, uint8, bool)");
  if (order == '>' && it->second.second > 1)
    LOUPE_THROW(Unsupported, where << ": big-endian dtype '" << descr << "' is not supported; save it little-endian");
  *itemsize = it->second.second;
  return it->second.first;
}

}  // namespace

torch::Tensor parse_npy(const uint8_t* data, size_t size, const std::string& where) {
  static const uint8_t magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
  if (size < 10 || std::memcmp(data, magic, 6) != 0)
    LOUPE_THROW(BadModel, where << ": not a .npy array (bad magic; expected \\x93NUMPY)");
  const int major = data[6];
  size_t header_len = 0, header_start = 0;
  if (major == 1) {
    header_len = data[8] | (size_t(data[9]) << 8);
    header_start = 10;
  } else if (major == 2 || major == 3) {
    if (size < 12) LOUPE_THROW(BadModel, where << ": truncated .npy header");
    header_len = data[8] | (size_t(data[9]) << 8) | (size_t(data[10]) << 16) | (size_t(data[11]) << 24);
    header_start = 12;
  } else {
    LOUPE_THROW(Unsupported, where << ": .npy format version " << major << "." << int(data[7]) << " is not supported");
  }
  if (size - header_start < header_len)
    LOUPE_THROW(BadModel, where << ": truncated .npy header (" << header_len << " bytes announced, "
                                << size - header_start << " present)");
  const std::string header(reinterpret_cast<const char*>(data + header_start), header_len);
  const NpyHeader h = HeaderParser(header, where).parse();
  size_t itemsize = 0;
  const auto dtype = dtype_of(h.descr, where, &itemsize);
  long double numel_ld = 1;
  int64_t numel = 1;
  for (auto d : h.shape) {
    numel_ld *= d;
    numel *= d;
  }
  const size_t avail = size - header_start - header_len;
  std::ostringstream shape_s;
  shape_s << "(";
  for (size_t i = 0; i < h.shape.size(); ++i) shape_s << (i ? ", " : "") << h.shape[i];
  shape_s << (h.shape.size() == 1 ? ",)" : ")");
  if (numel_ld * itemsize > static_cast<long double>(avail))
    LOUPE_THROW(BadModel, where << ": data truncated: shape " << shape_s.str() << " of " << h.descr << " needs "
                                << static_cast<unsigned long long>(numel_ld * itemsize) << " bytes, " << avail
                                << " present");
  if (static_cast<size_t>(numel) * itemsize != avail)
    LOUPE_THROW(BadModel, where << ": data size mismatch: shape " << shape_s.str() << " of " << h.descr << " needs "
                                << numel * itemsize << " bytes, " << avail << " present");
  std::vector<int64_t> shape = h.shape;
  if (h.fortran) std::reverse(shape.begin(), shape.end());
  auto t = torch::empty(shape, torch::TensorOptions().dtype(dtype));
  if (numel) std::memcpy(t.data_ptr(), data + header_start + header_len, numel * itemsize);
  if (dtype == torch::kBool) {
    // numpy's bool is one byte 0/1; anything else is not a bool array
    auto bytes = t.view(torch::kUInt8);
    if (numel && bytes.gt(1).any().item<bool>()) LOUPE_THROW(BadModel, where << ": bool array holds values other than 0 and 1");
  }
  if (h.fortran && shape.size() > 1) {
    std::vector<int64_t> perm(shape.size());
    for (size_t i = 0; i < perm.size(); ++i) perm[i] = static_cast<int64_t>(perm.size() - 1 - i);
    t = t.permute(perm).contiguous();
  }
  return t;
}

std::map<std::string, torch::Tensor> read_npz(const std::string& path) {
  const auto m = MappedFile::open(path);
  const auto entries = read_zip_directory(path, m->data, m->size);
  std::map<std::string, torch::Tensor> out;
  for (const auto& [name, e] : entries) {
    if (name.size() < 4 || name.compare(name.size() - 4, 4, ".npy") != 0) continue;
    const std::string where = path + ": entry '" + name + "'";
    const auto bytes = read_zip_entry(path, m->data, name, e);  // inflated if deflated, CRC checked
    out[name.substr(0, name.size() - 4)] = parse_npy(bytes.data(), bytes.size(), where);
  }
  return out;
}

torch::Tensor read_npy(const std::string& path) {
  const auto m = MappedFile::open(path);
  return parse_npy(m->data, m->size, path);
}

}  // namespace loupe::io
