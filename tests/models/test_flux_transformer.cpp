// FLUX transformer parity with diffusers' FluxTransformer2DModel on tiny schnell / dev / Fill models
// (tests/fixtures/gen/make_flux_tiny.py), fp32 on the CPU: diffusers folders (one sharded), Black Forest
// Labs single files, float8 e4m3fn weights, streamed vs resident placement, kohya and PEFT LoRA.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "io/checkpoint.h"
#include "io/config.h"
#include "io/float8.h"
#include "io/safetensors.h"
#include "models/flux/transformer.h"

using namespace loupe;
namespace fs = std::filesystem;

namespace {

const std::string kDir = std::string(LOUPE_FIXTURES_DIR) + "/flux/transformer";

const io::Checkpoint& expected() {
  static io::Checkpoint c = io::Checkpoint::open(kDir + "/expected.safetensors");
  return c;
}
torch::Tensor E(const std::string& name) { return expected().load(name); }

double max_abs(const torch::Tensor& a, const torch::Tensor& b) {
  EXPECT_EQ(a.sizes(), b.sizes());
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
}

// The tiny models' RoPE axes (head size 16: not readable from a single file's weights).
flux::FluxLoadOptions tiny_options(flux::Placement placement = flux::Placement::Resident) {
  flux::FluxLoadOptions o;
  o.placement = placement;
  o.config_hint = {{"axes_dims_rope", {4, 6, 6}}};
  return o;
}

torch::Tensor run(flux::FluxTransformer& t, const std::string& v) {
  return t.forward(E(v + ".hidden"), E(v + ".encoder"), E(v + ".pooled"), E(v + ".timestep"), E(v + ".img_ids"),
                   E(v + ".txt_ids"), t.config().guidance_embeds ? E(v + ".guidance") : torch::Tensor());
}

std::string error_of(const std::function<void()>& f, Status* status = nullptr) {
  try {
    f();
  } catch (const Error& e) {
    if (status) *status = e.status();
    return e.what();
  }
  return "";
}

struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& name) : path(fs::temp_directory_path() / ("loupe-flux-" + name)) {
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
};

}  // namespace

// Tolerance: fp32 on both sides with other summation orders (oneDNN vs BLAS products, attention
// blocks); outputs are O(1)-O(10).
constexpr double kTol = 2e-4;

TEST(FluxTransformer, DiffusersFoldersMatchDiffusers) {
  for (const std::string v : {"schnell", "dev", "fill"}) {
    SCOPED_TRACE(v);
    auto t = flux::FluxTransformer::load(kDir + "/" + v + "/transformer");  // dev: sharded
    EXPECT_EQ(t->variant(), v);
    EXPECT_EQ(t->stored_type(), flux::StoredType::BF16);
    EXPECT_FALSE(t->streaming());
    const auto out = run(*t, v);
    EXPECT_LT(max_abs(out, E(v + ".out")), kTol) << "max |out| " << E(v + ".out").abs().max().item<float>();
  }
  // a pipeline folder: its transformer/ is used
  auto t = flux::FluxTransformer::load(kDir + "/dev");
  EXPECT_EQ(t->variant(), "dev");
}

TEST(FluxTransformer, SingleFilesEqualTheirFolders) {
  for (const std::string v : {"schnell", "dev", "fill"}) {  // fill: with ComfyUI's model.diffusion_model. prefix
    SCOPED_TRACE(v);
    const std::string file = kDir + "/" + v + "-bfl.safetensors";
    EXPECT_TRUE(flux::FluxTransformer::is_bfl_single_file(file));
    auto bfl = flux::FluxTransformer::load(file, tiny_options());
    auto folder = flux::FluxTransformer::load(kDir + "/" + v + "/transformer");
    EXPECT_EQ(bfl->variant(), v);  // recognised from the weights
    const auto& a = bfl->config();
    const auto& b = folder->config();
    EXPECT_EQ(a.in_channels, b.in_channels);
    EXPECT_EQ(a.out_dim(), b.out_dim());
    EXPECT_EQ(a.num_layers, b.num_layers);
    EXPECT_EQ(a.num_single_layers, b.num_single_layers);
    EXPECT_EQ(a.num_attention_heads, b.num_attention_heads);
    EXPECT_EQ(a.guidance_embeds, b.guidance_embeds);
    // the same weights, bit for bit
    auto pa = bfl->module()->named_parameters(), pb = folder->module()->named_parameters();
    ASSERT_EQ(pa.size(), pb.size());
    for (const auto& p : pb) EXPECT_TRUE(torch::equal(pa[p.key()], p.value())) << p.key();
    EXPECT_TRUE(torch::equal(run(*bfl, v), run(*folder, v)));
  }
  EXPECT_FALSE(flux::FluxTransformer::is_bfl_single_file(kDir + "/lora-kohya.safetensors"));
  EXPECT_FALSE(flux::FluxTransformer::is_bfl_single_file(kDir + "/dev/transformer"));
}

