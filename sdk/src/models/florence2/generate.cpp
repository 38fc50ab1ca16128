#include "models/florence2/generate.h"

#include <algorithm>
#include <limits>
#include <map>

namespace loupe::florence2 {

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Bans tokens that would repeat an n-gram already in `seq` (reference: NoRepeatNGramLogitsProcessor).
void ban_repeated_ngrams(const std::vector<int64_t>& seq, int n, float* logprobs) {
  if (n <= 0 || static_cast<int>(seq.size()) + 1 < n) return;
  const size_t prefix_start = seq.size() - (n - 1);
  for (size_t i = 0; i + n <= seq.size(); ++i) {
    bool same = true;
    for (int k = 0; k < n - 1 && same; ++k) same = seq[i + k] == seq[prefix_start + k];
    if (same) logprobs[seq[i + n - 1]] = kNegInf;
  }
}

void force(float* logprobs, int64_t vocab, int64_t token) {
  for (int64_t v = 0; v < vocab; ++v)
    if (v != token) logprobs[v] = kNegInf;
  logprobs[token] = 0.0f;
}

// Masks one beam's log-probs as transformers' logits processors do, in their order: no-repeat
// n-grams, minimum new tokens, forced BOS after the decoder start, forced EOS at the last step.
void process_row(const std::vector<int64_t>& seq, int64_t cur, int64_t max_len, const TextConfig& tc,
                 const GenerateOptions& o, float* row, int64_t V) {
  ban_repeated_ngrams(seq, o.no_repeat_ngram_size, row);
  if (cur <= o.min_new_tokens && tc.eos_token_id >= 0 && tc.eos_token_id < V) row[tc.eos_token_id] = kNegInf;
  if (cur == 1 && tc.forced_bos_token_id >= 0) force(row, V, tc.forced_bos_token_id);
  if (cur == max_len - 1 && tc.forced_eos_token_id >= 0) force(row, V, tc.forced_eos_token_id);
}

struct Beam {
  std::vector<int64_t> seq;
  float score;  // sum of log-probs (running) or normalised score (finished)
};

}  // namespace

std::vector<int64_t> generate(Florence2Impl& model, const torch::Tensor& enc, const GenerateOptions& o) {
  if (o.num_beams <= 1) return generate_greedy_batch(model, enc.slice(0, 0, 1), o).front();
  const auto& tc = model.cfg.text;
  const int beams = o.num_beams;
  const int keep = 2 * beams;  // candidates per step: max(2, 1 + number of EOS tokens) * beams
  const int64_t max_len = o.max_new_tokens + 1;  // decoder start + new tokens
  const auto dev = enc.device();
  auto enc_b = enc.expand({beams, enc.size(1), enc.size(2)}).contiguous();
  std::vector<KV> self_cache, cross_cache;
  // Running beams; only the first one is live at the start (the others score -1e9).
  std::vector<Beam> running(beams, Beam{{tc.decoder_start_token_id}, -1e9f});
  running[0].score = 0.0f;
  std::vector<Beam> finished;  // at most `beams`, best first
  bool improvable = true;      // transformers' is_early_stop_heuristic_unsatisfied
  auto norm = [&](int64_t new_tokens) { return static_cast<float>(std::pow(static_cast<double>(new_tokens), o.length_penalty)); };
  torch::Tensor last = torch::full({beams, 1}, tc.decoder_start_token_id, torch::dtype(torch::kLong).device(dev));
  for (int64_t cur = 1;; ++cur) {  // cur: current length, decoder start included
    auto logits = model.decode(last, enc_b, self_cache, cross_cache, cur - 1).select(1, 0);
    auto logp = torch::log_softmax(logits.to(torch::kFloat32), -1).cpu().contiguous();
    const int64_t V = logp.size(1);
    float* lp = logp.data_ptr<float>();
    for (int b = 0; b < beams; ++b) {
      float* row = lp + b * V;
      process_row(running[b].seq, cur, max_len, tc, o, row, V);
      for (int64_t v = 0; v < V; ++v) row[v] += running[b].score;  // float32, as torch adds them
    }
    // The best `keep` continuations over all beams (torch.topk over beams * V).
    std::vector<int64_t> order(static_cast<size_t>(beams) * V);
    for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int64_t>(i);
    std::partial_sort(order.begin(), order.begin() + keep, order.end(),
                      [&](int64_t a, int64_t b) { return lp[a] > lp[b] || (lp[a] == lp[b] && a < b); });
    struct Cand {
      int beam;
      int64_t token;
      float score;
      bool done;  // EOS, or the length limit reached
    };
    std::vector<Cand> cand;
    bool all_done = true;
    for (int r = 0; r < keep; ++r) {
      const int64_t i = order[r];
      const int64_t tok = i % V;
      const bool done = tok == tc.eos_token_id || cur + 1 >= max_len;
      cand.push_back({static_cast<int>(i / V), tok, lp[i], done});
      all_done = all_done && done;
    }
    // Finished hypotheses: only among the best `beams` candidates, and only while they can matter.
    const bool full = static_cast<int>(finished.size()) >= beams;
    const bool accept = improvable && !(full && o.early_stopping == EarlyStopping::AllFinished);
    for (int r = 0; r < beams && accept; ++r) {
      if (!cand[r].done) continue;
      auto seq = running[cand[r].beam].seq;
      seq.push_back(cand[r].token);
      finished.push_back({std::move(seq), cand[r].score / norm(cur)});
    }
    std::stable_sort(finished.begin(), finished.end(), [](const Beam& a, const Beam& b) { return a.score > b.score; });
    if (static_cast<int>(finished.size()) > beams) finished.resize(beams);
    // The next running beams: the best `beams` candidates, finished ones pushed down by -1e9.
    std::vector<int> next(keep);
    for (int r = 0; r < keep; ++r) next[r] = r;
    auto run_score = [&](int r) { return cand[r].score + (cand[r].done ? -1.0e9f : 0.0f); };
    std::stable_sort(next.begin(), next.end(), [&](int a, int b) { return run_score(a) > run_score(b); });
    std::vector<Beam> next_running;
    std::vector<int64_t> origin, tokens;
    for (int k = 0; k < beams; ++k) {
      const Cand& c = cand[next[k]];
      auto seq = running[c.beam].seq;
      seq.push_back(c.token);
      next_running.push_back({std::move(seq), run_score(next[k])});
      origin.push_back(c.beam);
      tokens.push_back(c.token);
    }
    if (o.on_step) o.on_step(static_cast<int>(cur), static_cast<int>(max_len - 1));
    // Stopping rules of transformers' beam search.
    if (static_cast<int>(finished.size()) >= beams) {
      const int64_t best_len = (o.early_stopping == EarlyStopping::Never && o.length_penalty > 0.0) ? max_len - 1 : cur;
      const float best_running = next_running.front().score / norm(best_len);
      improvable = improvable && best_running > finished.back().score;
    }
    const bool all_finished = static_cast<int>(finished.size()) >= beams && o.early_stopping == EarlyStopping::AllFinished;
    if (!improvable || all_finished || all_done) break;
    auto idx = torch::tensor(origin, torch::dtype(torch::kLong)).to(dev);
    for (auto& c : self_cache) c = {c.k.index_select(0, idx), c.v.index_select(0, idx)};
    running = std::move(next_running);
    last = torch::tensor(tokens, torch::dtype(torch::kLong)).to(dev).unsqueeze(1);
  }
  return finished.empty() ? running.front().seq : finished.front().seq;
}

