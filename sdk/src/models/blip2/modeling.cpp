#include "models/blip2/modeling.h"

#include <cmath>
#include <set>
#include <sstream>

#include "core/error.h"
#include "io/state_dict.h"
#include "models/siglip/siglip.h"
#include "nn/attention.h"

namespace loupe::blip2 {

namespace {

loupe::nn::LayerNorm layer_norm(int64_t d, double eps) {
  return loupe::nn::LayerNorm(torch::nn::LayerNormOptions({d}).eps(eps));
}

// [B, L, H * D] -> [B, H, L, D]
torch::Tensor heads_first(const torch::Tensor& t, int64_t heads, int64_t dim) {
  return t.view({t.size(0), t.size(1), heads, dim}).transpose(1, 2);
}

}  // namespace

VisionEmbeddingsImpl::VisionEmbeddingsImpl(const VisionConfig& c) {
  class_embedding = register_parameter("class_embedding", torch::zeros({1, 1, c.hidden_size}));
  patch_embedding = register_module(
      "patch_embedding", nn::Conv2d(torch::nn::Conv2dOptions(3, c.hidden_size, c.patch_size).stride(c.patch_size)));
  position_embedding = register_parameter("position_embedding", torch::zeros({1, c.num_patches() + 1, c.hidden_size}));
}

torch::Tensor VisionEmbeddingsImpl::forward(const torch::Tensor& pixels) {
  const auto dt = patch_embedding->weight.scalar_type();
  auto x = patch_embedding(pixels.to(dt)).flatten(2).transpose(1, 2);  // [B, patches, D]
  if (x.size(1) + 1 != position_embedding.size(1))
    LOUPE_THROW(InvalidArgument, "BLIP-2 vision: " << pixels.size(2) << "x" << pixels.size(3) << " pixels give " << x.size(1)
                                                   << " patches, the model has positions for " << position_embedding.size(1) - 1);
  x = torch::cat({class_embedding.expand({x.size(0), 1, -1}).to(dt), x}, 1);
  return x + position_embedding.to(dt);
}

VisionAttentionImpl::VisionAttentionImpl(const VisionConfig& c) : heads(c.num_heads), head_dim(c.hidden_size / c.num_heads) {
  qkv = register_module("qkv", nn::Linear(torch::nn::LinearOptions(c.hidden_size, 3 * c.hidden_size).bias(c.qkv_bias)));
  projection = register_module("projection", nn::Linear(c.hidden_size, c.hidden_size));
}

torch::Tensor VisionAttentionImpl::forward(const torch::Tensor& x) {
  const int64_t B = x.size(0), L = x.size(1);
  auto m = qkv(x).reshape({B, L, 3, heads, head_dim}).permute({2, 0, 3, 1, 4});  // [3, B, H, L, D]
  auto o = nn::attention(m[0], m[1], m[2], {}, false, 1.0 / std::sqrt(static_cast<double>(head_dim)));
  return projection(o.transpose(1, 2).reshape({B, L, heads * head_dim}));
}

MlpImpl::MlpImpl(int64_t hidden, int64_t inner, std::string a) : act(std::move(a)) {
  fc1 = register_module("fc1", nn::Linear(hidden, inner));
  fc2 = register_module("fc2", nn::Linear(inner, hidden));
}

torch::Tensor MlpImpl::forward(const torch::Tensor& x) { return fc2(siglip::activation(fc1(x), act)); }

VisionLayerImpl::VisionLayerImpl(const VisionConfig& c) {
  self_attn = register_module("self_attn", VisionAttention(c));
  layer_norm1 = register_module("layer_norm1", layer_norm(c.hidden_size, c.eps));
  mlp = register_module("mlp", Mlp(c.hidden_size, c.intermediate_size, c.activation));
  layer_norm2 = register_module("layer_norm2", layer_norm(c.hidden_size, c.eps));
}

torch::Tensor VisionLayerImpl::forward(torch::Tensor x) {
  x = x + self_attn(layer_norm1(x));
  return x + mlp(layer_norm2(x));
}

VisionModelImpl::VisionModelImpl(const VisionConfig& c) {
  embeddings = register_module("embeddings", VisionEmbeddings(c));
  encoder = register_module("encoder", std::make_shared<torch::nn::Module>());
  layers = encoder->register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.num_layers; ++i) layers->push_back(VisionLayer(c));
  post_layernorm = register_module("post_layernorm", layer_norm(c.hidden_size, c.eps));
}

