#include "models/florence2/modeling.h"

#include <cmath>

#include "core/error.h"
#include "nn/attention.h"

namespace loupe::florence2 {

namespace F = torch::nn::functional;
using torch::indexing::None;
using torch::indexing::Slice;

static torch::nn::Conv2d depthwise(int dim) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(dim, dim, 3).padding(1).groups(dim));
}

// [B, C, H, W] -> LayerNorm over C -> [B, C, H, W]
static torch::Tensor norm_channels(loupe::nn::LayerNorm& ln, const torch::Tensor& x) {
  return ln(x.permute({0, 2, 3, 1})).permute({0, 3, 1, 2});
}

ConvEmbedImpl::ConvEmbedImpl(const VisionConfig& c, int s) : pre_norm(c.patch_prenorm[s]) {
  const int in = s == 0 ? c.in_channels : c.embed_dim[s - 1];
  conv = register_module("conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(in, c.embed_dim[s], c.patch_size[s])
                                                       .stride(c.patch_stride[s])
                                                       .padding(c.patch_padding[s])));
  norm = register_module("norm", loupe::nn::LayerNorm(torch::nn::LayerNormOptions({pre_norm ? in : c.embed_dim[s]})));
}

torch::Tensor ConvEmbedImpl::forward(torch::Tensor x) {
  if (pre_norm) x = norm_channels(norm, x);
  x = conv(x);
  if (!pre_norm) x = norm_channels(norm, x);
  return x;
}

MlpImpl::MlpImpl(int dim, int hidden) {
  fc1 = register_module("fc1", loupe::nn::Linear(dim, hidden));
  fc2 = register_module("fc2", loupe::nn::Linear(hidden, dim));
}

WindowAttentionImpl::WindowAttentionImpl(const VisionConfig& c, int s) : window(c.window_size), heads(c.num_heads[s]) {
  const int dim = c.embed_dim[s];
  qkv = register_module("qkv", loupe::nn::Linear(torch::nn::LinearOptions(dim, 3 * dim).bias(c.qkv_bias)));
  proj = register_module("proj", loupe::nn::Linear(dim, dim));
}

torch::Tensor WindowAttentionImpl::forward(torch::Tensor x) {
  const int64_t B = x.size(0), H = x.size(1), W = x.size(2), C = x.size(3);
  const int64_t pr = (window - W % window) % window, pb = (window - H % window) % window;
  if (pr || pb) x = F::pad(x, F::PadFuncOptions({0, 0, 0, pr, 0, pb}));
  const int64_t Hp = H + pb, Wp = W + pr, nh = Hp / window, nw = Wp / window;
  auto win = x.view({B, nh, window, nw, window, C}).permute({0, 1, 3, 2, 4, 5}).reshape({-1, window * window, C});
  const int64_t n = win.size(0), t = win.size(1), hd = C / heads;
  auto q_k_v = qkv(win).reshape({n, t, 3, heads, hd}).permute({2, 0, 3, 1, 4});
  auto out = loupe::nn::attention(q_k_v[0], q_k_v[1], q_k_v[2], {}, false, 1.0 / std::sqrt(double(hd)));
  out = proj(out.transpose(1, 2).reshape({n, t, C}));
  out = out.view({B, nh, nw, window, window, C}).permute({0, 1, 3, 2, 4, 5}).reshape({B, Hp, Wp, C});
  return out.index({Slice(), Slice(0, H), Slice(0, W), Slice()}).reshape({B, H * W, C});
}

ChannelAttentionImpl::ChannelAttentionImpl(const VisionConfig& c, int s) : groups(c.num_groups[s]) {
  const int dim = c.embed_dim[s];
  qkv = register_module("qkv", loupe::nn::Linear(torch::nn::LinearOptions(dim, 3 * dim).bias(c.qkv_bias)));
  proj = register_module("proj", loupe::nn::Linear(dim, dim));
}

torch::Tensor ChannelAttentionImpl::forward(torch::Tensor x) {
  const int64_t B = x.size(0), N = x.size(1), C = x.size(2);
  // [3, B, groups, C/groups, N]: attention between channels of a group, scaled by N^-1/2
  auto q_k_v = qkv(x).reshape({B, N, 3, groups, C / groups}).permute({2, 0, 3, 4, 1});
  auto out = loupe::nn::attention(q_k_v[0], q_k_v[1], q_k_v[2], {}, false, 1.0 / std::sqrt(double(N)));  // [B, g, Cg, N]
  out = out.permute({0, 3, 1, 2}).reshape({B, N, C});
  return proj(out);
}

