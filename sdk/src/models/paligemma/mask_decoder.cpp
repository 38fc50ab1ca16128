#include "models/paligemma/mask_decoder.h"

#include <filesystem>
#include <sstream>
#include <vector>

#include "core/error.h"
#include "io/npz.h"

namespace fs = std::filesystem;

namespace loupe::paligemma {

namespace {

std::string shape_str(at::IntArrayRef s) {
  std::ostringstream o;
  o << "[";
  for (size_t i = 0; i < s.size(); ++i) o << (i ? ", " : "") << s[i];
  o << "]";
  return o.str();
}

// The layers of big_vision's Decoder in order, with the PyTorch names _get_params reads, and the
// weight shape each must have (PyTorch layout: conv [out, in, kh, kw], conv-transpose [in, out, kh, kw]).
struct LayerSpec {
  std::string name;
  std::vector<int64_t> shape;  // -1: the codebook dimension D
};

std::vector<LayerSpec> layer_specs() {
  std::vector<LayerSpec> s;
  s.push_back({"decoder.0", {128, -1, 1, 1}});                 // Conv_0, 1x1, D -> 128
  for (const char* rb : {"decoder.2.net", "decoder.3.net"}) {  // ResBlock_0, ResBlock_1
    s.push_back({std::string(rb) + ".0", {128, 128, 3, 3}});
    s.push_back({std::string(rb) + ".2", {128, 128, 3, 3}});
    s.push_back({std::string(rb) + ".4", {128, 128, 1, 1}});
  }
  int64_t in = 128, dim = 128;  // features 128, 64, 32, 16
  for (const char* ct : {"decoder.4", "decoder.6", "decoder.8", "decoder.10"}) {  // ConvTranspose_0..3
    s.push_back({ct, {in, dim, 4, 4}});
    in = dim;
    dim /= 2;
  }
  s.push_back({"decoder.12", {1, 16, 1, 1}});  // Conv_1, 1x1, 16 -> 1
  return s;
}

}  // namespace

MaskDecoder MaskDecoder::from_tensors(const std::map<std::string, torch::Tensor>& t, const std::string& source,
                                      torch::Device device) {
  auto get = [&](const std::string& key) -> torch::Tensor {
    auto it = t.find(key);
    if (it == t.end())
      LOUPE_THROW(BadModel, source << ": no '" << key << "' in the mask decoder weights (is this big_vision's vae-oid.npz? "
                                   << "it is published at " << kVaeOidUrl << ")");
    if (!it->second.is_floating_point())
      LOUPE_THROW(BadModel, source << ": '" << key << "' is " << it->second.scalar_type() << ", expected a float array");
    return it->second.to(device, torch::kFloat32).contiguous();
  };
  MaskDecoder d;
  d.embedding_ = get("_vq_vae._embedding");
  if (d.embedding_.dim() != 2 || d.embedding_.size(0) < 1 || d.embedding_.size(1) < 1)
    LOUPE_THROW(BadModel, source << ": '_vq_vae._embedding' has shape " << shape_str(d.embedding_.sizes())
                                 << ", expected [num_codes, dim]");
  for (const auto& spec : layer_specs()) {
    auto w = get(spec.name + ".weight");
    auto b = get(spec.name + ".bias");
    std::vector<int64_t> want = spec.shape;
    for (auto& v : want)
      if (v == -1) v = d.embedding_.size(1);
    if (w.sizes().vec() != want)
      LOUPE_THROW(BadModel, source << ": '" << spec.name << ".weight' has shape " << shape_str(w.sizes()) << ", expected "
                                   << shape_str(want));
    const bool transposed = spec.shape[2] == 4;
    const int64_t out = transposed ? want[1] : want[0];
    if (b.sizes().vec() != std::vector<int64_t>{out})
      LOUPE_THROW(BadModel, source << ": '" << spec.name << ".bias' has shape " << shape_str(b.sizes()) << ", expected ["
                                   << out << "]");
    d.w_[spec.name] = w;
    d.b_[spec.name] = b;
  }
  return d;
}

MaskDecoder MaskDecoder::load(const std::string& npz_path, torch::Device device) {
  if (!fs::exists(npz_path))
    LOUPE_THROW(NotFound, npz_path << ": no such file (big_vision's mask decoder " << kVaeOidFile << " is published at "
                                   << kVaeOidUrl << ", i.e. " << kVaeOidHttpsUrl << ")");
  return from_tensors(io::read_npz(npz_path), npz_path, device);
}

torch::Tensor MaskDecoder::decode(const torch::Tensor& codes) const {
  LOUPE_CHECK(codes.dim() == 2 && codes.size(1) == 16 && !codes.is_floating_point() && codes.scalar_type() != torch::kBool,
              InvalidArgument, "mask decoder: codes must be an integer tensor [B, 16], got " << shape_str(codes.sizes()) << " "
                                                                                              << codes.scalar_type());
  auto idx = codes.to(embedding_.device(), torch::kInt64);
  if (idx.numel()) {
    const int64_t lo = idx.min().item<int64_t>(), hi = idx.max().item<int64_t>();
    LOUPE_CHECK(lo >= 0 && hi < num_codes(), InvalidArgument,
                "mask decoder: codes must be in 0.." << num_codes() - 1 << ", got " << (lo < 0 ? lo : hi));
  }
  torch::NoGradGuard ng;
  const int64_t B = idx.size(0);
  // _quantized_values_from_codebook_indices: [B, 16] -> [B, 4, 4, D] (row-major 4x4 grid) -> NCHW
  auto x = embedding_.index_select(0, idx.reshape({-1})).reshape({B, 4, 4, code_dim()}).permute({0, 3, 1, 2});
  auto conv = [&](const torch::Tensor& in, const std::string& n, int64_t pad) {
    return torch::conv2d(in, w_.at(n), b_.at(n), 1, pad);
  };
  x = torch::relu(conv(x, "decoder.0", 0));
  for (const char* rb : {"decoder.2.net", "decoder.3.net"}) {
    const std::string r(rb);
    auto h = torch::relu(conv(x, r + ".0", 1));
    h = torch::relu(conv(h, r + ".2", 1));
    x = conv(h, r + ".4", 0) + x;
  }
  for (const char* ct : {"decoder.4", "decoder.6", "decoder.8", "decoder.10"})
    x = torch::relu(torch::conv_transpose2d(x, w_.at(ct), b_.at(ct), /*stride=*/2, /*padding=*/1));
  x = conv(x, "decoder.12", 0);  // [B, 1, 64, 64]
  return x.select(1, 0).contiguous();
}

std::string find_vae_oid(const std::string& model_dir, const std::string& models_dir) {
  std::vector<fs::path> places;
  if (!model_dir.empty()) places.push_back(fs::path(model_dir));
  if (!models_dir.empty()) places.push_back(fs::path(models_dir));
  if (!model_dir.empty()) {
    fs::path parent = fs::absolute(fs::path(model_dir)).lexically_normal();
    if (!parent.has_filename()) parent = parent.parent_path();  // "dir/" -> "dir"
    parent = parent.parent_path();
    if (!parent.empty()) places.push_back(parent);
  }
  std::ostringstream looked;
  for (size_t i = 0; i < places.size(); ++i) {
    const fs::path p = places[i] / kVaeOidFile;
    std::error_code ec;
    if (fs::is_regular_file(p, ec)) return p.string();
    looked << (i ? ", " : "") << p.string();
  }
  LOUPE_THROW(NotFound, "segment needs " << kVaeOidFile << " (big_vision's mask decoder for PaliGemma's <seg> tokens), "
                                         << "published at " << kVaeOidUrl << " (" << kVaeOidHttpsUrl
                                         << "); place it next to the model or in the models folder; looked in: "
                                         << (places.empty() ? std::string("(no folders)") : looked.str()));
}

}  // namespace loupe::paligemma
