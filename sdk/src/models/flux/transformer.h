// FLUX.1's transformer (diffusers' FluxTransformer2DModel): 19 double-stream blocks (image and text
// streams with their own weights, joint attention), 38 single-stream blocks (one stream, attention
// and MLP in parallel), 3-axis RoPE, timestep / guidance / pooled-text embeddings, AdaLayerNorm
// modulation. Module names are diffusers' parameter names; sizes come from transformer/config.json
// or, for a Black Forest Labs single file, from its tensor shapes.
//
// Weights and memory: a FluxTransformer keeps every weight on the host in its stored precision
// (fp32, bf16, fp16, or float8 e4m3fn / e5m2 as raw bytes: libtorch 1.13 has no float8 type). Resident
// placement decodes / upcasts everything once to the compute dtype on the compute device. Streamed
// placement materialises one block at a time (moved to the device, decoded / upcast, LoRA deltas
// added) just before it runs and releases it after, so a device budget smaller than the model works
// (on the CPU: fp8 / bf16 weights upcast per block to the compute dtype). Both give the same result.
//
// LoRA (kohya / ComfyUI "lora_unet_double_blocks_0_img_attn_qkv" and diffusers / PEFT
// "transformer.transformer_blocks.0.attn.to_q.lora_A") is applied as W + sum_i w_i * alpha_i/rank_i *
// up_i @ down_i when a weight is materialised; the stored weights are never changed, so removing a
// LoRA restores the model exactly.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "io/checkpoint.h"
#include "nn/linear.h"

namespace loupe::flux {

// diffusers' FluxTransformer2DModel config (its defaults are FLUX.1's sizes).
struct FluxConfig {
  int64_t patch_size = 1;
  int64_t in_channels = 64;      // 64 (2x2 packed 16-channel latents); Fill: 384 (+ masked image + 2x2x8x8 mask)
  int64_t out_channels = 0;      // 0: in_channels' value (64 for Fill too: diffusers' Fill config says 64)
  int64_t num_layers = 19;       // double-stream blocks
  int64_t num_single_layers = 38;
  int64_t attention_head_dim = 128;
  int64_t num_attention_heads = 24;
  int64_t joint_attention_dim = 4096;   // T5-XXL width
  int64_t pooled_projection_dim = 768;  // CLIP-L pooled width
  bool guidance_embeds = false;         // dev / Fill: true; schnell: false
  std::vector<int64_t> axes_dims_rope{16, 56, 56};
  double rope_theta = 10000;            // fixed in diffusers (FluxPosEmbed(theta=10000))
  double mlp_ratio = 4;                 // fixed in diffusers

  // The numbers fit together (axes_dims_rope: 3 even sizes summing to attention_head_dim; sizes in
  // range); BadModel naming `file` otherwise.
  void validate(const std::string& file) const;
  int64_t inner_dim() const { return num_attention_heads * attention_head_dim; }
  int64_t out_dim() const { return patch_size * patch_size * (out_channels ? out_channels : in_channels); }