DavitBlockImpl::DavitBlockImpl(const VisionConfig& c, int s, bool spatial) {
  const int dim = c.embed_dim[s];
  conv1 = register_module("conv1", depthwise(dim));
  norm1 = register_module("norm1", loupe::nn::LayerNorm(torch::nn::LayerNormOptions({dim})));
  if (spatial) window_attn = register_module("window_attn", WindowAttention(c, s));
  else channel_attn = register_module("channel_attn", ChannelAttention(c, s));
  conv2 = register_module("conv2", depthwise(dim));
  norm2 = register_module("norm2", loupe::nn::LayerNorm(torch::nn::LayerNormOptions({dim})));
  ffn = register_module("ffn", Mlp(dim, static_cast<int>(dim * c.mlp_ratio)));
}

torch::Tensor DavitBlockImpl::forward(torch::Tensor x) {
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  x = conv1(x) + x;
  auto t = x.flatten(2).transpose(1, 2);
  auto h = norm1(t);
  h = window_attn ? window_attn(h.reshape({B, H, W, C})) : channel_attn(h);
  t = t + h;
  x = t.transpose(1, 2).reshape({B, C, H, W});
  x = conv2(x) + x;
  t = x.flatten(2).transpose(1, 2);
  t = t + ffn(norm2(t));
  return t.transpose(1, 2).reshape({B, C, H, W});
}

VisionLayerImpl::VisionLayerImpl(const VisionConfig& c, int s) {
  spatial_block = register_module("spatial_block", DavitBlock(c, s, true));
  channel_block = register_module("channel_block", DavitBlock(c, s, false));
}

VisionTowerImpl::VisionTowerImpl(const VisionConfig& c) {
  for (size_t s = 0; s < c.embed_dim.size(); ++s) {
    convs->push_back(ConvEmbed(c, static_cast<int>(s)));
    torch::nn::ModuleList stage;
    for (int d = 0; d < c.depths[s]; ++d) stage->push_back(VisionLayer(c, static_cast<int>(s)));
    blocks->push_back(stage);
  }
  register_module("convs", convs);
  register_module("blocks", blocks);
}

torch::Tensor VisionTowerImpl::forward(torch::Tensor x) {
  for (size_t s = 0; s < convs->size(); ++s) {
    x = convs[s]->as<ConvEmbed>()->forward(x);
    for (auto& layer : *blocks[s]->as<torch::nn::ModuleList>()) x = layer->as<VisionLayer>()->forward(x);
  }
  return x;
}

ProjectorImpl::ProjectorImpl(const VisionConfig& c) {
  const int dim = c.embed_dim.back();
  image_projection =
      register_module("image_projection", loupe::nn::Linear(torch::nn::LinearOptions(dim, c.projection_dim).bias(false)));
  image_proj_norm = register_module("image_proj_norm", loupe::nn::LayerNorm(torch::nn::LayerNormOptions({c.projection_dim})));
  auto pos = std::make_shared<torch::nn::Module>();
  row_embeddings = pos->register_module("row_embeddings", torch::nn::Embedding(c.max_position_embeddings, dim / 2));
  column_embeddings = pos->register_module("column_embeddings", torch::nn::Embedding(c.max_position_embeddings, dim - dim / 2));
  register_module("image_position_embed", pos);
  // 1-D sinusoidal table: even columns sin, odd columns cos (reference: PositionalEmbeddingCosine1D)
  const int half = dim / 2;
  auto freq = torch::exp(torch::arange(half, torch::kFloat32) * (-std::log(10000.0) / half));
  auto arg = torch::arange(c.max_temporal_embeddings, torch::kFloat32).unsqueeze(1) * freq.unsqueeze(0);
  temporal = torch::zeros({c.max_temporal_embeddings, dim});
  temporal.index_put_({Slice(), Slice(0, None, 2)}, torch::sin(arg));
  temporal.index_put_({Slice(), Slice(1, None, 2)}, torch::cos(arg));
}

