// big_vision's PaliGemma mask decoder: the VQ-VAE decoder (architecture of Ning et al. 2023,
// arXiv 2301.02229) that turns the 16 <segNNN> codes of an object into a 64x64 mask. Defined in
// big_vision/evaluators/proj/paligemma/transfers/segmentation.py (flax: Decoder, ResBlock,
// _get_params, _quantized_values_from_codebook_indices); weights from vae-oid.npz under their
// PyTorch names. Flax's ConvTranspose(4x4, stride 2, padding 2, transpose_kernel=True) on the
// PyTorch weight is torch's conv_transpose2d(stride 2, padding 1) on the same weight.
#pragma once
#include <map>
#include <string>

#include <torch/torch.h>

namespace loupe::paligemma {

// Where big_vision publishes the weights (its _KNOWN_MODELS['oi']).
inline constexpr const char* kVaeOidFile = "vae-oid.npz";
inline constexpr const char* kVaeOidUrl = "gs://big_vision/paligemma/vae-oid.npz";
inline constexpr const char* kVaeOidHttpsUrl = "https://storage.googleapis.com/big_vision/paligemma/vae-oid.npz";

class MaskDecoder {
 public:
  // Reads vae-oid.npz (encoder.* entries are ignored). Throws NotFound / BadModel naming the file and
  // the missing key, or the key with expected and found shapes.
  static MaskDecoder load(const std::string& npz_path, torch::Device device = torch::kCPU);
  // The same from tensors already read (`source` names them in errors).
  static MaskDecoder from_tensors(const std::map<std::string, torch::Tensor>& tensors, const std::string& source,
                                  torch::Device device = torch::kCPU);

  // codes [B, 16] (any integer dtype), each in 0..num_codes()-1 -> [B, 64, 64] float32: the decoder's
  // raw output (about -1..1; > 0 is inside), as big_vision's reconstruct_masks(...)[..., 0].
  // Throws InvalidArgument for a wrong shape or a code out of range.
  torch::Tensor decode(const torch::Tensor& codes) const;

  int64_t num_codes() const { return embedding_.size(0); }
  int64_t code_dim() const { return embedding_.size(1); }

 private:
  torch::Tensor embedding_;                       // [K, D] (_vq_vae._embedding)
  std::map<std::string, torch::Tensor> w_, b_;    // decoder.N[.net.M] -> weight / bias (float32)
};

// Finds vae-oid.npz: <model_dir>/vae-oid.npz, then <models_dir>/vae-oid.npz (skipped when empty), then
// the folder holding model_dir. Throws NotFound naming the file, where it is published and where it
// looked.
std::string find_vae_oid(const std::string& model_dir, const std::string& models_dir);

}  // namespace loupe::paligemma
