#include "models/paligemma/modeling.h"

#include <cmath>

#include "core/error.h"
#include "io/state_dict.h"

namespace loupe::paligemma {

PaliGemmaImpl::PaliGemmaImpl(const Config& c) : cfg(c) {
  vision_tower = register_module("vision_tower", siglip::VisionModel(c.vision));
  multi_modal_projector = register_module("multi_modal_projector", Projector(c.vision.hidden_size, c.projection_dim));
  language_model = register_module("language_model", nn::DecoderLM(c.text));
}

Layout PaliGemmaImpl::layout_of(const io::Checkpoint& ckpt) {
  for (const auto& n : ckpt.names())
    if (n.rfind("model.language_model.", 0) == 0 || n.rfind("model.vision_tower.", 0) == 0) return Layout::Transformers5;
  return Layout::Published;
}

void PaliGemmaImpl::load(const io::Checkpoint& ckpt, const std::string& file, torch::Device device, torch::ScalarType dtype) {
  io::BindOptions bo;
  bo.device = device;
  bo.dtype = dtype;
  if (layout_of(ckpt) == Layout::Transformers5) {
    // transformers >= 4.52: PaliGemmaForConditionalGeneration._checkpoint_conversion_mapping
    // {"^language_model.model": "model.language_model", "^vision_tower": "model.vision_tower",
    //  "^multi_modal_projector": "model.multi_modal_projector", "^language_model.lm_head": "lm_head"}
    bo.keymap.prefix("language_model.model.", "model.language_model.")
        .prefix("language_model.lm_head.", "lm_head.")
        .prefix("vision_tower.", "model.vision_tower.")
        .prefix("multi_modal_projector.", "model.multi_modal_projector.");
  }
  to(device, dtype);
  try {
    io::bind(*this, ckpt, bo);
  } catch (const Error& e) {
    LOUPE_THROW(BadModel, "PaliGemma weights in " << file << ": " << e.what());
  }
}

torch::Tensor PaliGemmaImpl::vision_features(const torch::Tensor& pixels) {
  if (pixels.dim() != 4 || pixels.size(1) != cfg.vision.num_channels || pixels.size(2) != cfg.vision.image_size ||
      pixels.size(3) != cfg.vision.image_size)
    LOUPE_THROW(InvalidArgument, "PaliGemma: pixel values of shape " << pixels.sizes() << ", the model takes [B, "
                                                                    << cfg.vision.num_channels << ", " << cfg.vision.image_size
                                                                    << ", " << cfg.vision.image_size << "]");
  return vision_tower->forward(pixels);
}

torch::Tensor PaliGemmaImpl::image_features(const torch::Tensor& pixels) {
  return multi_modal_projector->forward(vision_features(pixels));
}

torch::Tensor PaliGemmaImpl::merge(const torch::Tensor& ids, const torch::Tensor& feats) {
  auto emb = language_model->embed(ids);  // [B, L, H]
  const auto is_image = ids.eq(cfg.image_token_id);
  const int64_t n_image = is_image.sum().item<int64_t>();
  if (n_image != feats.size(0) * feats.size(1))
    LOUPE_THROW(InvalidArgument, "PaliGemma: the prompt has " << n_image << " image tokens, the image gives "
                                                             << feats.size(0) * feats.size(1) << " features");
  // transformers >= 4.47 divide by text_config.hidden_size ** 0.5 (4.46 by the top-level
  // hidden_size, the same number in every published config of PaliGemma 1)
  const double scale = std::sqrt(static_cast<double>(cfg.text.hidden_size));
  auto f = (feats / scale).to(emb.scalar_type()).reshape({-1, emb.size(2)});
  return emb.masked_scatter(is_image.unsqueeze(-1).expand_as(emb), f);
}

torch::Tensor PaliGemmaImpl::prompt_logits(const torch::Tensor& ids, const torch::Tensor& pixels) {
  nn::DecoderInput in;
  in.inputs_embeds = merge(ids, image_features(pixels));
  in.position_ids = torch::arange(1, ids.size(1) + 1, ids.options().dtype(torch::kLong)).unsqueeze(0).expand({ids.size(0), -1});
  in.prefix_length = ids.size(1);
  return language_model->forward(in);
}

PaliGemmaImpl::Generated PaliGemmaImpl::generate(const torch::Tensor& ids, const torch::Tensor& pixels,
                                                 const nn::GenerationConfig& gen, const nn::TokenCallback& on_token,
                                                 bool keep_step_logits) {
  torch::NoGradGuard ng;
  const int64_t L = ids.size(1);
  nn::DecoderInput in;
  in.inputs_embeds = merge(ids, image_features(pixels));
  in.position_ids = torch::arange(1, L + 1, ids.options().dtype(torch::kLong)).unsqueeze(0).expand({ids.size(0), -1});
  in.prefix_length = L;
  in.last_only = true;
  nn::KVCache cache = language_model->make_cache(ids.size(0), L + gen.max_new_tokens);
  auto first = language_model->forward(in, cache).select(1, 0);  // [B, V]
  nn::Stepper st = nn::stepper(language_model, cache, first);
  Generated out;
  if (keep_step_logits) {
    auto inner = st.step;
    st.step = [&out, inner](const torch::Tensor& x) {
      auto l = inner(x);
      out.step_logits.push_back(l.select(0, 0).to(torch::kCPU, torch::kFloat32).clone());
      return l;
    };
  }
  auto r = nn::generate(st, ids.to(torch::kCPU), gen, on_token);
  out.ids = r.ids.at(0);
  if (!r.scores.empty()) out.score = r.scores[0];
  return out;
}

}  // namespace loupe::paligemma