std::vector<std::vector<int64_t>> generate_greedy_batch(Florence2Impl& model, const torch::Tensor& enc,
                                                        const GenerateOptions& o) {
  const auto& tc = model.cfg.text;
  const int64_t B = enc.size(0);
  const int64_t max_len = o.max_new_tokens + 1;
  const auto dev = enc.device();
  std::vector<KV> self_cache, cross_cache;
  std::vector<std::vector<int64_t>> seqs(B, std::vector<int64_t>{tc.decoder_start_token_id});
  std::vector<bool> finished(B, false);
  const int64_t filler = tc.pad_token_id >= 0 ? tc.pad_token_id : tc.eos_token_id;
  torch::Tensor last = torch::full({B, 1}, tc.decoder_start_token_id, torch::dtype(torch::kLong).device(dev));
  for (int64_t cur = 1; cur < max_len; ++cur) {
    auto logits = model.decode(last, enc, self_cache, cross_cache, cur - 1).select(1, 0);
    auto logp = torch::log_softmax(logits.to(torch::kFloat32), -1).cpu().contiguous();
    const int64_t V = logp.size(1);
    float* lp = logp.data_ptr<float>();
    std::vector<int64_t> next(B, filler);
    for (int64_t b = 0; b < B; ++b) {
      if (finished[b]) continue;
      float* row = lp + b * V;
      ban_repeated_ngrams(seqs[b], o.no_repeat_ngram_size, row);
      if (cur <= o.min_new_tokens && tc.eos_token_id >= 0 && tc.eos_token_id < V) row[tc.eos_token_id] = kNegInf;
      if (cur == 1 && tc.forced_bos_token_id >= 0) force(row, V, tc.forced_bos_token_id);
      if (cur == max_len - 1 && tc.forced_eos_token_id >= 0) force(row, V, tc.forced_eos_token_id);
      next[b] = std::max_element(row, row + V) - row;
      seqs[b].push_back(next[b]);
      if (next[b] == tc.eos_token_id) finished[b] = true;
    }
    if (o.on_step) o.on_step(static_cast<int>(cur), static_cast<int>(max_len - 1));
    if (std::all_of(finished.begin(), finished.end(), [](bool f) { return f; })) break;
    last = torch::tensor(next, torch::dtype(torch::kLong)).to(dev).unsqueeze(1);
  }
  return seqs;
}

}  // namespace loupe::florence2