torch::Tensor VisionModelImpl::forward(const torch::Tensor& pixels) {
  auto x = embeddings(pixels);
  for (const auto& m : *layers) x = m->as<VisionLayerImpl>()->forward(x);
  return post_layernorm(x);
}

QFormerAttentionImpl::QFormerAttentionImpl(const QFormerConfig& c, bool cross)
    : heads(c.num_heads), head_dim(c.hidden_size / c.num_heads) {
  const int64_t kv_in = cross ? c.encoder_hidden_size : c.hidden_size;
  attention = register_module("attention", std::make_shared<torch::nn::Module>());
  query = attention->register_module("query", nn::Linear(c.hidden_size, c.hidden_size));
  key = attention->register_module("key", nn::Linear(kv_in, c.hidden_size));
  value = attention->register_module("value", nn::Linear(kv_in, c.hidden_size));
  output = register_module("output", std::make_shared<torch::nn::Module>());
  dense = output->register_module("dense", nn::Linear(c.hidden_size, c.hidden_size));
  norm = output->register_module("LayerNorm", layer_norm(c.hidden_size, c.eps));
}

torch::Tensor QFormerAttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& kv) {
  const int64_t B = x.size(0), L = x.size(1);
  auto kvx = kv.to(key->weight.scalar_type());
  auto o = nn::attention(heads_first(query(x), heads, head_dim), heads_first(key(kvx), heads, head_dim),
                         heads_first(value(kvx), heads, head_dim), {}, false,
                         1.0 / std::sqrt(static_cast<double>(head_dim)));
  o = o.transpose(1, 2).reshape({B, L, heads * head_dim});
  return norm(dense(o) + x);
}

QFormerLayerImpl::QFormerLayerImpl(const QFormerConfig& c, int64_t index) : act(c.activation) {
  attention = register_module("attention", QFormerAttention(c, false));
  if (index % c.cross_attention_frequency == 0)
    crossattention = register_module("crossattention", QFormerAttention(c, true));
  intermediate_query = register_module("intermediate_query", std::make_shared<torch::nn::Module>());
  inter_dense = intermediate_query->register_module("dense", nn::Linear(c.hidden_size, c.intermediate_size));
  output_query = register_module("output_query", std::make_shared<torch::nn::Module>());
  out_dense = output_query->register_module("dense", nn::Linear(c.intermediate_size, c.hidden_size));
  out_norm = output_query->register_module("LayerNorm", layer_norm(c.hidden_size, c.eps));
}

torch::Tensor QFormerLayerImpl::forward(const torch::Tensor& x, const torch::Tensor& image) {
  auto h = attention(x, x);
  if (crossattention) h = crossattention(h, image);
  return out_norm(out_dense(siglip::activation(inter_dense(h), act)) + h);
}

QFormerImpl::QFormerImpl(const QFormerConfig& c) {
  layernorm = register_module("layernorm", layer_norm(c.hidden_size, c.eps));
  encoder = register_module("encoder", std::make_shared<torch::nn::Module>());
  layer = encoder->register_module("layer", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.num_layers; ++i) layer->push_back(QFormerLayer(c, i));
}

torch::Tensor QFormerImpl::forward(const torch::Tensor& query_embeds, const torch::Tensor& image) {
  auto x = layernorm(query_embeds);
  for (const auto& m : *layer) x = m->as<QFormerLayerImpl>()->forward(x, image);
  return x;
}