torch::Tensor ProjectorImpl::forward(torch::Tensor f) {
  const int64_t H = f.size(2), W = f.size(3);
  if (H > row_embeddings->weight.size(0) || W > column_embeddings->weight.size(0))
    LOUPE_THROW(InvalidArgument, "Florence-2: the feature grid " << H << "x" << W << " exceeds the position table ("
                                                                  << row_embeddings->weight.size(0) << ")");
  auto x_emb = column_embeddings(torch::arange(W, f.device()));  // [W, C/2]
  auto y_emb = row_embeddings(torch::arange(H, f.device()));     // [H, C - C/2]
  auto pos = torch::cat({x_emb.unsqueeze(0).expand({H, W, x_emb.size(1)}), y_emb.unsqueeze(1).expand({H, W, y_emb.size(1)})}, -1);
  auto t = (f + pos.permute({2, 0, 1}).unsqueeze(0).to(f.dtype())).flatten(2).transpose(1, 2);  // [B, HW, C]
  t = t + temporal.index({Slice(0, 1)}).to(t.device(), t.dtype()).unsqueeze(0);
  auto pooled = t.mean(1, /*keepdim=*/true);  // spatial mean: [B, 1, C]
  auto feats = torch::cat({pooled, t}, 1);    // [B, 1 + HW, C]
  return image_proj_norm(image_projection(feats));
}

// ---------------------------------------------------------------- BART

BartAttentionImpl::BartAttentionImpl(int dim, int h) : heads(h), head_dim(dim / h) {
  q_proj = register_module("q_proj", loupe::nn::Linear(dim, dim));
  k_proj = register_module("k_proj", loupe::nn::Linear(dim, dim));
  v_proj = register_module("v_proj", loupe::nn::Linear(dim, dim));
  out_proj = register_module("out_proj", loupe::nn::Linear(dim, dim));
}

torch::Tensor BartAttentionImpl::forward(torch::Tensor x, const torch::Tensor& kv_source, const torch::Tensor& mask,
                                         KV* cache, bool causal) {
  const int64_t B = x.size(0), L = x.size(1);
  auto split = [&](const torch::Tensor& t) { return t.view({B, -1, heads, head_dim}).transpose(1, 2); };
  auto q = split(q_proj(x));
  torch::Tensor k, v;
  if (kv_source.defined()) {  // cross-attention: the encoder's K/V are computed once
    if (cache && cache->k.defined()) {
      k = cache->k;
      v = cache->v;
    } else {
      k = split(k_proj(kv_source));
      v = split(v_proj(kv_source));
      if (cache) *cache = {k, v};
    }
  } else {
    k = split(k_proj(x));
    v = split(v_proj(x));
    if (cache && cache->slot.defined()) {  // fixed-size cache: write this step's slot, attend over all
      cache->k.index_copy_(2, cache->slot, k);
      cache->v.index_copy_(2, cache->slot, v);
      k = cache->k;
      v = cache->v;
    } else if (cache) {
      if (cache->k.defined()) {
        k = torch::cat({cache->k, k}, 2);
        v = torch::cat({cache->v, v}, 2);
      }
      *cache = {k, v};
    }
  }
  auto out = loupe::nn::attention(q, k, v, mask, causal && L > 1, 1.0 / std::sqrt(double(head_dim)));
  return out_proj(out.transpose(1, 2).reshape({B, L, heads * head_dim}));
}

BartLayerImpl::BartLayerImpl(int dim, int h, int ffn, bool decoder) {
  auto ln = [&] { return loupe::nn::LayerNorm(torch::nn::LayerNormOptions({dim})); };
  self_attn = register_module("self_attn", BartAttention(dim, h));
  self_attn_layer_norm = register_module("self_attn_layer_norm", ln());
  if (decoder) {
    encoder_attn = register_module("encoder_attn", BartAttention(dim, h));
    encoder_attn_layer_norm = register_module("encoder_attn_layer_norm", ln());
  }
  fc1 = register_module("fc1", loupe::nn::Linear(dim, ffn));
  fc2 = register_module("fc2", loupe::nn::Linear(ffn, dim));
  final_layer_norm = register_module("final_layer_norm", ln());
}

BartStackImpl::BartStackImpl(const TextConfig& c, bool decoder) {
  embed_positions = register_module("embed_positions", torch::nn::Embedding(c.max_position_embeddings + 2, c.d_model));
  layernorm_embedding = register_module("layernorm_embedding", loupe::nn::LayerNorm(torch::nn::LayerNormOptions({c.d_model})));
  const int n = decoder ? c.decoder_layers : c.encoder_layers;
  for (int i = 0; i < n; ++i)
    layers->push_back(BartLayer(c.d_model, decoder ? c.decoder_attention_heads : c.encoder_attention_heads,
                                decoder ? c.decoder_ffn_dim : c.encoder_ffn_dim, decoder));
  register_module("layers", layers);
}

LanguageModelImpl::LanguageModelImpl(const TextConfig& c) {
  shared = register_module("shared", torch::nn::Embedding(c.vocab_size, c.d_model));
  encoder = register_module("encoder", BartStack(c, false));
  decoder = register_module("decoder", BartStack(c, true));
}