  // transformer/config.json with diffusers' defaults; every number range-checked (BadModel naming
  // the file and key); axes_dims_rope must be even and sum to attention_head_dim.
  static FluxConfig from_json(const nlohmann::json& j, const std::string& file);
  // From a Black Forest Labs single file's tensor shapes (img_in, txt_in, vector_in, guidance_in,
  // double_blocks.N, single_blocks.N, final_layer; an optional "model.diffusion_model." prefix).
  // axes_dims_rope cannot be read from weights: (16, 56, 56) for head dim 128, else head_dim *
  // (1/8, 7/16, 7/16) when those are even whole numbers, else BadModel asking for a config.
  // `hint` (a config.json object, may be null) overrides what the shapes do not fix (axes_dims_rope).
  static FluxConfig from_single_file(const io::Checkpoint& ckpt, const std::string& prefix, const nlohmann::json& hint);
  // The prefix of a BFL single file's transformer names: "" or "model.diffusion_model." (ComfyUI);
  // BadModel when the file has no img_in.weight under either.
  static std::string single_file_prefix(const io::Checkpoint& ckpt);
};

// "schnell" (no guidance embedding), "dev" (guidance embedding, 64 input features), "fill"
// (guidance embedding, 384 input features), from the config (= from the weights).
std::string variant_of(const FluxConfig& c);

// ---- modules (names = diffusers' parameter names) --------------------------------------------------

struct RMSNormImpl : torch::nn::Module {  // torch.nn.RMSNorm(dim, eps), elementwise affine
  RMSNormImpl(int64_t dim, double eps);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight;
  double eps;
};
TORCH_MODULE(RMSNorm);

struct TimestepEmbeddingImpl : torch::nn::Module {  // linear_1, SiLU, linear_2
  TimestepEmbeddingImpl(int64_t in, int64_t dim);
  torch::Tensor forward(const torch::Tensor& x);
  loupe::nn::Linear linear_1{nullptr}, linear_2{nullptr};
};
TORCH_MODULE(TimestepEmbedding);

// CombinedTimestep(Guidance)TextProjEmbeddings: timestep_embedder, guidance_embedder (dev / Fill),
// text_embedder (PixArtAlphaTextProjection with SiLU: linear_1, linear_2).
struct TimeTextEmbedImpl : torch::nn::Module {
  TimeTextEmbedImpl(int64_t dim, int64_t pooled_dim, bool guidance);
  // timestep / guidance: [B] already scaled by 1000 (as the transformer's forward does).
  torch::Tensor forward(const torch::Tensor& timestep, const torch::Tensor& guidance, const torch::Tensor& pooled);
  TimestepEmbedding timestep_embedder{nullptr}, guidance_embedder{nullptr}, text_embedder{nullptr};
};
TORCH_MODULE(TimeTextEmbed);

struct FluxAttentionImpl : torch::nn::Module {
  // added: the text stream's projections (double blocks); pre_only: no to_out (single blocks).
  FluxAttentionImpl(int64_t dim, int64_t heads, int64_t head_dim, bool added, bool pre_only, double eps);
  int64_t heads, head_dim;
  RMSNorm norm_q{nullptr}, norm_k{nullptr}, norm_added_q{nullptr}, norm_added_k{nullptr};
  loupe::nn::Linear to_q{nullptr}, to_k{nullptr}, to_v{nullptr};
  torch::nn::ModuleList to_out{nullptr};  // [0]: Linear (double blocks only)
  loupe::nn::Linear add_q_proj{nullptr}, add_k_proj{nullptr}, add_v_proj{nullptr}, to_add_out{nullptr};
};
TORCH_MODULE(FluxAttention);

struct FeedForwardImpl : torch::nn::Module {  // net.0.proj (GELU tanh), net.1 (dropout), net.2
  FeedForwardImpl(int64_t dim, int64_t hidden);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::ModuleList net{nullptr};
  loupe::nn::Linear proj{nullptr}, out{nullptr};  // net[0].proj, net[2]
};
TORCH_MODULE(FeedForward);

struct AdaNormImpl : torch::nn::Module {  // AdaLayerNormZero (6), ...ZeroSingle (3), ...Continuous (2): linear
  AdaNormImpl(int64_t dim, int64_t chunks);
  std::vector<torch::Tensor> forward(const torch::Tensor& emb);  // SiLU, linear, chunked
  loupe::nn::Linear linear{nullptr};
};
TORCH_MODULE(AdaNorm);

// RoPE tables for ids [S, 3]: (cos, sin) each [S, head_dim], as diffusers' FluxPosEmbed (fp64 angles).
std::pair<torch::Tensor, torch::Tensor> rope(const torch::Tensor& ids, const std::vector<int64_t>& axes_dim,
                                             double theta);

struct FluxTransformerBlockImpl : torch::nn::Module {  // double-stream
  FluxTransformerBlockImpl(int64_t dim, int64_t heads, int64_t head_dim);
  // -> (encoder_hidden_states, hidden_states)
  std::pair<torch::Tensor, torch::Tensor> forward(const torch::Tensor& hidden, const torch::Tensor& encoder,
                                                  const torch::Tensor& temb,
                                                  const std::pair<torch::Tensor, torch::Tensor>& rope);
  AdaNorm norm1{nullptr}, norm1_context{nullptr};
  FluxAttention attn{nullptr};
  FeedForward ff{nullptr}, ff_context{nullptr};
  int64_t dim;
};
TORCH_MODULE(FluxTransformerBlock);

struct FluxSingleTransformerBlockImpl : torch::nn::Module {
  FluxSingleTransformerBlockImpl(int64_t dim, int64_t heads, int64_t head_dim, double mlp_ratio);
  // hidden: [B, T + N, D] (text first) -> same
  torch::Tensor forward(const torch::Tensor& hidden, const torch::Tensor& temb,
                        const std::pair<torch::Tensor, torch::Tensor>& rope);
  AdaNorm norm{nullptr};
  loupe::nn::Linear proj_mlp{nullptr}, proj_out{nullptr};
  FluxAttention attn{nullptr};
  int64_t dim;
};
TORCH_MODULE(FluxSingleTransformerBlock);

// The module tree. forward() runs with whatever the parameters hold; FluxTransformer (below) is what
// callers use: it owns the stored weights and places them.
struct FluxTransformer2DModelImpl : torch::nn::Module {
  explicit FluxTransformer2DModelImpl(const FluxConfig& c);
  // Called with (index, true) before block `index` runs and (index, false) after it (double blocks
  // 0 .. num_layers-1, then single blocks num_layers ..): streaming materialises / releases there.
  using BlockHook = std::function<void(int64_t, bool)>;
  // As FluxTransformer::forward, on tensors already on the parameters' device and dtype.
  torch::Tensor forward(const torch::Tensor& hidden, const torch::Tensor& encoder, const torch::Tensor& pooled,
                        const torch::Tensor& timestep, const torch::Tensor& img_ids, const torch::Tensor& txt_ids,
                        const torch::Tensor& guidance, const BlockHook& hook = {});
  FluxConfig cfg;
  TimeTextEmbed time_text_embed{nullptr};
  loupe::nn::Linear context_embedder{nullptr}, x_embedder{nullptr}, proj_out{nullptr};
  torch::nn::ModuleList transformer_blocks{nullptr}, single_transformer_blocks{nullptr};
  AdaNorm norm_out{nullptr};  // AdaLayerNormContinuous: linear -> (scale, shift)
};
TORCH_MODULE(FluxTransformer2DModel);

// ---- loading, placement, forward --------------------------------------------------------------------

enum class Placement {
  Auto,      // Resident when the weights fit budget_bytes (0 = no limit), else Stream: resident_bytes()
             // on a GPU; on the CPU added_bytes(), what residency takes beyond the stored weights
  Resident,  // every weight on the device in the compute dtype, decoded once
  Stream,    // host keeps stored precision; one block at a time on the device
};

struct FluxLoadOptions {
  torch::Device device = torch::kCPU;
  torch::ScalarType dtype = torch::kFloat32;  // compute dtype
  Placement placement = Placement::Auto;
  uint64_t budget_bytes = 0;  // device memory the weights may take (Auto); 0 = no limit
  // A single file's config.json (or its transformer/config.json) to use instead of the shapes'
  // inference (may be null). A diffusers folder always uses its own config.json.
  nlohmann::json config_hint;
};

// How a weight is held on the host.
enum class StoredType { F32, F16, BF16, F8_E4M3, F8_E5M2 };

class FluxTransformer {
 public:
  // `path`: a diffusers transformer folder (config.json + diffusion_pytorch_model.safetensors or its
  // sharded index), a diffusers pipeline folder (its transformer/ is used), or a BFL single file
  // (.safetensors; also with ComfyUI's "model.diffusion_model." prefix). Weights are read into host
  // memory in their stored dtype. Errors (NotFound / BadModel / Unsupported) name the file, tensor,
  // key and shapes.
  static std::unique_ptr<FluxTransformer> load(const std::string& path, const FluxLoadOptions& options = {});
  // True if `path` is a single file with BFL FLUX transformer names (double_blocks.0..., img_in).
  static bool is_bfl_single_file(const std::string& path);

