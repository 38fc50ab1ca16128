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

struct Hyp {
  std::vector<int64_t> seq;
  double score;
};

}  // namespace

std::vector<int64_t> generate(Florence2Impl& model, const torch::Tensor& enc, const GenerateOptions& o) {
  const auto& tc = model.cfg.text;
  const int beams = std::max(1, o.num_beams);
  const int64_t max_len = o.max_new_tokens + 1;  // decoder start + new tokens
  const auto dev = enc.device();
  auto enc_b = enc.expand({beams, enc.size(1), enc.size(2)}).contiguous();
  std::vector<KV> self_cache, cross_cache;
  std::vector<std::vector<int64_t>> seqs(beams, std::vector<int64_t>{tc.decoder_start_token_id});
  std::vector<double> scores(beams, 0.0);
  for (int b = 1; b < beams; ++b) scores[b] = -1e9;  // the first step expands beam 0 only
  std::vector<Hyp> done;
  auto finished_score = [&](const std::vector<int64_t>& s, double sum) {
    return sum / std::pow(static_cast<double>(s.size()), o.length_penalty);
  };
  torch::Tensor last = torch::full({beams, 1}, tc.decoder_start_token_id, torch::dtype(torch::kLong).device(dev));
  for (int64_t cur = 1; cur < max_len + 1; ++cur) {
    auto logits = model.decode(last, enc_b, self_cache, cross_cache, cur - 1).select(1, 0);
    auto logp = torch::log_softmax(logits.to(torch::kFloat32), -1).cpu().contiguous();
    const int64_t V = logp.size(1);
    float* lp = logp.data_ptr<float>();
    for (int b = 0; b < beams; ++b) {
      float* row = lp + b * V;
      ban_repeated_ngrams(seqs[b], o.no_repeat_ngram_size, row);
      if (cur <= o.min_new_tokens && tc.eos_token_id >= 0 && tc.eos_token_id < V) row[tc.eos_token_id] = kNegInf;
      if (cur == 1 && tc.forced_bos_token_id >= 0) force(row, V, tc.forced_bos_token_id);
      if (cur == max_len - 1 && tc.forced_eos_token_id >= 0) force(row, V, tc.forced_eos_token_id);
    }
    // candidates: the best 2 * beams continuations over all beams
    std::vector<std::pair<double, int64_t>> cand;  // (total score, beam * V + token)
    cand.reserve(static_cast<size_t>(beams) * V);
    for (int b = 0; b < beams; ++b)
      for (int64_t v = 0; v < V; ++v)
        if (lp[b * V + v] != kNegInf) cand.push_back({scores[b] + lp[b * V + v], b * V + v});
    const size_t k = std::min(cand.size(), static_cast<size_t>(2 * beams));
    std::partial_sort(cand.begin(), cand.begin() + k, cand.end(), [](auto& a, auto& b) { return a.first > b.first; });
    std::vector<std::vector<int64_t>> next_seqs;
    std::vector<double> next_scores;
    std::vector<int64_t> origin, tokens;
    for (size_t r = 0; r < k && static_cast<int>(next_seqs.size()) < beams; ++r) {
      const int b = static_cast<int>(cand[r].second / V);
      const int64_t tok = cand[r].second % V;
      auto s = seqs[b];
      s.push_back(tok);
      if (tok == tc.eos_token_id) {
        if (static_cast<int>(r) < beams) done.push_back({s, finished_score(s, cand[r].first)});
        continue;
      }
      next_seqs.push_back(std::move(s));
      next_scores.push_back(cand[r].first);
      origin.push_back(b);
      tokens.push_back(tok);
    }
    if (o.on_step) o.on_step(static_cast<int>(cur), static_cast<int>(max_len - 1));
    // Stop when enough hypotheses are finished and no running beam can beat the worst of them.
    std::sort(done.begin(), done.end(), [](const Hyp& a, const Hyp& b) { return a.score > b.score; });
    if (static_cast<int>(done.size()) > beams) done.resize(beams);
    const bool full = static_cast<int>(done.size()) >= beams;
    if (next_seqs.empty() || cur >= max_len - 1) break;
    if (full) {
      const double best_running = next_scores.front() / std::pow(static_cast<double>(next_seqs.front().size()), o.length_penalty);
      if (best_running <= done.back().score) break;
    }
    while (static_cast<int>(next_seqs.size()) < beams) {  // keep the batch shape
      next_seqs.push_back(next_seqs.back());
      next_scores.push_back(-1e9);
      origin.push_back(origin.back());
      tokens.push_back(tokens.back());
    }
    auto idx = torch::tensor(origin, torch::dtype(torch::kLong)).to(dev);
    for (auto& c : self_cache) c = {c.k.index_select(0, idx), c.v.index_select(0, idx)};
    seqs = std::move(next_seqs);
    scores = std::move(next_scores);
    last = torch::tensor(tokens, torch::dtype(torch::kLong)).to(dev).unsqueeze(1);
  }
  if (done.empty()) {  // nothing finished: the best running beam
    size_t best = 0;
    for (size_t b = 1; b < seqs.size(); ++b)
      if (scores[b] > scores[best]) best = b;
    return seqs[best];
  }
  return done.front().seq;
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
