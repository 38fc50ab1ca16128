#include "models/florence2/generate.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>

#include "models/florence2/static_decoder.h"

namespace loupe::florence2 {

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Sets every score but `token`'s to -inf and `token`'s to 0 (forced BOS / EOS).
void force(torch::Tensor& scores, int64_t token) {
  scores.fill_(kNegInf);
  scores.select(1, token).fill_(0.0f);
}

// Masks scores [N, V] (float32, on the model's device) as transformers' logits processors do, in
// their order: no-repeat n-grams, minimum new tokens, forced BOS after the decoder start, forced EOS
// at the last step. `seqs` [N, cur] holds each row's ids so far, on the same device: everything
// stays there, so no step waits for the host.
void process_scores(torch::Tensor& scores, const torch::Tensor& seqs, int64_t cur, int64_t max_len, const TextConfig& tc,
                    const GenerateOptions& o) {
  const int64_t n = o.no_repeat_ngram_size, V = scores.size(1);
  // NoRepeatNGramLogitsProcessor: for each complete n-gram seqs[i .. i+n-1] whose first n-1 ids
  // equal the last n-1 ids, ban its last id.
  if (n > 0 && cur >= n) {
    const int64_t m = cur - n + 1;  // complete n-grams so far
    auto match = torch::ones({seqs.size(0), m}, seqs.options().dtype(torch::kBool));
    for (int64_t k = 0; k + 1 < n; ++k)
      match = match & (seqs.slice(1, k, k + m) == seqs.slice(1, cur - n + 1 + k, cur - n + 2 + k));
    const auto ban = torch::zeros({seqs.size(0), m}, scores.options()).masked_fill_(match, kNegInf);
    scores.scatter_add_(1, seqs.slice(1, n - 1, n - 1 + m), ban);  // adds 0 or -inf
  }
  if (cur <= o.min_new_tokens && tc.eos_token_id >= 0 && tc.eos_token_id < V) scores.select(1, tc.eos_token_id).fill_(kNegInf);
  if (cur == 1 && tc.forced_bos_token_id >= 0) force(scores, tc.forced_bos_token_id);
  if (cur == max_len - 1 && tc.forced_eos_token_id >= 0) force(scores, tc.forced_eos_token_id);
}

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

struct Hypothesis {
  std::vector<int64_t> seq;
  float score;  // sum of log-probs / new tokens ^ length_penalty
};

std::vector<int64_t> row_ids(const torch::Tensor& seqs, int64_t row) {
  const auto r = seqs.select(0, row).cpu().contiguous();
  return std::vector<int64_t>(r.data_ptr<int64_t>(), r.data_ptr<int64_t>() + r.numel());
}

}  // namespace