  const FluxConfig& config() const { return cfg_; }
  std::string variant() const { return variant_of(cfg_); }
  const std::string& source() const { return source_; }  // the file / folder the weights came from
  // Stored dtype of the bulk of the weights (the block linears), e.g. for logs.
  StoredType stored_type() const { return stored_type_; }

  // hidden [B, N, in_channels] (packed latents, Fill: + masked image latents + mask), encoder
  // [B, T, joint_attention_dim], pooled [B, pooled_projection_dim], timestep [B] or [1] in [0, 1]
  // (sigma; multiplied by 1000 inside as diffusers does), img_ids [N, 3], txt_ids [T, 3] (3-d with a
  // batch dimension accepted, first row used, as diffusers), guidance [B] (dev / Fill; the
  // guidance scale, e.g. 3.5; ignored / may be undefined for schnell). Inputs are moved to the
  // compute device and dtype. Returns [B, N, out_dim] in the compute dtype on the compute device.
  torch::Tensor forward(const torch::Tensor& hidden, const torch::Tensor& encoder, const torch::Tensor& pooled,
                        const torch::Tensor& timestep, const torch::Tensor& img_ids, const torch::Tensor& txt_ids,
                        const torch::Tensor& guidance = {});

  // Placement (may be changed between forwards).
  void place(torch::Device device, torch::ScalarType dtype, Placement placement, uint64_t budget_bytes = 0);
  bool streaming() const { return streaming_; }
  torch::Device device() const { return device_; }
  torch::ScalarType dtype() const { return dtype_; }
  // Bytes the weights take: on the host as stored; on the device when resident in `dtype`; the
  // largest single block in `dtype` (what streaming needs on the device at once, besides
  // activations and the always-resident embeddings / final layer).
  uint64_t host_bytes() const;
  uint64_t resident_bytes(torch::ScalarType dtype) const;
  uint64_t largest_block_bytes(torch::ScalarType dtype) const;
  // Memory a resident placement on `device` in `dtype` takes beyond the stored weights (on the CPU
  // a weight already stored in `dtype` is used in place: fp32 files add nothing, bf16 ones run in
  // fp32 add twice their size).
  uint64_t added_bytes(torch::Device device, torch::ScalarType dtype) const;

