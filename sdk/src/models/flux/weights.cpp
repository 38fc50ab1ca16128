// FluxTransformer: loading (diffusers folder, BFL single file), the host store in stored precision
// (float8 kept as bytes), resident / streamed placement, LoRA applied when weights are materialised.
#include <algorithm>
#include <filesystem>
#include <regex>
#include <cstring>
#include <set>

#include "core/error.h"
#include "io/config.h"
#include "io/float8.h"
#include "io/lora.h"
#include "io/state_dict.h"
#include "models/flux/transformer.h"

namespace fs = std::filesystem;

namespace loupe::flux {

namespace {

const char* kComfyPrefix = "model.diffusion_model.";

// One module weight as a BFL single file holds it: `key` (+ rows [src_row, src_row + rows) when it is
// a part of a fused tensor; rows < 0: all). norm_out's modulation is (shift, scale) in BFL files and
// (scale, shift) in diffusers': two parts with swapped rows.
struct Part {
  int64_t dst_row, src_row, rows;
};
struct BflSource {
  std::string key;
  std::vector<Part> parts;  // empty: the whole tensor
  int64_t fused_rows = 0;   // rows of the file's tensor when parts are taken from it
};

// diffusers module path -> (BFL module path, parts) for every linear / norm of the model, and the
// param suffix rule ("weight" -> "scale" for the q/k norms).
struct BflModule {
  std::string diffusers, bfl;
  std::vector<Part> parts;
  int64_t fused_rows = 0;
  bool norm = false;  // RMSNorm: diffusers .weight = BFL .scale
};

std::vector<BflModule> bfl_modules(const FluxConfig& c) {
  const int64_t d = c.inner_dim();
  const int64_t mlp = static_cast<int64_t>(double(d) * c.mlp_ratio);
  std::vector<BflModule> v;
  auto add = [&](std::string dif, std::string bfl, std::vector<Part> parts = {}, bool norm = false,
                 int64_t fused = 0) {
    v.push_back({std::move(dif), std::move(bfl), std::move(parts), fused, norm});
  };
  auto part = [&](std::string dif, std::string bfl, int64_t row, int64_t rows, int64_t fused) {
    add(std::move(dif), std::move(bfl), {{0, row, rows}}, false, fused);
  };
  add("x_embedder", "img_in");
  add("context_embedder", "txt_in");
  add("time_text_embed.timestep_embedder.linear_1", "time_in.in_layer");
  add("time_text_embed.timestep_embedder.linear_2", "time_in.out_layer");
  add("time_text_embed.text_embedder.linear_1", "vector_in.in_layer");
  add("time_text_embed.text_embedder.linear_2", "vector_in.out_layer");
  if (c.guidance_embeds) {
    add("time_text_embed.guidance_embedder.linear_1", "guidance_in.in_layer");
    add("time_text_embed.guidance_embedder.linear_2", "guidance_in.out_layer");
  }
  add("norm_out.linear", "final_layer.adaLN_modulation.1", {{0, d, d}, {d, 0, d}}, false, 2 * d);
  add("proj_out", "final_layer.linear");
  for (int64_t i = 0; i < c.num_layers; ++i) {
    const std::string t = "transformer_blocks." + std::to_string(i) + ".", b = "double_blocks." + std::to_string(i) + ".";
    add(t + "norm1.linear", b + "img_mod.lin");
    add(t + "norm1_context.linear", b + "txt_mod.lin");
    const char* qkv[] = {"to_q", "to_k", "to_v"};
    const char* added[] = {"add_q_proj", "add_k_proj", "add_v_proj"};
    for (int k = 0; k < 3; ++k) {
      part(t + "attn." + qkv[k], b + "img_attn.qkv", k * d, d, 3 * d);
      part(t + "attn." + added[k], b + "txt_attn.qkv", k * d, d, 3 * d);
    }
    add(t + "attn.norm_q", b + "img_attn.norm.query_norm", {}, true);
    add(t + "attn.norm_k", b + "img_attn.norm.key_norm", {}, true);
    add(t + "attn.norm_added_q", b + "txt_attn.norm.query_norm", {}, true);
    add(t + "attn.norm_added_k", b + "txt_attn.norm.key_norm", {}, true);
    add(t + "attn.to_out.0", b + "img_attn.proj");
    add(t + "attn.to_add_out", b + "txt_attn.proj");
    add(t + "ff.net.0.proj", b + "img_mlp.0");
    add(t + "ff.net.2", b + "img_mlp.2");
    add(t + "ff_context.net.0.proj", b + "txt_mlp.0");
    add(t + "ff_context.net.2", b + "txt_mlp.2");
  }
  for (int64_t i = 0; i < c.num_single_layers; ++i) {
    const std::string t = "single_transformer_blocks." + std::to_string(i) + ".",
                      b = "single_blocks." + std::to_string(i) + ".";
    add(t + "norm.linear", b + "modulation.lin");
    part(t + "attn.to_q", b + "linear1", 0, d, 3 * d + mlp);
    part(t + "attn.to_k", b + "linear1", d, d, 3 * d + mlp);
    part(t + "attn.to_v", b + "linear1", 2 * d, d, 3 * d + mlp);
    part(t + "proj_mlp", b + "linear1", 3 * d, mlp, 3 * d + mlp);
    add(t + "attn.norm_q", b + "norm.query_norm", {}, true);
    add(t + "attn.norm_k", b + "norm.key_norm", {}, true);
    add(t + "proj_out", b + "linear2");
  }
  return v;
}

// Module parameter name -> its BFL source.
std::map<std::string, BflSource> bfl_params(const FluxConfig& c, const std::string& prefix) {
  std::map<std::string, BflSource> out;
  for (const auto& m : bfl_modules(c)) {
    if (m.norm) {
      out[m.diffusers + ".weight"] = {prefix + m.bfl + ".scale", {}, 0};
      continue;
    }
    out[m.diffusers + ".weight"] = {prefix + m.bfl + ".weight", m.parts, m.fused_rows};
    out[m.diffusers + ".bias"] = {prefix + m.bfl + ".bias", m.parts, m.fused_rows};
  }
  return out;
}

int64_t count_blocks(const io::Checkpoint& ck, const std::string& head) {
  int64_t n = 0;
  for (const auto& name : ck.names()) {
    if (name.rfind(head, 0) != 0) continue;
    const auto rest = name.substr(head.size());
    const auto dot = rest.find('.');
    if (dot == 0 || dot == std::string::npos) continue;
    try {
      n = std::max<int64_t>(n, std::stoll(rest.substr(0, dot)) + 1);
    } catch (const std::exception&) {
    }
  }
  return n;
}

StoredType stored_type_of(const std::string& dtype, const std::string& where) {
  if (dtype == "F32") return StoredType::F32;
  if (dtype == "F16") return StoredType::F16;
  if (dtype == "BF16") return StoredType::BF16;
  if (dtype == "F8_E4M3") return StoredType::F8_E4M3;
  if (dtype == "F8_E5M2") return StoredType::F8_E5M2;
  LOUPE_THROW(BadModel, where << ": dtype " << dtype
                              << " is not a weight dtype of a FLUX checkpoint (F32, F16, BF16, F8_E4M3, F8_E5M2)");
}

const char* stored_name(StoredType t) {
  switch (t) {
    case StoredType::F32: return "F32";
    case StoredType::F16: return "F16";
    case StoredType::BF16: return "BF16";
    case StoredType::F8_E4M3: return "F8_E4M3";
    case StoredType::F8_E5M2: return "F8_E5M2";
  }
  return "?";
}

uint64_t elem_size(torch::ScalarType t) { return static_cast<uint64_t>(c10::elementSize(t)); }

// A single file's sidecar folder: "<file without .safetensors>/" (a diffusers folder without weights,
// as for Stable Diffusion single files).
std::string sidecar_dir(const std::string& file) {
  fs::path p(file);
  return (p.parent_path() / p.stem()).string();
}

}  // namespace

std::string FluxConfig::single_file_prefix(const io::Checkpoint& ck) {
  if (ck.has("img_in.weight")) return "";
  if (ck.has(std::string(kComfyPrefix) + "img_in.weight")) return kComfyPrefix;
  LOUPE_THROW(BadModel, ck.path() << ": not a FLUX transformer file (no 'img_in.weight', nor under '" << kComfyPrefix
                                  << "')");
}

FluxConfig FluxConfig::from_single_file(const io::Checkpoint& ck, const std::string& p, const nlohmann::json& hint) {
  const std::string& file = ck.path();
  auto shape = [&](const std::string& name) {
    if (!ck.has(p + name)) LOUPE_THROW(BadModel, file << ": no tensor '" << p + name << "' (a FLUX single file has it)");
    return ck.shape(p + name);
  };
  auto dims = [&](const std::string& name, size_t rank) {
    auto s = shape(name);
    if (s.size() != rank)
      LOUPE_THROW(BadModel, file << ": tensor '" << p + name << "' has shape " << io::shape_str(s) << ", expected "
                                 << rank << " dimensions");
    return s;
  };
  FluxConfig c;
  const auto img_in = dims("img_in.weight", 2);
  const int64_t d = img_in[0];
  c.in_channels = img_in[1];
  c.joint_attention_dim = dims("txt_in.weight", 2)[1];
  c.pooled_projection_dim = dims("vector_in.in_layer.weight", 2)[1];
  c.guidance_embeds = ck.has(p + "guidance_in.in_layer.weight");
  c.num_layers = count_blocks(ck, p + "double_blocks.");
  c.num_single_layers = count_blocks(ck, p + "single_blocks.");
  const std::string qn = c.num_layers ? "double_blocks.0.img_attn.norm.query_norm.scale"
                                      : "single_blocks.0.norm.query_norm.scale";
  c.attention_head_dim = dims(qn, 1)[0];
  if (c.attention_head_dim <= 0 || d % c.attention_head_dim)
    LOUPE_THROW(BadModel, file << ": width " << d << " (img_in) is not a multiple of the head size "
                               << c.attention_head_dim << " ('" << p + qn << "')");
  c.num_attention_heads = d / c.attention_head_dim;
  const int64_t out = dims("final_layer.linear.weight", 2)[0];
  c.out_channels = out == c.in_channels ? 0 : out;
  if (c.num_single_layers) {
    const int64_t rows = dims("single_blocks.0.linear1.weight", 2)[0];
    if (rows <= 3 * d || (rows - 3 * d) % d)
      LOUPE_THROW(BadModel, file << ": 'single_blocks.0.linear1.weight' has " << rows << " rows; expected 3 x " << d
                                 << " + the MLP width");
    c.mlp_ratio = double(rows - 3 * d) / double(d);
  }
  // RoPE axes: not in the weights
  if (hint.is_object() && hint.contains("axes_dims_rope")) {
    c.axes_dims_rope = io::get_in<std::vector<int64_t>>(hint, "axes_dims_rope", c.axes_dims_rope, file + " (config)", 1, 4096);
  } else if (c.attention_head_dim == 128) {
    c.axes_dims_rope = {16, 56, 56};  // every FLUX.1 model
  } else {
    LOUPE_THROW(BadModel, file << ": head size " << c.attention_head_dim
                               << " (not FLUX.1's 128) leaves the RoPE axes unknown; hint: put the model's diffusers "
                                  "config (with \"axes_dims_rope\") in the folder '"
                               << sidecar_dir(file) << "/transformer/'");
  }
  c.validate(file);
  return c;
}

// ---- the host store -----------------------------------------------------------------------------------

struct LoraTerm {
  int64_t dst_row, rows;
  torch::Tensor up, down;  // fp32, host: [rows, r], [r, in]
  double scale;
};

struct Entry {
  std::string name;
  torch::Tensor param;  // the module's parameter (a handle)
  torch::Tensor host;   // stored precision (float8: uint8 bytes)
  bool f8 = false;
  io::Float8 kind = io::Float8::E4M3FN;
  torch::Tensor scale;  // ComfyUI scaled fp8: weight * scale_weight (undefined: none)
  int64_t block = -1;   // -1: always resident (embedders, norm_out, proj_out)
  std::vector<LoraTerm> lora;
  bool live = false;    // materialised
};

struct FluxTransformer::Store {
  std::vector<Entry> entries;
  std::vector<std::vector<size_t>> blocks;  // entries per block
  std::vector<size_t> always;
};

FluxTransformer::FluxTransformer() = default;
FluxTransformer::~FluxTransformer() = default;

namespace {

int64_t block_of(const std::string& name, const FluxConfig& c) {
  auto index = [&](const std::string& head) -> int64_t {
    if (name.rfind(head, 0) != 0) return -1;
    return std::stoll(name.substr(head.size(), name.find('.', head.size()) - head.size()));
  };
  if (int64_t i = index("transformer_blocks."); i >= 0) return i;
  if (int64_t i = index("single_transformer_blocks."); i >= 0) return c.num_layers + i;
  return -1;
}

void materialize(Entry& e, torch::Device device, torch::ScalarType dtype) {
  torch::NoGradGuard ng;
  torch::Tensor t = e.f8 ? io::decode_float8(e.host.to(device), e.kind, dtype) : e.host.to(device, dtype);
  if (e.scale.defined()) t = t * e.scale.to(device, dtype);
  if (!e.lora.empty()) {
    if (t.data_ptr() == e.host.data_ptr()) t = t.clone();
    t = t.contiguous();
    for (const auto& l : e.lora) {
      auto delta = torch::matmul(l.up.to(device), l.down.to(device)) * l.scale;
      t.narrow(0, l.dst_row, l.rows).add_(delta.to(dtype));
    }
  }
  e.param.set_data(t);
  e.live = true;
}

void release(Entry& e) {
  e.param.set_data(e.host);  // the stored tensor: no memory of its own (float8: bytes)
  e.live = false;
}

}  // namespace

bool FluxTransformer::is_bfl_single_file(const std::string& path) {
  if (fs::is_directory(path) || path.size() < 12 || path.compare(path.size() - 12, 12, ".safetensors") != 0)
    return false;
  try {
    io::SafetensorsFile f(path);
    for (const std::string p : {"", kComfyPrefix})
      if (f.has(p + "img_in.weight") && f.has(p + "final_layer.linear.weight")) return true;
  } catch (const Error&) {
  }
  return false;
}

std::unique_ptr<FluxTransformer> FluxTransformer::load(const std::string& path_in, const FluxLoadOptions& o) {
  torch::NoGradGuard ng;
  std::unique_ptr<FluxTransformer> tr(new FluxTransformer());
  std::string path = path_in;
  if (fs::is_directory(path) && !fs::exists(fs::path(path) / "config.json") &&
      fs::exists(fs::path(path) / "transformer" / "config.json"))
    path = (fs::path(path) / "transformer").string();
  tr->source_ = path;
  const bool folder = fs::is_directory(path);
  if (!folder && !fs::exists(path)) LOUPE_THROW(NotFound, path << ": does not exist");
  io::Checkpoint ck = io::Checkpoint::open(path);
  std::map<std::string, BflSource> bfl;
  std::string prefix;
  if (folder) {
    const std::string cfg_file = (fs::path(path) / "config.json").string();
    tr->cfg_ = FluxConfig::from_json(io::read_json_file(cfg_file), cfg_file);
  } else {
    prefix = FluxConfig::single_file_prefix(ck);
    nlohmann::json hint = o.config_hint;
    if (!hint.is_object()) {
      for (const char* sub : {"/transformer/config.json", "/config.json"}) {
        const std::string side = sidecar_dir(path) + sub;
        if (fs::exists(side)) {
          hint = io::read_json_file(side);
          break;
        }
      }
    }
    tr->cfg_ = FluxConfig::from_single_file(ck, prefix, hint);
    bfl = bfl_params(tr->cfg_, prefix);
  }
  const FluxConfig& c = tr->cfg_;
  tr->model_ = FluxTransformer2DModel(c);
  tr->store_ = std::make_unique<Store>();
  Store& st = *tr->store_;

  // names and shapes first (headers only): every problem in one message
  io::BindReport report;
  std::set<std::string> used, reported;
  struct Plan {
    std::string name, key;
    std::vector<Part> parts;
    int64_t fused_rows;
    torch::Tensor param;
  };
  std::vector<Plan> plans;
  for (auto& p : tr->model_->named_parameters(true)) {
    p.value().set_requires_grad(false);
    Plan pl{p.key(), p.key(), {}, 0, p.value()};
    if (!folder) {
      auto it = bfl.find(p.key());
      if (it == bfl.end()) LOUPE_THROW(Internal, "FLUX: no single-file name for parameter '" << p.key() << "'");
      pl.key = it->second.key;
      pl.parts = it->second.parts;
      pl.fused_rows = it->second.fused_rows;
    }
    const auto want = p.value().sizes().vec();
    if (!ck.has(pl.key)) {
      if (reported.insert(pl.key).second) report.missing.push_back(pl.key);
      continue;
    }
    used.insert(pl.key);
    auto have = ck.shape(pl.key);
    if (!pl.parts.empty()) {  // a part of a fused tensor: the file's rows, the rest as the module's
      std::vector<int64_t> fused_shape = want;
      fused_shape[0] = pl.fused_rows;
      if (have != fused_shape) {
        if (reported.insert(pl.key).second) report.mismatched.push_back({pl.key, fused_shape, have});
        continue;
      }
    } else if (have != want) {
      report.mismatched.push_back({pl.key, want, have});
      continue;
    }
    plans.push_back(std::move(pl));
  }
  // ComfyUI's scaled fp8: "scaled_fp8" (a marker), "<layer>.scale_weight" (read below) and
  // "<layer>.scale_input" (for fp8 matmuls; weights dequantised to the compute dtype do not need it)
  auto ends = [](const std::string& n, const std::string& s) {
    return n.size() > s.size() && n.compare(n.size() - s.size(), s.size(), s) == 0;
  };
  for (const auto& n : ck.names())
    if (!used.count(n) && n.rfind(prefix, 0) == 0 && !ends(n, ".scale_weight") && !ends(n, ".scale_input") &&
        n != prefix + "scaled_fp8")
      report.unexpected.push_back(n);
  if (!report.ok() || !report.unexpected.empty()) throw Error(Status::BadModel, report.describe(path));

  // read: each file tensor once (fused ones are shared by their parts as views)
  std::map<std::string, torch::Tensor> fused;
  std::map<StoredType, int64_t> counts;
  for (auto& pl : plans) {
    Entry e;
    e.name = pl.name;
    e.param = pl.param;
    e.block = block_of(pl.name, c);
    const std::string dtype = ck.dtype(pl.key);
    const auto stype = stored_type_of(dtype, ck.path_of(pl.key) + ": tensor '" + pl.key + "'");
    io::Float8 kind;
    e.f8 = io::float8_kind(dtype, &kind);
    e.kind = kind;
    torch::Tensor t;
    if (!pl.parts.empty()) {
      auto& f = fused[pl.key];
      if (!f.defined()) f = ck.load(pl.key, torch::kCPU, e.f8 ? c10::optional<torch::ScalarType>(torch::kUInt8) : c10::nullopt);
      if (pl.parts.size() == 1) {
        t = f.narrow(0, pl.parts[0].src_row, pl.parts[0].rows);
      } else {
        t = torch::empty_like(f);
        for (const auto& part : pl.parts) t.narrow(0, part.dst_row, part.rows).copy_(f.narrow(0, part.src_row, part.rows));
      }
    } else {
      t = ck.load(pl.key, torch::kCPU, e.f8 ? c10::optional<torch::ScalarType>(torch::kUInt8) : c10::nullopt);
    }
    e.host = t;
    // ComfyUI's scaled fp8 files: "<layer>.scale_weight" multiplies "<layer>.weight"
    const std::string sw = pl.key.size() > 7 && pl.key.compare(pl.key.size() - 7, 7, ".weight") == 0
                               ? pl.key.substr(0, pl.key.size() - 7) + ".scale_weight"
                               : std::string();
    if (!sw.empty() && ck.has(sw)) {
      e.scale = ck.load(sw, torch::kCPU, torch::kFloat32);
      if (e.scale.numel() != 1)
        LOUPE_THROW(Unsupported, ck.path_of(sw) << ": tensor '" << sw << "' has shape " << e.scale.sizes()
                                                << "; only one scale per weight is read");
      e.scale = e.scale.reshape({});
    }
    if (pl.name.find(".weight") != std::string::npos && e.host.dim() == 2) counts[stype] += e.host.numel();
    release(e);
    st.entries.push_back(std::move(e));
  }
  fused.clear();
  int64_t most = -1;
  for (const auto& [t, n] : counts)
    if (n > most) most = n, tr->stored_type_ = t;
  st.blocks.assign(static_cast<size_t>(c.num_layers + c.num_single_layers), {});
  for (size_t i = 0; i < st.entries.size(); ++i) {
    if (st.entries[i].block < 0) st.always.push_back(i);
    else st.blocks[static_cast<size_t>(st.entries[i].block)].push_back(i);
  }
  tr->place(o.device, o.dtype, o.placement, o.budget_bytes);
  return tr;
}

uint64_t FluxTransformer::host_bytes() const {
  uint64_t n = 0;
  std::set<const void*> seen;  // parts of one fused tensor count once
  for (const auto& e : store_->entries) {
    const void* storage = e.host.storage().data();
    if (seen.insert(storage).second) n += e.host.storage().nbytes();
  }
  return n;
}

uint64_t FluxTransformer::resident_bytes(torch::ScalarType dtype) const {
  uint64_t n = 0;
  for (const auto& e : store_->entries) n += static_cast<uint64_t>(e.host.numel()) * elem_size(dtype);
  return n;
}

uint64_t FluxTransformer::added_bytes(torch::Device device, torch::ScalarType dtype) const {
  uint64_t n = 0;
  for (const auto& e : store_->entries) {
    // the host tensor itself serves (no copy) when it already is what runs: the CPU, this dtype
    const bool aliased = device.is_cpu() && !e.f8 && e.host.scalar_type() == dtype && !e.scale.defined() && e.lora.empty();
    if (!aliased) n += static_cast<uint64_t>(e.host.numel()) * elem_size(dtype);
  }
  return n;
}

uint64_t FluxTransformer::largest_block_bytes(torch::ScalarType dtype) const {
  uint64_t best = 0;
  for (const auto& b : store_->blocks) {
    uint64_t n = 0;
    for (size_t i : b) n += static_cast<uint64_t>(store_->entries[i].host.numel()) * elem_size(dtype);
    best = std::max(best, n);
  }
  return best;
}

void FluxTransformer::place(torch::Device device, torch::ScalarType dtype, Placement placement, uint64_t budget) {
  LOUPE_CHECK(c10::isFloatingType(dtype), InvalidArgument, "FLUX transformer: compute dtype " << dtype << " is not floating");
  for (auto& e : store_->entries)
    if (e.live) release(e);
  device_ = device;
  dtype_ = dtype;
  // the CPU's "device memory" is the host's: what residency adds to the stored weights counts there
  const uint64_t need = device.is_cpu() ? added_bytes(device, dtype) : resident_bytes(dtype);
  streaming_ = placement == Placement::Stream || (placement == Placement::Auto && budget != 0 && need > budget);
  for (auto& e : store_->entries)
    if (!streaming_ || e.block < 0) materialize(e, device_, dtype_);
}

torch::Tensor FluxTransformer::forward(const torch::Tensor& hidden, const torch::Tensor& encoder,
                                       const torch::Tensor& pooled, const torch::Tensor& timestep,
                                       const torch::Tensor& img_ids, const torch::Tensor& txt_ids,
                                       const torch::Tensor& guidance) {
  const auto& c = cfg_;
  auto expect = [&](const torch::Tensor& t, const char* what, int64_t dims, int64_t last) {
    if (!t.defined()) LOUPE_THROW(InvalidArgument, "FLUX transformer: " << what << " is missing");
    if (t.dim() != dims || (last >= 0 && t.size(-1) != last))
      LOUPE_THROW(InvalidArgument, "FLUX transformer: " << what << " has shape " << t.sizes() << "; expected " << dims
                                                        << " dimensions" << (last >= 0 ? " ending in " + std::to_string(last) : std::string()));
  };
  expect(hidden, "hidden_states", 3, c.in_channels);
  expect(encoder, "encoder_hidden_states", 3, c.joint_attention_dim);
  expect(pooled, "pooled_projections", 2, c.pooled_projection_dim);
  if (!timestep.defined()) LOUPE_THROW(InvalidArgument, "FLUX transformer: timestep is missing");
  if (img_ids.dim() != 2 && img_ids.dim() != 3) expect(img_ids, "img_ids", 2, 3);
  if (txt_ids.dim() != 2 && txt_ids.dim() != 3) expect(txt_ids, "txt_ids", 2, 3);
  const auto ii = img_ids.dim() == 3 ? img_ids[0] : img_ids, ti = txt_ids.dim() == 3 ? txt_ids[0] : txt_ids;
  if (ii.size(0) != hidden.size(1) || ii.size(1) != 3 || ti.size(0) != encoder.size(1) || ti.size(1) != 3)
    LOUPE_THROW(InvalidArgument, "FLUX transformer: img_ids " << img_ids.sizes() << " / txt_ids " << txt_ids.sizes()
                                                              << " do not match " << hidden.size(1) << " image and "
                                                              << encoder.size(1) << " text tokens (3 axes)");
  if (c.guidance_embeds && !guidance.defined())
    LOUPE_THROW(InvalidArgument, "FLUX transformer: this " << variant() << " model needs a guidance scale");
  auto to = [&](const torch::Tensor& t) { return t.defined() ? t.to(device_, dtype_) : t; };
  Store& st = *store_;
  FluxTransformer2DModelImpl::BlockHook hook;
  if (streaming_) {
    hook = [&](int64_t index, bool before) {
      for (size_t i : st.blocks[static_cast<size_t>(index)]) {
        if (before) materialize(st.entries[i], device_, dtype_);
        else release(st.entries[i]);
      }
    };
  }
  try {
    return model_->forward(to(hidden), to(encoder), to(pooled), to(timestep.reshape({-1})), ii.to(device_), ti.to(device_),
                           to(guidance.defined() ? guidance.reshape({-1}) : guidance), hook);
  } catch (...) {
    if (streaming_)
      for (auto& b : st.blocks)
        for (size_t i : b)
          if (st.entries[i].live) release(st.entries[i]);
    throw;
  }
}

// ---- LoRA -----------------------------------------------------------------------------------------------

namespace {

struct Target {
  size_t entry;  // the weight's entry
  int64_t dst_row, src_row, rows;
};

// Every name a LoRA may use for a module -> the weight rows it updates.
std::map<std::string, std::vector<Target>> lora_targets(const FluxConfig& c, const std::vector<Entry>& entries) {
  std::map<std::string, size_t> weight_entry;
  for (size_t i = 0; i < entries.size(); ++i) weight_entry[entries[i].name] = i;
  std::map<std::string, std::vector<Target>> out;
  auto underscored = [](std::string s) {
    std::replace(s.begin(), s.end(), '.', '_');
    return s;
  };
  auto add = [&](const std::string& alias, const Target& t) {
    out[alias].push_back(t);
    out["lora_unet_" + underscored(alias)].push_back(t);
  };
  for (size_t i = 0; i < entries.size(); ++i) {
    const auto& e = entries[i];
    if (e.host.dim() != 2 || e.name.size() < 7 || e.name.compare(e.name.size() - 7, 7, ".weight") != 0) continue;
    add(e.name.substr(0, e.name.size() - 7), {i, 0, 0, e.host.size(0)});
  }
  for (const auto& m : bfl_modules(c)) {
    if (m.norm) continue;
    auto it = weight_entry.find(m.diffusers + ".weight");
    if (it == weight_entry.end()) continue;
    const int64_t rows = entries[it->second].host.size(0);
    if (m.parts.empty()) add(m.bfl, {it->second, 0, 0, rows});
    for (const auto& p : m.parts) add(m.bfl, {it->second, p.dst_row, p.src_row, p.rows});
  }
  return out;
}

struct LoraModule {
  torch::Tensor up, down;
  std::string up_key, down_key;
  io::LoraModule names;
};

}  // namespace

void FluxTransformer::set_lora(const std::string& path, float weight) {
  torch::NoGradGuard ng;
  auto wanted = lora_weights_;
  if (weight == 0.0f) wanted.erase(path);
  else wanted[path] = weight;
  Store& st = *store_;
  const auto targets = lora_targets(cfg_, st.entries);
  std::vector<std::vector<LoraTerm>> terms(st.entries.size());
  for (const auto& [file, w] : wanted) {
    auto ck = io::Checkpoint::open(file);
    std::vector<std::string> other;
    std::map<std::string, LoraModule> modules;
    for (const auto& [mod, names] : io::lora_modules(ck, file, /*two_text_encoders=*/true, &other)) {
      if (mod.rfind("lora_te", 0) == 0) continue;  // the text encoders' part: not the transformer's
      auto& lm = modules[mod];
      if (!names.down.empty()) lm.down = ck.load(names.down, torch::kCPU, torch::kFloat32), lm.down_key = names.down;
      if (!names.up.empty()) lm.up = ck.load(names.up, torch::kCPU, torch::kFloat32), lm.up_key = names.up;
      lm.names = names;
    }
    for (const auto& n : other)
      if (n.rfind("lora_te", 0) != 0 && n.rfind("text_encoder", 0) != 0)
        LOUPE_THROW(Unsupported, file << ": tensor '" << n
                                      << "' is not a LoRA down / up / alpha tensor (LoCon, LoHa, DoRA and bias "
                                         "updates are not supported for FLUX)");
    if (modules.empty())
      LOUPE_THROW(BadModel, file << ": no LoRA tensors for the FLUX transformer (kohya lora_unet_* or diffusers "
                                    "transformer.*.lora_A / lora_B)");
    for (const auto& [mod, lm] : modules) {
      auto it = targets.find(mod);
      if (it == targets.end())
        LOUPE_THROW(BadModel, file << ": module '" << mod << "' is not in this FLUX transformer (" << variant() << ", "
                                   << cfg_.num_layers << " double / " << cfg_.num_single_layers
                                   << " single blocks): a LoRA for another model?");
      if (!lm.up.defined() || !lm.down.defined())
        LOUPE_THROW(BadModel, file << ": module '" << mod << "' lacks its " << (lm.up.defined() ? "down (lora_A)" : "up (lora_B)")
                                   << " tensor");
      if (lm.down.dim() != 2 || lm.up.dim() != 2 || lm.up.size(1) != lm.down.size(0))
        LOUPE_THROW(BadModel, file << ": module '" << mod << "': up " << lm.up.sizes() << " and down " << lm.down.sizes()
                                   << " are not a low-rank pair");
      const int64_t rank = lm.down.size(0);
      const double scale = io::lora_scale(ck, lm.names, rank);
      int64_t total = 0;
      for (const auto& t : it->second) total = std::max(total, t.src_row + t.rows);
      const auto& first = st.entries[it->second.front().entry].host;
      if (lm.up.size(0) != total || lm.down.size(1) != first.size(1))
        LOUPE_THROW(BadModel, file << ": module '" << mod << "' makes a [" << lm.up.size(0) << ", " << lm.down.size(1)
                                   << "] update for a [" << total << ", " << first.size(1)
                                   << "] weight (a LoRA for another model?)");
      for (const auto& t : it->second)
        terms[t.entry].push_back({t.dst_row, t.rows, lm.up.narrow(0, t.src_row, t.rows).contiguous(), lm.down,
                                  double(w) * scale});
    }
  }
  // all files read and checked: apply
  for (size_t i = 0; i < st.entries.size(); ++i) {
    auto& e = st.entries[i];
    e.lora = std::move(terms[i]);
    if (e.live) materialize(e, device_, dtype_);
  }
  lora_weights_ = wanted;
}

}  // namespace loupe::flux