std::vector<int64_t> generate(Florence2Impl& model, const torch::Tensor& enc, const GenerateOptions& o) {
  if (o.num_beams <= 1) return generate_greedy_batch(model, enc.slice(0, 0, 1), o).front();
  const auto& tc = model.cfg.text;
  const int beams = o.num_beams;
  const int keep = 2 * beams;  // candidates per step: max(2, 1 + number of EOS tokens) * beams
  const int64_t max_len = o.max_new_tokens + 1;  // decoder start + new tokens
  const auto dev = enc.device();
  Stepper stepper(model, enc.expand({beams, enc.size(1), enc.size(2)}).contiguous(), max_len, o);
  // The running beams: their ids on the device, their log-prob sums here. Only the first is live at
  // the start (the others score -1e9).
  auto seqs = torch::full({beams, 1}, tc.decoder_start_token_id, torch::dtype(torch::kLong).device(dev));
  std::vector<float> scores(beams, -1e9f);
  scores[0] = 0.0f;
  std::vector<Hypothesis> finished;  // at most `beams`, best first
  bool improvable = true;            // transformers' is_early_stop_heuristic_unsatisfied
  auto norm = [&](int64_t new_tokens) { return static_cast<float>(std::pow(static_cast<double>(new_tokens), o.length_penalty)); };
  for (int64_t cur = 1;; ++cur) {  // cur: current length, decoder start included
    auto logp = torch::log_softmax(stepper.step(seqs.select(1, cur - 1), cur - 1), -1);
    process_scores(logp, seqs, cur, max_len, tc, o);
    // float32 sums, as torch adds them; the best `keep` continuations over all beams (torch.topk)
    const auto acc = (logp + torch::tensor(scores).to(dev).unsqueeze(1)).reshape({-1});
    const auto top = acc.topk(keep);
    const auto top_v = std::get<0>(top).cpu().contiguous(), top_i = std::get<1>(top).cpu().contiguous();
    const int64_t V = logp.size(1);
    struct Cand {
      int beam;
      int64_t token;
      float score;
      bool done;  // EOS, or the length limit reached
    };
    std::vector<Cand> cand;
    bool all_done = true;
    for (int r = 0; r < keep; ++r) {
      const int64_t i = top_i.data_ptr<int64_t>()[r];
      const int64_t tok = i % V;
      const bool done = tok == tc.eos_token_id || cur + 1 >= max_len;
      cand.push_back({static_cast<int>(i / V), tok, top_v.data_ptr<float>()[r], done});
      all_done = all_done && done;
    }
    // Finished hypotheses: only among the best `beams` candidates, and only while they can matter.
    const bool full = static_cast<int>(finished.size()) >= beams;
    const bool accept = improvable && !(full && o.early_stopping == EarlyStopping::AllFinished);
    for (int r = 0; r < beams && accept; ++r) {
      if (!cand[r].done) continue;
      auto seq = row_ids(seqs, cand[r].beam);
      seq.push_back(cand[r].token);
      finished.push_back({std::move(seq), cand[r].score / norm(cur)});
    }
    std::stable_sort(finished.begin(), finished.end(),
                     [](const Hypothesis& a, const Hypothesis& b) { return a.score > b.score; });
    if (static_cast<int>(finished.size()) > beams) finished.resize(beams);
    // The next running beams: the best `beams` candidates, finished ones pushed down by -1e9.
    std::vector<int> next(keep);
    for (int r = 0; r < keep; ++r) next[r] = r;
    auto run_score = [&](int r) { return cand[r].score + (cand[r].done ? -1.0e9f : 0.0f); };
    std::stable_sort(next.begin(), next.end(), [&](int a, int b) { return run_score(a) > run_score(b); });
    std::vector<int64_t> origin, tokens;
    for (int k = 0; k < beams; ++k) {
      origin.push_back(cand[next[k]].beam);
      tokens.push_back(cand[next[k]].token);
      scores[k] = run_score(next[k]);
    }
    if (o.on_step) o.on_step(static_cast<int>(cur), static_cast<int>(max_len - 1));
    // Stopping rules of transformers' beam search.
    if (static_cast<int>(finished.size()) >= beams) {
      const int64_t best_len = (o.early_stopping == EarlyStopping::Never && o.length_penalty > 0.0) ? max_len - 1 : cur;
      improvable = improvable && scores.front() / norm(best_len) > finished.back().score;
    }
    const bool all_finished = static_cast<int>(finished.size()) >= beams && o.early_stopping == EarlyStopping::AllFinished;
    if (!improvable || all_finished || all_done) break;
    auto idx = torch::tensor(origin, torch::dtype(torch::kLong)).to(dev);
    stepper.reorder(idx);
    seqs = torch::cat({seqs.index_select(0, idx), torch::tensor(tokens, torch::dtype(torch::kLong)).to(dev).unsqueeze(1)}, 1);
  }
  return finished.empty() ? row_ids(seqs, 0) : finished.front().seq;
}

std::vector<std::vector<int64_t>> generate_greedy_batch(Florence2Impl& model, const torch::Tensor& enc,
                                                        const GenerateOptions& o) {
  const auto& tc = model.cfg.text;
  const int64_t B = enc.size(0);
  const int64_t max_len = o.max_new_tokens + 1;
  const auto dev = enc.device();
  Stepper stepper(model, enc, max_len, o);
  const int64_t filler = tc.pad_token_id >= 0 ? tc.pad_token_id : tc.eos_token_id;
  // Everything stays on the device: the next ids feed the next step directly, and the host only
  // looks every few steps whether all rows have finished, so it can queue work ahead of the GPU.
  auto seqs = torch::full({B, 1}, tc.decoder_start_token_id, torch::dtype(torch::kLong).device(dev));
  auto finished = torch::zeros({B}, torch::dtype(torch::kBool).device(dev));
  constexpr int64_t kCheckEvery = 8;
  for (int64_t cur = 1; cur < max_len; ++cur) {
    auto scores = stepper.step(seqs.select(1, cur - 1), cur - 1);
    process_scores(scores, seqs, cur, max_len, tc, o);  // argmax of processed logits, as greedy search does
    const auto next = torch::where(finished, torch::full_like(finished, filler, torch::kLong), scores.argmax(-1));
    seqs = torch::cat({seqs, next.unsqueeze(1)}, 1);
    if (tc.eos_token_id >= 0) finished = finished | (next == tc.eos_token_id);
    if (o.on_step) o.on_step(static_cast<int>(cur), static_cast<int>(max_len - 1));
    if (cur > o.min_new_tokens && cur % kCheckEvery == 0 && finished.all().item<bool>()) break;
  }
  // Each row up to and including its first EOS after the decoder start.
  const auto host = seqs.cpu().contiguous();
  std::vector<std::vector<int64_t>> out(B);
  for (int64_t b = 0; b < B; ++b) {
    const int64_t* p = host.data_ptr<int64_t>() + b * host.size(1);
    int64_t len = host.size(1);
    for (int64_t t = 1; t < host.size(1); ++t)
      if (p[t] == tc.eos_token_id) {
        len = t + 1;
        break;
      }
    out[b].assign(p, p + len);
  }
  return out;
}

}  // namespace loupe::florence2
