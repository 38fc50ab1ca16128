#include "io/torch_zip.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <variant>
#include <set>
#include <algorithm>

#include "core/error.h"
#include "io/zip.h"

namespace loupe::io {

namespace {

// ------------------------------------------------------------------ zip (io/zip.h; stored entries only)

using Mapped = MappedFile;

uint32_t u32(const uint8_t* p) { return p[0] | (p[1] << 8) | (p[2] << 16) | (uint32_t(p[3]) << 24); }
uint16_t u16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }

std::map<std::string, ZipEntry> read_zip_directory(const std::string& path, const Mapped& m) {
  auto entries = io::read_zip_directory(path, m.data, m.size);
  for (const auto& [name, e] : entries)
    if (e.method != 0 || e.compressed_size != e.size)
      LOUPE_THROW(Unsupported, path << ": zip entry '" << name << "' is compressed; torch.save writes stored entries");
  return entries;
}

// ------------------------------------------------------------------ pickle values

struct Value;
using VP = std::shared_ptr<Value>;
struct Global {
  std::string module, name;
};
struct Storage {
  torch::ScalarType dtype;
  std::string key;
};
struct Mark {};
struct Value {
  std::variant<std::monostate, int64_t, double, bool, std::string, std::vector<VP>, std::vector<std::pair<VP, VP>>,
               torch::Tensor, Global, Storage, Mark>
      v;
  bool is_tuple = false;
};

VP make(decltype(Value::v) v) {
  auto p = std::make_shared<Value>();
  p->v = std::move(v);
  return p;
}

torch::ScalarType storage_dtype(const std::string& name, const std::string& path) {
  static const std::map<std::string, torch::ScalarType> kinds = {
      {"FloatStorage", torch::kFloat32}, {"DoubleStorage", torch::kFloat64}, {"HalfStorage", torch::kFloat16},
      {"BFloat16Storage", torch::kBFloat16}, {"LongStorage", torch::kInt64}, {"IntStorage", torch::kInt32},
      {"ShortStorage", torch::kInt16}, {"CharStorage", torch::kInt8}, {"ByteStorage", torch::kUInt8},
      {"BoolStorage", torch::kBool}};
  auto it = kinds.find(name);
  if (it == kinds.end()) LOUPE_THROW(Unsupported, path << ": storage type torch." << name << " is not supported");
  return it->second;
}

class Unpickler {
 public:
  Unpickler(const std::string& path, const Mapped& m, const std::map<std::string, ZipEntry>& zip, std::string prefix)
      : path_(path), m_(m), zip_(zip), prefix_(std::move(prefix)) {}

  VP run(const uint8_t* p, size_t n) {
    p_ = p;
    end_ = p + n;
    while (true) {
      const uint8_t op = byte();
      switch (op) {
        case 0x80: byte(); break;                       // PROTO
        case 0x95: take(8); break;                      // FRAME
        case '.': return pop();                         // STOP
        case '}': push(make(std::vector<std::pair<VP, VP>>{})); break;
        case ']': push(make(std::vector<VP>{})); break;
        case ')': push(tuple({})); break;
        case '(': push(make(Mark{})); break;
        case 'N': push(make(std::monostate{})); break;
        case 0x88: push(make(true)); break;
        case 0x89: push(make(false)); break;
        case 'K': push(make(int64_t(byte()))); break;
        case 'M': { const uint8_t* b = take(2); push(make(int64_t(u16(b)))); break; }
        case 'J': { const uint8_t* b = take(4); push(make(int64_t(int32_t(u32(b))))); break; }
        case 0x8a: {                                    // LONG1
          const size_t len = byte();
          const uint8_t* b = take(len);
          int64_t v = 0;
          for (size_t i = 0; i < len && i < 8; ++i) v |= int64_t(b[i]) << (8 * i);
          if (len > 0 && len < 8 && (b[len - 1] & 0x80)) v -= int64_t(1) << (8 * len);
          push(make(v));
          break;
        }
        case 'G': {                                     // BINFLOAT (big-endian double)
          const uint8_t* b = take(8);
          uint64_t bits = 0;
          for (int i = 0; i < 8; ++i) bits = (bits << 8) | b[i];
          double d;
          std::memcpy(&d, &bits, 8);
          push(make(d));
          break;
        }
        case 'X': { const uint8_t* b = take(4); push(make(str(u32(b)))); break; }
        case 0x8c: push(make(str(byte()))); break;      // SHORT_BINUNICODE
        case 'T': { const uint8_t* b = take(4); push(make(str(u32(b)))); break; }
        case 'U': push(make(str(byte()))); break;
        case 'B': { const uint8_t* b = take(4); push(make(str(u32(b)))); break; }
        case 'C': push(make(str(byte()))); break;
        case 'q': memo(byte()); break;                  // BINPUT
        case 'r': { const uint8_t* b = take(4); memo(u32(b)); break; }
        case 0x94: memo(memo_.size()); break;           // MEMOIZE
        case 'h': push(get(byte())); break;             // BINGET
        case 'j': { const uint8_t* b = take(4); push(get(u32(b))); break; }
        case 'c': {                                     // GLOBAL "module\nname\n"
          const std::string mod = line(), name = line();
          push(global(mod, name));
          break;
        }
        case 0x93: {                                    // STACK_GLOBAL
          VP name = pop(), mod = pop();
          push(global(as_str(mod), as_str(name)));
          break;
        }
        case 't': push(tuple(pop_mark())); break;
        case 0x85: { VP a = pop(); push(tuple({a})); break; }
        case 0x86: { VP b = pop(), a = pop(); push(tuple({a, b})); break; }
        case 0x87: { VP c = pop(), b = pop(), a = pop(); push(tuple({a, b, c})); break; }
        case 'a': { VP v = pop(); list(top()).push_back(v); break; }
        case 'e': { auto items = pop_mark(); auto& l = list(top()); l.insert(l.end(), items.begin(), items.end()); break; }
        case 's': { VP v = pop(), k = pop(); dict(top()).push_back({k, v}); break; }
        case 'u': {
          auto items = pop_mark();
          if (items.size() % 2) bad("odd SETITEMS");
          auto& d = dict(top());
          for (size_t i = 0; i < items.size(); i += 2) d.push_back({items[i], items[i + 1]});
          break;
        }
        case 'Q': {                                     // BINPERSID: ('storage', type, key, location, numel)
          VP pid = pop();
          auto& t = list_or_tuple(pid);
          if (t.size() < 3 || as_str(t[0]) != "storage") bad("unknown persistent id");
          const auto* g = std::get_if<Global>(&t[1]->v);
          if (!g) bad("storage type is not a global");
          push(make(Storage{storage_dtype(g->name, path_), as_str(t[2])}));
          break;
        }
        case 'R': {                                     // REDUCE
          VP args = pop(), fn = pop();
          push(reduce(fn, args));
          break;
        }
        case 0x81: {                                    // NEWOBJ (cls, args): only OrderedDict
          VP args = pop(), cls = pop();
          push(reduce(cls, args));
          break;
        }
        case 'b': pop(); break;                         // BUILD: state of an OrderedDict (_metadata): ignored
        default: bad("unsupported pickle opcode 0x" + hex(op));
      }
    }
  }