TEST(FluxTransformer, SingleFileWithoutTheAxesIsRefusedWithAHint) {
  Status st = Status::Ok;
  const auto e = error_of([] { flux::FluxTransformer::load(kDir + "/dev-bfl.safetensors"); }, &st);
  EXPECT_EQ(st, Status::BadModel);
  EXPECT_NE(e.find("axes_dims_rope"), std::string::npos) << e;
  EXPECT_NE(e.find("dev-bfl.safetensors"), std::string::npos) << e;
}

TEST(FluxTransformer, SingleFileReadsItsSidecarConfig) {
  // "<file stem>/transformer/config.json" next to the file, as for Stable Diffusion single files
  TempDir tmp("sidecar");
  const auto file = tmp.path / "tiny-dev.safetensors";
  fs::copy(kDir + "/dev-bfl.safetensors", file);
  fs::create_directories(tmp.path / "tiny-dev" / "transformer");
  fs::copy(kDir + "/dev/transformer/config.json", tmp.path / "tiny-dev" / "transformer" / "config.json");
  auto t = flux::FluxTransformer::load(file.string());
  EXPECT_EQ(t->config().axes_dims_rope, (std::vector<int64_t>{4, 6, 6}));
  EXPECT_LT(max_abs(run(*t, "dev"), E("dev.out")), kTol);
}

TEST(FluxTransformer, Float8ValuesDecodeExactly) {
  io::SafetensorsFile f(kDir + "/fp8-values.safetensors");
  for (const std::string k : {"e4m3", "e5m2"}) {
    auto bytes = f.load(k, torch::kCPU, torch::kUInt8);
    ASSERT_EQ(bytes.scalar_type(), torch::kUInt8);
    auto want = f.load(k + ".value");
    for (auto dtype : {torch::kFloat32, torch::kBFloat16, torch::kFloat16}) {
      auto got = f.load(k, torch::kCPU, dtype).to(torch::kFloat32);
      auto nan = torch::isnan(want);
      EXPECT_TRUE(torch::equal(torch::isnan(got), nan)) << k;
      EXPECT_TRUE(torch::equal(got.masked_fill(nan, 0), want.masked_fill(nan, 0))) << k << " " << dtype;
    }
  }
  // no dtype asked for: the model's loader does not decode float8
  Status st = Status::Ok;
  const auto e = error_of([&] { f.load("e4m3"); }, &st);
  EXPECT_EQ(st, Status::Unsupported);
  EXPECT_NE(e.find("F8_E4M3"), std::string::npos) << e;
  EXPECT_EQ(io::Checkpoint::open(kDir + "/fp8-values.safetensors").dtype("e5m2"), "F8_E5M2");
}

TEST(FluxTransformer, Fp8FileEqualsItsSourceAfterUpcast) {
  auto t = flux::FluxTransformer::load(kDir + "/dev-fp8.safetensors", tiny_options());
  EXPECT_EQ(t->stored_type(), flux::StoredType::F8_E4M3);
  EXPECT_EQ(t->variant(), "dev");
  // the host keeps the bytes: a block linear costs one byte per weight
  auto bf16 = flux::FluxTransformer::load(kDir + "/dev-bfl.safetensors", tiny_options());
  EXPECT_LT(t->host_bytes(), bf16->host_bytes());
  // decoded weights = the generator's upcast
  auto params = t->module()->named_parameters();
  const auto qkv = E("dev.fp8.double_blocks.0.img_attn.qkv.weight");
  const int64_t d = t->config().inner_dim();
  EXPECT_TRUE(torch::equal(params["transformer_blocks.0.attn.to_k.weight"], qkv.narrow(0, d, d)));
  const auto l1 = E("dev.fp8.single_blocks.1.linear1.weight");
  EXPECT_TRUE(torch::equal(params["single_transformer_blocks.1.proj_mlp.weight"], l1.narrow(0, 3 * d, l1.size(0) - 3 * d)));
  EXPECT_LT(max_abs(run(*t, "dev"), E("dev.fp8.out")), kTol);
}