  // LoRA: sets the weight of one file (0 removes it); several stack. kohya / ComfyUI names
  // (lora_unet_double_blocks_0_img_attn_qkv.lora_down/.lora_up/.alpha, also the diffusers-path form
  // lora_unet_transformer_blocks_0_attn_to_q) and diffusers / PEFT names
  // (transformer.transformer_blocks.0.attn.to_q.lora_A/.lora_B[.weight], optional .alpha).
  // On any error (unreadable file, a module this model lacks, a shape mismatch) the active set is
  // left as it was; BadModel names the file and module.
  void set_lora(const std::string& path, float weight);
  const std::map<std::string, float>& loras() const { return lora_weights_; }

  // The module tree (parameters hold whatever the placement has put there).
  FluxTransformer2DModel& module() { return model_; }

  ~FluxTransformer();
  FluxTransformer(const FluxTransformer&) = delete;
  FluxTransformer& operator=(const FluxTransformer&) = delete;

 private:
  FluxTransformer();
  struct Store;
  FluxConfig cfg_;
  std::string source_;
  StoredType stored_type_ = StoredType::F32;
  FluxTransformer2DModel model_{nullptr};
  std::unique_ptr<Store> store_;
  torch::Device device_ = torch::kCPU;
  torch::ScalarType dtype_ = torch::kFloat32;
  bool streaming_ = false;
  std::map<std::string, float> lora_weights_;
  friend struct FluxTransformerAccess;
};

}  // namespace loupe::flux
