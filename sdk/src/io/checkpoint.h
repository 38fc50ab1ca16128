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
  // pytorch_model.bin (first found), or a variant of them (weights_file). NotFound / BadModel
  // errors name the path.
  static Checkpoint open(const std::string& path, const std::string& prefer_variant = "");
  // The weights file of a folder, "" when it has none: the variant `prefer_variant` ("fp16", "bf16")
  // when the folder has it; else the plain names (model.safetensors, model.safetensors.index.json,
  // diffusion_pytorch_model.safetensors, its index, pytorch_model.bin, diffusion_pytorch_model.bin);
  // else a variant as diffusers and transformers save them with save_pretrained(variant=V) and as
  // a download with variant="fp16" holds them (model.V.safetensors, diffusion_pytorch_model.V.safetensors,
  // their indexes *.safetensors.index.V.json naming shards *.V-0000N-of-0000M.safetensors, or
  // pytorch_model.V.bin): fp16 first, then bf16, then any other in name order.
  static std::string weights_file(const std::string& dir, const std::string& prefer_variant = "");
  // The variant a session in `dtype` would rather read ("fp16" for Half, "bf16" for BFloat16, else "").
  static std::string variant_for(torch::ScalarType dtype);

  std::vector<std::string> names() const;
  bool has(const std::string& name) const;
  std::vector<int64_t> shape(const std::string& name) const;
  // The stored dtype as safetensors writes it ("F32", "BF16", "F8_E4M3", ...; .bin tensors: their
  // torch dtype's safetensors name).
  std::string dtype(const std::string& name) const;
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