Blip2Impl::Blip2Impl(const Config& c) : cfg(c) {
  vision_model = register_module("vision_model", VisionModel(c.vision));
  query_tokens = register_parameter("query_tokens", torch::zeros({1, c.num_query_tokens, c.qformer.hidden_size}));
  qformer = register_module("qformer", QFormer(c.qformer));
  language_projection = register_module("language_projection", nn::Linear(c.qformer.hidden_size, c.text_hidden_size));
  if (c.is_t5())
    t5 = register_module("language_model", nn::T5Model(c.t5, true));
  else
    language_model = register_module("language_model", nn::DecoderLM(c.text));
}

void Blip2Impl::load(const io::Checkpoint& ckpt_in, const std::string& file, torch::Device device, torch::ScalarType dtype) {
  io::Checkpoint ckpt = ckpt_in;
  if (cfg.is_t5() && !ckpt.has("language_model.shared.weight"))
    for (const auto& a : nn::t5_shared_aliases())  // a copy of the tied embedding stands for it
      if (ckpt.has("language_model." + a)) {
        ckpt.alias("language_model.shared.weight", "language_model." + a);
        break;
      }
  io::BindOptions bo;
  bo.device = device;
  // T5 in fp16 keeps its "wo" projections in fp32: bound in fp32 first, then moved as T5 wants
  const auto bind_dtype = cfg.is_t5() ? torch::kFloat32 : dtype;
  bo.dtype = bind_dtype;
  to(device, bind_dtype);
  try {
    io::bind(*this, ckpt, bo);
  } catch (const Error& e) {
    LOUPE_THROW(BadModel, "BLIP-2 weights in " << file << ": " << e.what());
  }
  if (cfg.is_t5() && dtype != bind_dtype) finish_dtype(device, dtype);
}

void Blip2Impl::finish_dtype(torch::Device device, torch::ScalarType dtype) {
  vision_model->to(device, dtype);
  qformer->to(device, dtype);
  language_projection->to(device, dtype);
  query_tokens.set_data(query_tokens.to(device, dtype));
  t5->to_dtype(dtype, device);
}

void Blip2Impl::load(const std::vector<io::Checkpoint>& shards, const std::string& file, torch::Device device,
                     torch::ScalarType dtype) {
  if (shards.size() == 1) return load(shards.front(), file, device, dtype);
  io::BindOptions bo;
  bo.device = device;
  const auto bind_dtype = cfg.is_t5() ? torch::kFloat32 : dtype;
  bo.dtype = bind_dtype;
  bo.strict = false;
  to(device, bind_dtype);
  std::set<std::string> missing;
  for (const auto& kv : named_parameters(true)) missing.insert(kv.key());
  for (const auto& kv : named_buffers(true)) missing.insert(kv.key());
  for (const auto& ckpt : shards) {
    auto rep = io::bind(*this, ckpt, bo);
    if (!rep.mismatched.empty())
      LOUPE_THROW(BadModel, "BLIP-2 weights in " << file << ": " << rep.describe(ckpt.path()));
    std::set<std::string> still(rep.missing.begin(), rep.missing.end());
    for (auto it = missing.begin(); it != missing.end();) it = still.count(*it) ? std::next(it) : missing.erase(it);
  }
  if (!missing.empty()) {
    std::ostringstream os;
    size_t k = 0;
    for (const auto& m : missing) {
      if (k++ == 10) break;
      os << (k > 1 ? ", " : "") << m;
    }
    LOUPE_THROW(BadModel, "BLIP-2 weights in " << file << ": " << missing.size() << " tensors are in no shard (" << os.str()
                                               << (missing.size() > 10 ? ", ..." : "") << ")");
  }
  if (cfg.is_t5() && dtype != bind_dtype) finish_dtype(device, dtype);
}

torch::Tensor Blip2Impl::vision_features(const torch::Tensor& pixels) {
  if (pixels.dim() != 4 || pixels.size(1) != 3 || pixels.size(2) != cfg.vision.image_size ||
      pixels.size(3) != cfg.vision.image_size)
    LOUPE_THROW(InvalidArgument, "BLIP-2: pixel values of shape " << pixels.sizes() << ", the model takes [B, 3, "
                                                                 << cfg.vision.image_size << ", " << cfg.vision.image_size << "]");
  return vision_model->forward(pixels);
}