Florence2InnerImpl::Florence2InnerImpl(const Config& c) {
  vision_tower = register_module("vision_tower", VisionTower(c.vision));
  multi_modal_projector = register_module("multi_modal_projector", Projector(c.vision));
  language_model = register_module("language_model", LanguageModel(c.text));
}

Florence2Impl::Florence2Impl(const Config& c) : cfg(c) {
  if (c.vision.projection_dim != c.text.d_model)
    LOUPE_THROW(BadModel, "Florence-2 config: vision projection_dim " << c.vision.projection_dim
                                                                      << " differs from the text d_model " << c.text.d_model);
  model = register_module("model", Florence2Inner(c));
}

torch::Tensor Florence2Impl::image_features(const torch::Tensor& pixels) {
  return model->multi_modal_projector(model->vision_tower(pixels));
}

torch::Tensor Florence2Impl::embed(const torch::Tensor& ids) {
  auto e = model->language_model->shared(ids);
  if (cfg.text.scale_embedding) e = e * std::sqrt(double(cfg.text.d_model));
  return e;
}

torch::Tensor ffn_block(BartLayerImpl& l, torch::Tensor h) {
  auto r = h;
  h = l.fc2(torch::gelu(l.fc1(h)));
  return l.final_layer_norm(r + h);
}

torch::Tensor Florence2Impl::encode(const torch::Tensor& input_ids, const torch::Tensor& feats) {
  // Placeholders may use an id outside the vocabulary (original layout: -1): embed a valid id there.
  auto h = embed(input_ids.clamp_min(0));
  if (feats.defined()) {
    auto is_img = (input_ids == cfg.image_token_id);
    const int64_t n = is_img.sum().item<int64_t>();
    if (n != feats.size(0) * feats.size(1))
      LOUPE_THROW(Internal, "Florence-2: " << n << " image placeholder tokens for " << feats.size(0) * feats.size(1)
                                           << " image features");
    h = h.masked_scatter(is_img.unsqueeze(-1).expand_as(h), feats.to(h.dtype()));
  }
  auto& enc = *model->language_model->encoder;
  const int64_t L = input_ids.size(1);
  if (L > enc.embed_positions->weight.size(0) - 2)
    LOUPE_THROW(InvalidArgument, "Florence-2: the prompt has " << L << " tokens, more than the model's "
                                                               << enc.embed_positions->weight.size(0) - 2);
  h = h + enc.embed_positions(torch::arange(L, input_ids.device()) + 2).unsqueeze(0);
  h = enc.layernorm_embedding(h);
  for (auto& m : *enc.layers) {
    auto& l = *m->as<BartLayer>();
    h = l.self_attn_layer_norm(h + l.self_attn->forward(h, torch::Tensor(), torch::Tensor(), nullptr, false));
    h = ffn_block(l, h);
  }
  return h;
}

torch::Tensor Florence2Impl::decode(const torch::Tensor& ids, const torch::Tensor& enc_states, std::vector<KV>& self_cache,
                                    std::vector<KV>& cross_cache, int64_t past_len) {
  auto& dec = *model->language_model->decoder;
  const int64_t n = ids.size(1);
  if (past_len + n > dec.embed_positions->weight.size(0) - 2)
    LOUPE_THROW(InvalidArgument, "Florence-2: generation reached the model's maximum length "
                                     << dec.embed_positions->weight.size(0) - 2);
  auto h = embed(ids) + dec.embed_positions(torch::arange(past_len, past_len + n, ids.device()) + 2).unsqueeze(0);
  return decode_embedded(h, enc_states, self_cache, cross_cache);
}

torch::Tensor Florence2Impl::decode_embedded(torch::Tensor h, const torch::Tensor& enc_states, std::vector<KV>& self_cache,
                                             std::vector<KV>& cross_cache, const torch::Tensor& self_mask) {
  auto& dec = *model->language_model->decoder;
  h = dec.layernorm_embedding(h);
  self_cache.resize(dec.layers->size());
  cross_cache.resize(dec.layers->size());
  for (size_t i = 0; i < dec.layers->size(); ++i) {
    auto& l = *dec.layers[i]->as<BartLayer>();
    h = l.self_attn_layer_norm(h + l.self_attn->forward(h, torch::Tensor(), self_mask, &self_cache[i], true));
    h = l.encoder_attn_layer_norm(h + l.encoder_attn->forward(h, enc_states, torch::Tensor(), &cross_cache[i], false));
    h = ffn_block(l, h);
  }
  return loupe::nn::linear(h, model->language_model->shared->weight);
}

}  // namespace loupe::florence2