 private:
  [[noreturn]] void bad(const std::string& why) const { LOUPE_THROW(BadModel, path_ << ": data.pkl: " << why); }
  static std::string hex(uint8_t v) {
    const char* d = "0123456789abcdef";
    return std::string{d[v >> 4], d[v & 15]};
  }
  uint8_t byte() { return *take(1); }
  const uint8_t* take(size_t n) {
    if (static_cast<size_t>(end_ - p_) < n) bad("truncated");
    const uint8_t* r = p_;
    p_ += n;
    return r;
  }
  std::string str(size_t n) { return std::string(reinterpret_cast<const char*>(take(n)), n); }
  std::string line() {
    std::string s;
    for (uint8_t c = byte(); c != '\n'; c = byte()) s.push_back(static_cast<char>(c));
    return s;
  }
  void push(VP v) { stack_.push_back(std::move(v)); }
  VP pop() {
    if (stack_.empty()) bad("stack underflow");
    VP v = stack_.back();
    stack_.pop_back();
    return v;
  }
  VP& top() {
    if (stack_.empty()) bad("stack underflow");
    return stack_.back();
  }
  std::vector<VP> pop_mark() {
    std::vector<VP> items;
    while (true) {
      VP v = pop();
      if (std::holds_alternative<Mark>(v->v)) break;
      items.push_back(v);
    }
    std::reverse(items.begin(), items.end());
    return items;
  }
  void memo(size_t i) {
    if (i > memo_.size() + 1024) bad("memo index " + std::to_string(i) + " out of order");
    if (memo_.size() <= i) memo_.resize(i + 1);
    memo_[i] = top();
  }
  VP get(size_t i) {
    if (i >= memo_.size() || !memo_[i]) bad("memo index out of range");
    return memo_[i];
  }
  VP tuple(std::vector<VP> items) {
    VP v = make(std::move(items));
    v->is_tuple = true;
    return v;
  }
  std::vector<VP>& list(VP& v) {
    auto* l = std::get_if<std::vector<VP>>(&v->v);
    if (!l) bad("APPEND to a non-list");
    return *l;
  }
  std::vector<VP>& list_or_tuple(VP& v) { return list(v); }
  std::vector<std::pair<VP, VP>>& dict(VP& v) {
    auto* d = std::get_if<std::vector<std::pair<VP, VP>>>(&v->v);
    if (!d) bad("SETITEM on a non-dict");
    return *d;
  }
  std::string as_str(const VP& v) const {
    if (auto* s = std::get_if<std::string>(&v->v)) return *s;
    bad("expected a string");
  }
  int64_t as_int(const VP& v) const {
    if (auto* i = std::get_if<int64_t>(&v->v)) return *i;
    bad("expected an integer");
  }
  VP global(const std::string& mod, const std::string& name) {
    static const std::set<std::string> allowed = {
        "collections.OrderedDict", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_parameter",
        "torch.FloatStorage", "torch.DoubleStorage", "torch.HalfStorage", "torch.BFloat16Storage",
        "torch.LongStorage", "torch.IntStorage", "torch.ShortStorage", "torch.CharStorage", "torch.ByteStorage",
        "torch.BoolStorage"};
    if (!allowed.count(mod + "." + name))
      bad("refusing to load '" + mod + "." + name + "' (only plain state dicts are read; hint: convert to safetensors)");
    return make(Global{mod, name});
  }
  VP reduce(const VP& fn, const VP& args) {
    const auto* g = std::get_if<Global>(&fn->v);
    if (!g) bad("REDUCE of a non-global");
    auto& a = list(const_cast<VP&>(args));
    const std::string f = g->module + "." + g->name;
    if (f == "collections.OrderedDict") return make(std::vector<std::pair<VP, VP>>{});
    if (f == "torch._utils._rebuild_parameter") {
      if (a.empty()) bad("_rebuild_parameter without data");
      return a[0];
    }
    if (f == "torch._utils._rebuild_tensor_v2") {
      if (a.size() < 4) bad("_rebuild_tensor_v2 with too few arguments");
      const auto* st = std::get_if<Storage>(&a[0]->v);
      if (!st) bad("_rebuild_tensor_v2 without a storage");
      const int64_t offset = as_int(a[1]);
      std::vector<int64_t> size, stride;
      for (const auto& x : list(a[2])) size.push_back(as_int(x));
      for (const auto& x : list(a[3])) stride.push_back(as_int(x));
      return make(tensor(*st, offset, size, stride));
    }
    bad("cannot call " + f);
  }
  torch::Tensor tensor(const Storage& st, int64_t offset, const std::vector<int64_t>& size,
                       const std::vector<int64_t>& stride) {
    auto it = zip_.find(prefix_ + "data/" + st.key);
    if (it == zip_.end()) bad("storage '" + st.key + "' is missing from the archive");
    const size_t esize = c10::elementSize(st.dtype);
    const int64_t numel = static_cast<int64_t>(it->second.size / esize);
    int64_t extent = 1;  // highest element index touched + 1
    for (size_t i = 0; i < size.size(); ++i) {
      if (size[i] < 0 || (i < stride.size() && stride[i] < 0)) bad("negative size or stride");
      if (size[i] == 0) extent = 0;
    }
    if (size.size() != stride.size() || offset < 0 || offset > numel) bad("tensor size, stride and offset do not agree");
    if (extent) {
      // highest index = offset + sum (size-1)*stride, computed without overflow
      long double hi = static_cast<long double>(offset);
      for (size_t i = 0; i < size.size(); ++i) hi += static_cast<long double>(size[i] - 1) * stride[i];
      extent = hi + 1 > static_cast<long double>(numel) ? numel + 1 : static_cast<int64_t>(hi) + 1;
    }
    if (extent > numel)
      bad("tensor view (offset " + std::to_string(offset) + ") runs past its storage '" + st.key + "'");
    auto storage = torch::empty({numel}, torch::TensorOptions().dtype(st.dtype));
    std::memcpy(storage.data_ptr(), m_.data + it->second.offset, numel * esize);
    return storage.as_strided(size, stride, offset).clone();
  }