torch::Tensor Blip2Impl::query_features(const torch::Tensor& image) {
  auto q = query_tokens.expand({image.size(0), -1, -1});
  return qformer->forward(q, image);
}

torch::Tensor Blip2Impl::image_features(const torch::Tensor& pixels) {
  return language_projection(query_features(vision_features(pixels)));
}

torch::Tensor Blip2Impl::merge(const torch::Tensor& ids, const torch::Tensor& feats) {
  auto emb = cfg.is_t5() ? t5->embed(ids) : language_model->embed(ids);  // [B, L, H]
  auto f = feats.to(emb.scalar_type());
  if (cfg.layout == PromptLayout::Concatenated) return torch::cat({f, emb}, 1);
  const auto is_image = ids.eq(cfg.image_token_id).to(emb.device());
  const int64_t n_image = is_image.sum().item<int64_t>();
  if (n_image != f.size(0) * f.size(1))
    LOUPE_THROW(InvalidArgument, "BLIP-2: the prompt has " << n_image << " image tokens, the image gives "
                                                          << f.size(0) * f.size(1) << " query features");
  return emb.masked_scatter(is_image.unsqueeze(-1).expand_as(emb), f.reshape({-1, emb.size(2)}));
}

torch::Tensor Blip2Impl::encoder_output(const torch::Tensor& ids, const torch::Tensor& pixels) {
  if (!cfg.is_t5()) LOUPE_THROW(InvalidArgument, "BLIP-2: encoder_output is for the Flan-T5 models");
  return t5->encode_embeds(merge(ids, image_features(pixels)));
}

torch::Tensor Blip2Impl::decoder_logits(const torch::Tensor& ids, const torch::Tensor& pixels,
                                        const torch::Tensor& decoder_ids) {
  auto cache = t5->make_cache(encoder_output(ids, pixels));
  return t5->decode(decoder_ids, cache);
}

torch::Tensor Blip2Impl::prompt_logits(const torch::Tensor& ids, const torch::Tensor& pixels) {
  if (cfg.is_t5()) LOUPE_THROW(InvalidArgument, "BLIP-2: prompt_logits is for the OPT models (T5: decoder_logits)");
  nn::DecoderInput in;
  in.inputs_embeds = merge(ids, image_features(pixels));
  return language_model->forward(in);
}

Blip2Impl::Generated Blip2Impl::generate(const torch::Tensor& ids, const torch::Tensor& pixels, const nn::GenerationConfig& gen,
                                         const nn::TokenCallback& on_token, bool keep_step_logits) {
  torch::NoGradGuard ng;
  Generated out;
  nn::KVCache cache;
  nn::T5Cache t5_cache;
  nn::Stepper st;
  torch::Tensor prompt;
  if (cfg.is_t5()) {
    // the encoder reads the merged prompt; the decoder starts from decoder_start_token_id
    t5_cache = t5->make_cache(encoder_output(ids, pixels));
    st = nn::t5_stepper(t5, t5_cache);
    prompt = torch::full({ids.size(0), 1}, cfg.decoder_start_token_id, torch::kLong);
  } else {
    nn::DecoderInput in;
    in.inputs_embeds = merge(ids, image_features(pixels));
    in.last_only = true;
    const int64_t L = in.inputs_embeds.size(1);
    cache = language_model->make_cache(ids.size(0), L + gen.max_new_tokens);
    auto first = language_model->forward(in, cache).select(1, 0);  // [B, V]
    st = nn::stepper(language_model, cache, first);
    // transformers generates from the embeddings alone: the processors see no prompt ids
    prompt = torch::zeros({ids.size(0), 0}, torch::kLong);
  }
  if (keep_step_logits) {
    auto inner = st.step;
    st.step = [&out, inner](const torch::Tensor& x) {
      auto l = inner(x);
      out.step_logits.push_back(l.select(0, 0).to(torch::kCPU, torch::kFloat32).clone());
      return l;
    };
  }
  auto r = nn::generate(st, prompt, gen, on_token);
  out.ids = r.ids.at(0);
  if (!r.scores.empty()) out.score = r.scores[0];
  return out;
}

}  // namespace loupe::blip2