TEST(FluxTransformer, ScaledFp8FileAsComfyUiWritesIt) {
  auto t = flux::FluxTransformer::load(kDir + "/dev-fp8-scaled.safetensors", tiny_options());
  EXPECT_EQ(t->stored_type(), flux::StoredType::F8_E4M3);
  EXPECT_LT(max_abs(run(*t, "dev"), E("dev.fp8_scaled.out")), kTol);
  auto s = flux::FluxTransformer::load(kDir + "/dev-fp8-scaled.safetensors", tiny_options(flux::Placement::Stream));
  EXPECT_TRUE(torch::equal(run(*s, "dev"), run(*t, "dev")));
}

TEST(FluxTransformer, StreamedForwardEqualsResident) {
  for (const std::string file : {"/dev-fp8.safetensors", "/dev-bfl.safetensors"}) {
    SCOPED_TRACE(file);
    auto resident = flux::FluxTransformer::load(kDir + file, tiny_options(flux::Placement::Resident));
    auto streamed = flux::FluxTransformer::load(kDir + file, tiny_options(flux::Placement::Stream));
    EXPECT_FALSE(resident->streaming());
    EXPECT_TRUE(streamed->streaming());
    // between forwards the blocks hold only the stored tensors (fp8: bytes; bf16: bf16)
    const auto stored = streamed->module()->named_parameters()["transformer_blocks.1.attn.to_q.weight"];
    EXPECT_NE(stored.scalar_type(), torch::kFloat32);
    const auto a = run(*resident, "dev"), b = run(*streamed, "dev");
    EXPECT_TRUE(torch::equal(a, b)) << max_abs(a, b);
    EXPECT_NE(streamed->module()->named_parameters()["transformer_blocks.1.attn.to_q.weight"].scalar_type(),
              torch::kFloat32);
    // the always-resident parts are upcast
    EXPECT_EQ(streamed->module()->named_parameters()["x_embedder.weight"].scalar_type(), torch::kFloat32);
    // Auto: streams when the weights do not fit the budget
    streamed->place(torch::kCPU, torch::kFloat32, flux::Placement::Auto, resident->resident_bytes(torch::kFloat32) - 1);
    EXPECT_TRUE(streamed->streaming());
    streamed->place(torch::kCPU, torch::kFloat32, flux::Placement::Auto, resident->resident_bytes(torch::kFloat32));
    EXPECT_FALSE(streamed->streaming());
    EXPECT_TRUE(torch::equal(run(*streamed, "dev"), a));
    EXPECT_GT(resident->largest_block_bytes(torch::kFloat32), 0u);
    EXPECT_LT(resident->largest_block_bytes(torch::kFloat32), resident->resident_bytes(torch::kFloat32));
  }
}

TEST(FluxTransformer, LoraKohyaAndPeftMatchDiffusersMerge) {
  const float mult = E("lora.multiplier").item<float>();
  for (auto placement : {flux::Placement::Resident, flux::Placement::Stream}) {
    auto t = flux::FluxTransformer::load(kDir + "/dev-bfl.safetensors", tiny_options(placement));
    const auto base = run(*t, "dev");
    t->set_lora(kDir + "/lora-kohya.safetensors", mult);
    EXPECT_LT(max_abs(run(*t, "dev"), E("dev.lora_kohya.out")), kTol);
    t->set_lora(kDir + "/lora-peft.safetensors", 0.5f);
    EXPECT_EQ(t->loras().size(), 2u);
    EXPECT_LT(max_abs(run(*t, "dev"), E("dev.lora_both.out")), kTol);
    t->set_lora(kDir + "/lora-kohya.safetensors", 0.0f);
    t->set_lora(kDir + "/lora-peft.safetensors", 1.0f);
    EXPECT_LT(max_abs(run(*t, "dev"), E("dev.lora_peft.out")), kTol);
    t->set_lora(kDir + "/lora-peft.safetensors", 0.0f);
    EXPECT_TRUE(t->loras().empty());
    EXPECT_TRUE(torch::equal(run(*t, "dev"), base));  // removed exactly
  }
  // the same LoRA on the diffusers folder (other module names, same model)
  auto t = flux::FluxTransformer::load(kDir + "/dev/transformer");
  t->set_lora(kDir + "/lora-kohya.safetensors", mult);
  EXPECT_LT(max_abs(run(*t, "dev"), E("dev.lora_kohya.out")), kTol);
}

