// safetensors files: memory-mapped, header validated before any tensor is touched.
// Format: 8-byte little-endian header length N, N bytes of JSON {name: {dtype, shape,
// data_offsets: [begin, end]}, "__metadata__": {str: str}}, then the data area.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

namespace loupe::io {

struct TensorInfo {
  std::string dtype;           // as in the file: "F32", "BF16", ...
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0; // byte range inside the data area
};

class SafetensorsFile {
 public:
  // Opens and validates; throws loupe::Error (NotFound, BadModel) naming the file and the reason.
  explicit SafetensorsFile(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  std::vector<std::string> names() const;  // in file order of the header (sorted by name)
  bool has(const std::string& name) const { return tensors_.count(name) != 0; }
  const TensorInfo& info(const std::string& name) const;
  const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }  // by name
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // A tensor converted to `dtype` on `device`. The result owns its memory (never a view of the
  // mapping), so the file may be closed afterwards.
  torch::Tensor load(const std::string& name, torch::Device device = torch::kCPU,
                     c10::optional<torch::ScalarType> dtype = c10::nullopt) const;

 private:
  struct Mapping;
  std::string path_;
  std::shared_ptr<Mapping> map_;
  uint64_t data_offset_ = 0;
  std::map<std::string, TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

// Bytes per element of a safetensors dtype string, 0 if unknown.
size_t dtype_size(const std::string& dtype);
// The torch dtype for a safetensors dtype string; throws Unsupported for those libtorch lacks.
torch::ScalarType to_torch_dtype(const std::string& dtype, const std::string& context);
std::string from_torch_dtype(torch::ScalarType t);

// Writes tensors (contiguous CPU copies are made) and metadata. Throws on I/O errors.
void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

std::string shape_str(const std::vector<int64_t>& shape);

}  // namespace loupe::io
