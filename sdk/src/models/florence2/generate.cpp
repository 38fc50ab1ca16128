#include "models/florence2/generate.h"

#include <memory>

#include "models/florence2/static_decoder.h"
#include "nn/generation.h"

namespace loupe::florence2 {

namespace {

// One decoder step for ids [N] (the last of each row), through the KV-cache decoder or, when asked,
// the fixed-shape one; reorder() moves the self-attention caches with the beams.
class Stepper {
 public:
  Stepper(Florence2Impl& m, const torch::Tensor& enc, int64_t max_len, const GenerateOptions& o) : m_(m), enc_(enc) {
    if (o.static_cache || o.cuda_graphs) fixed_ = std::make_unique<StaticDecoder>(m, enc, max_len, o.cuda_graphs);
  }
  torch::Tensor step(const torch::Tensor& ids, int64_t past_len) {  // -> float32 logits [N, V]
    if (fixed_) return fixed_->step(ids).to(torch::kFloat32);
    return m_.decode(ids.unsqueeze(1), enc_, self_, cross_, past_len).select(1, 0).to(torch::kFloat32);
  }
  void reorder(const torch::Tensor& index) {
    if (fixed_) return fixed_->reorder(index);
    for (auto& c : self_) c = {c.k.index_select(0, index), c.v.index_select(0, index)};
  }

 private:
  Florence2Impl& m_;
  torch::Tensor enc_;
  std::vector<KV> self_, cross_;
  std::unique_ptr<StaticDecoder> fixed_;
};

// The shared strategies (nn::generate) over Florence-2's decoder: the first step feeds the decoder
// start token to every row of the encoder states.
std::vector<std::vector<int64_t>> run(Florence2Impl& model, const torch::Tensor& enc, const GenerateOptions& o) {
  const auto& tc = model.cfg.text;
  const int64_t N = enc.size(0);
  const auto dev = enc.device();
  Stepper stepper(model, enc, o.max_new_tokens + 1, o);
  int64_t past = 0;
  nn::Stepper s;
  s.step = [&](const torch::Tensor& ids) {
    const auto in = ids.defined() ? ids : torch::full({N}, tc.decoder_start_token_id, torch::dtype(torch::kLong).device(dev));
    return stepper.step(in, past++);
  };
  s.reorder = [&](const torch::Tensor& index) { stepper.reorder(index.to(dev)); };
  nn::GenerationConfig g;
  g.max_new_tokens = o.max_new_tokens;
  g.min_new_tokens = o.min_new_tokens;
  g.num_beams = o.num_beams;
  g.length_penalty = o.length_penalty;
  g.early_stopping = o.early_stopping;
  g.no_repeat_ngram_size = o.no_repeat_ngram_size;
  g.forced_bos_token_id = tc.forced_bos_token_id;
  g.forced_eos_token_id = tc.forced_eos_token_id;
  if (tc.eos_token_id >= 0) g.eos_token_ids = {tc.eos_token_id};
  g.pad_token_id = tc.pad_token_id >= 0 ? tc.pad_token_id : tc.eos_token_id;
  const auto start = torch::full({o.num_beams > 1 ? int64_t{1} : N, int64_t{1}}, tc.decoder_start_token_id, torch::kLong);
  auto res = nn::generate(s, start, g, {}, o.on_step);
  // the decoder start token first, as transformers returns the sequences
  for (auto& ids : res.ids) ids.insert(ids.begin(), tc.decoder_start_token_id);
  return res.ids;
}

}  // namespace

std::vector<int64_t> generate(Florence2Impl& model, const torch::Tensor& enc, const GenerateOptions& o) {
  if (o.num_beams <= 1) return generate_greedy_batch(model, enc.slice(0, 0, 1), o).front();
  return run(model, enc.expand({o.num_beams, enc.size(1), enc.size(2)}).contiguous(), o).front();
}

std::vector<std::vector<int64_t>> generate_greedy_batch(Florence2Impl& model, const torch::Tensor& enc,
                                                        const GenerateOptions& o) {
  auto one = o;
  one.num_beams = 1;
  return run(model, enc, one);
}

}  // namespace loupe::florence2