TEST(FluxTransformer, LoraForAnotherModelIsRefusedAndChangesNothing) {
  auto t = flux::FluxTransformer::load(kDir + "/schnell/transformer");
  const auto base = run(*t, "schnell");
  t->set_lora(kDir + "/lora-kohya.safetensors", 1.0f);  // fits schnell too (no guidance module)
  const auto with = run(*t, "schnell");
  Status st = Status::Ok;
  // the PEFT file updates guidance_embedder, which schnell lacks
  const auto e = error_of([&] { t->set_lora(kDir + "/lora-peft.safetensors", 1.0f); }, &st);
  EXPECT_EQ(st, Status::BadModel);
  EXPECT_NE(e.find("lora-peft.safetensors"), std::string::npos) << e;
  EXPECT_NE(e.find("guidance_embedder"), std::string::npos) << e;
  EXPECT_EQ(t->loras().size(), 1u);
  EXPECT_TRUE(torch::equal(run(*t, "schnell"), with));
  t->set_lora(kDir + "/lora-kohya.safetensors", 0.0f);
  EXPECT_TRUE(torch::equal(run(*t, "schnell"), base));
  // not a LoRA at all
  st = Status::Ok;
  error_of([&] { t->set_lora(kDir + "/fp8-values.safetensors", 1.0f); }, &st);
  EXPECT_NE(st, Status::Ok);
}

TEST(FluxTransformer, BadConfigsAndFilesNameTheKey) {
  TempDir tmp("bad");
  const auto src = fs::path(kDir) / "schnell" / "transformer";
  for (const auto& e : fs::directory_iterator(src)) fs::copy(e.path(), tmp.path / e.path().filename());
  auto cfg = io::read_json_file((tmp.path / "config.json").string());
  cfg["num_layers"] = -3;
  std::ofstream((tmp.path / "config.json").string()) << cfg.dump();
  Status st = Status::Ok;
  auto e = error_of([&] { flux::FluxTransformer::load(tmp.path.string()); }, &st);
  EXPECT_EQ(st, Status::BadModel);
  EXPECT_NE(e.find("\"num_layers\""), std::string::npos) << e;
  EXPECT_NE(e.find("config.json"), std::string::npos) << e;
  cfg["num_layers"] = 2;
  cfg["axes_dims_rope"] = {4, 4, 6};
  std::ofstream((tmp.path / "config.json").string()) << cfg.dump();
  e = error_of([&] { flux::FluxTransformer::load(tmp.path.string()); }, &st);
  EXPECT_NE(e.find("axes_dims_rope"), std::string::npos) << e;
  cfg["axes_dims_rope"] = {4, 6, 6};
  cfg["num_layers"] = 3;  // the weights have 2
  std::ofstream((tmp.path / "config.json").string()) << cfg.dump();
  e = error_of([&] { flux::FluxTransformer::load(tmp.path.string()); }, &st);
  EXPECT_EQ(st, Status::BadModel);
  EXPECT_NE(e.find("transformer_blocks.2."), std::string::npos) << e;

  // a single file with one fused tensor cut short
  {
    io::SafetensorsFile f(kDir + "/dev-bfl.safetensors");
    std::vector<std::pair<std::string, torch::Tensor>> ts;
    for (const auto& n : f.names()) {
      auto t = f.load(n);
      if (n == "double_blocks.1.img_attn.qkv.weight") t = t.narrow(0, 0, t.size(0) - 1);
      ts.emplace_back(n, t);
    }
    io::save_safetensors((tmp.path / "cut.safetensors").string(), ts);
  }
  e = error_of([&] { flux::FluxTransformer::load((tmp.path / "cut.safetensors").string(), tiny_options()); }, &st);
  EXPECT_EQ(st, Status::BadModel);
  EXPECT_NE(e.find("double_blocks.1.img_attn.qkv.weight"), std::string::npos) << e;

  // inputs of the wrong width
  auto t = flux::FluxTransformer::load(kDir + "/schnell/transformer");
  e = error_of([&] {
    t->forward(E("schnell.hidden").narrow(2, 0, 8), E("schnell.encoder"), E("schnell.pooled"), E("schnell.timestep"),
               E("schnell.img_ids"), E("schnell.txt_ids"));
  }, &st);
  EXPECT_EQ(st, Status::InvalidArgument);
  EXPECT_NE(e.find("hidden_states"), std::string::npos) << e;
  // dev needs a guidance scale
  auto dev = flux::FluxTransformer::load(kDir + "/dev/transformer");
  e = error_of([&] {
    dev->forward(E("dev.hidden"), E("dev.encoder"), E("dev.pooled"), E("dev.timestep"), E("dev.img_ids"), E("dev.txt_ids"));
  }, &st);
  EXPECT_EQ(st, Status::InvalidArgument);
  EXPECT_NE(e.find("guidance"), std::string::npos) << e;
}
