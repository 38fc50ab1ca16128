#include "io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"

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

  nlohmann::json header;
  try {
    header = nlohmann::json::parse(reinterpret_cast<const char*>(bytes + 8), reinterpret_cast<const char*>(bytes + 8 + n));
  } catch (const nlohmann::json::parse_error& e) {
    LOUPE_THROW(BadModel, path << ": header is not valid JSON (byte " << e.byte << "): " << e.what());
  }
  if (!header.is_object()) LOUPE_THROW(BadModel, path << ": header JSON is not an object");

  std::vector<std::pair<std::pair<uint64_t, uint64_t>, std::string>> ranges;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const auto& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) LOUPE_THROW(BadModel, path << ": __metadata__ is not an object");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string())
          LOUPE_THROW(BadModel, path << ": __metadata__ entry '" << m.key() << "' is not a string");
        metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string where = path + ": tensor '" + name + "'";
    if (!v.is_object()) LOUPE_THROW(BadModel, where << ": entry is not an object");
    if (!v.contains("dtype") || !v["dtype"].is_string()) LOUPE_THROW(BadModel, where << ": missing dtype");
    if (!v.contains("shape") || !v["shape"].is_array()) LOUPE_THROW(BadModel, where << ": missing shape");
    if (!v.contains("data_offsets") || !v["data_offsets"].is_array() || v["data_offsets"].size() != 2)
      LOUPE_THROW(BadModel, where << ": missing data_offsets [begin, end]");
    TensorInfo ti;
    ti.dtype = v["dtype"].get<std::string>();
    const size_t esize = dtype_size(ti.dtype);
    if (esize == 0)
      LOUPE_THROW(BadModel, where << ": unknown dtype '" << ti.dtype
                                  << "' (known: F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL F8_E4M3 F8_E5M2 U16 U32 U64)");
    uint64_t numel = 1;
    bool overflow = false;
    for (const auto& d : v["shape"]) {
      if (!d.is_number_integer() || d.get<int64_t>() < 0)
        LOUPE_THROW(BadModel, where << ": shape " << v["shape"].dump() << " has a negative or non-integer size");
      const uint64_t dim = d.get<uint64_t>();
      if (dim != 0 && numel > UINT64_MAX / dim) overflow = true;
      numel *= dim;
      ti.shape.push_back(static_cast<int64_t>(dim));
    }
    if (overflow || numel > UINT64_MAX / esize || numel * esize > data_size)
      LOUPE_THROW(BadModel, where << ": shape " << v["shape"].dump() << " of " << ti.dtype
                                  << " needs more bytes than the file's data area (" << data_size << " bytes)");
    for (const auto& o : v["data_offsets"])
      if (!o.is_number_integer() || o.get<int64_t>() < 0)
        LOUPE_THROW(BadModel, where << ": data_offsets " << v["data_offsets"].dump() << " are not non-negative integers");
    ti.begin = v["data_offsets"][0].get<uint64_t>();
    ti.end = v["data_offsets"][1].get<uint64_t>();
    if (ti.begin > ti.end)
      LOUPE_THROW(BadModel, where << ": data_offsets begin " << ti.begin << " > end " << ti.end);
    if (ti.end > data_size)
      LOUPE_THROW(BadModel, where << ": data_offsets [" << ti.begin << ", " << ti.end << "] run past the end of the data ("
                                  << data_size << " bytes): the file is truncated or corrupt");
    if (ti.end - ti.begin != numel * esize)
      LOUPE_THROW(BadModel, where << ": byte size " << ti.end - ti.begin << " does not match dtype " << ti.dtype
                                  << " x shape " << shape_str(ti.shape) << " = " << numel * esize << " bytes");
    ranges.push_back({{ti.begin, ti.end}, name});
    tensors_.emplace(name, std::move(ti));
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i) {
    const auto& a = ranges[i - 1];
    const auto& b = ranges[i];
    if (b.first.first < a.first.second && b.first.first != b.first.second && a.first.first != a.first.second)
      LOUPE_THROW(BadModel, path << ": tensors '" << a.second << "' [" << a.first.first << ", " << a.first.second
                                 << "] and '" << b.second << "' [" << b.first.first << ", " << b.first.second
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
  const auto st = to_torch_dtype(ti.dtype, path_ + ": tensor '" + name + "'");
  const auto* src = static_cast<const uint8_t*>(map_->addr) + data_offset_ + ti.begin;
  // Copy out of the mapping (handles any alignment); then convert and move.
  auto t = torch::empty(ti.shape, torch::TensorOptions().dtype(st));
  if (ti.end > ti.begin) std::memcpy(t.data_ptr(), src, ti.end - ti.begin);
  const auto target = dtype.value_or(st);
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