  const std::string& path_;
  const Mapped& m_;
  const std::map<std::string, ZipEntry>& zip_;
  std::string prefix_;
  const uint8_t* p_ = nullptr;
  const uint8_t* end_ = nullptr;
  std::vector<VP> stack_;
  std::vector<VP> memo_;
};

void flatten(const VP& v, const std::string& prefix, std::map<std::string, torch::Tensor>& out) {
  if (auto* t = std::get_if<torch::Tensor>(&v->v)) {
    out[prefix] = *t;
  } else if (auto* d = std::get_if<std::vector<std::pair<VP, VP>>>(&v->v)) {
    for (const auto& [k, val] : *d)
      if (auto* ks = std::get_if<std::string>(&k->v)) flatten(val, prefix.empty() ? *ks : prefix + "." + *ks, out);
  }
}

}  // namespace

std::map<std::string, torch::Tensor> read_torch_zip(const std::string& path) {
  const auto mapped = MappedFile::open(path);
  const Mapped& m = *mapped;
  const auto zip = read_zip_directory(path, m);
  std::string pkl;
  for (const auto& kv : zip)
    if (kv.first.size() >= 8 && kv.first.compare(kv.first.size() - 8, 8, "data.pkl") == 0) pkl = kv.first;
  if (pkl.empty()) LOUPE_THROW(BadModel, path << ": no data.pkl in the archive: not a torch.save file");
  Unpickler u(path, m, zip, pkl.substr(0, pkl.size() - 8));
  const auto& e = zip.at(pkl);
  VP root;
  try {
    root = u.run(m.data + e.offset, e.size);
  } catch (const Error&) {
    throw;
  } catch (const std::exception& ex) {  // e.g. a corrupt size that no allocation can satisfy
    LOUPE_THROW(BadModel, path << ": data.pkl is corrupt (" << std::string(ex.what()).substr(0, 200) << ")");
  }
  std::map<std::string, torch::Tensor> out;
  flatten(root, "", out);
  return out;
}

}  // namespace loupe::io
