// A checkpoint: one name -> tensor source over a single .safetensors file, a sharded set
// (*.safetensors.index.json) or a torch.save archive (pytorch_model.bin, read with libtorch's own
// unpickler, which runs no code).
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "io/safetensors.h"

namespace loupe::io {

class Checkpoint {
 public:
  // A file (.safetensors, .safetensors.index.json, .bin/.pt/.ckpt) or a folder holding
  // model.safetensors, model.safetensors.index.json, diffusion_pytorch_model.safetensors or
  // pytorch_model.bin (first found). NotFound / BadModel errors name the path.
  static Checkpoint open(const std::string& path);

  std::vector<std::string> names() const;
  bool has(const std::string& name) const;
  std::vector<int64_t> shape(const std::string& name) const;
  torch::Tensor load(const std::string& name, torch::Device device = torch::kCPU,
                     c10::optional<torch::ScalarType> dtype = c10::nullopt) const;
  // The file that holds a tensor (for messages); the checkpoint's path when unknown.
  std::string path_of(const std::string& name) const;
  const std::string& path() const { return path_; }
  // Adds (or overrides) a tensor, e.g. a tied weight stored once.
  void alias(const std::string& name, const std::string& existing);

 private:
  std::string path_;
  std::vector<std::shared_ptr<SafetensorsFile>> files_;
  std::map<std::string, std::shared_ptr<SafetensorsFile>> where_;     // safetensors names
  std::map<std::string, torch::Tensor> eager_;                        // .bin tensors (CPU)
  std::map<std::string, std::string> aliases_;
};

}  // namespace loupe::io
