#include "nn/generation.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <mutex>

#include "core/error.h"

namespace loupe::nn {

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Sets every score but `token`'s to -inf and `token`'s to 0 (forced BOS / EOS).
void force(torch::Tensor& scores, int64_t token) {
  scores.fill_(kNegInf);
  scores.select(1, token).fill_(0.0f);
}

}  // namespace

// ---------------------------------------------------------------- processors (logits_process.py)

void repetition_penalty(torch::Tensor& scores, const torch::Tensor& ids, double penalty) {
  // RepetitionPenaltyLogitsProcessor: the scores of ids already present are divided by the penalty
  // when positive, multiplied when negative.
  if (penalty == 1.0 || ids.size(1) == 0) return;
  const auto s = scores.gather(1, ids);
  const auto p = torch::where(s < 0, s * penalty, s / penalty);
  scores.scatter_(1, ids, p);
}

void no_repeat_ngram(torch::Tensor& scores, const torch::Tensor& ids, int n) {
  // NoRepeatNGramLogitsProcessor: for each complete n-gram ids[i .. i+n-1] whose first n-1 ids
  // equal the last n-1 ids, ban its last id.
  const int64_t cur = ids.size(1);
  if (n <= 0 || cur + 1 < n) return;
  const int64_t m = cur - n + 1;  // complete n-grams so far
  if (m <= 0) return;
  auto match = torch::ones({ids.size(0), m}, ids.options().dtype(torch::kBool));
  for (int64_t k = 0; k + 1 < n; ++k)
    match = match & (ids.slice(1, k, k + m) == ids.slice(1, cur - n + 1 + k, cur - n + 2 + k));
  const auto ban = torch::zeros({ids.size(0), m}, scores.options()).masked_fill_(match, kNegInf);
  scores.scatter_add_(1, ids.slice(1, n - 1, n - 1 + m), ban);  // adds 0 or -inf
}

void temperature(torch::Tensor& scores, double t) {
  // TemperatureLogitsWarper
  if (!(t > 0.0)) LOUPE_THROW(InvalidArgument, "temperature must be a positive number (is " << t << ")");
  if (t != 1.0) scores.div_(t);
}

void top_k(torch::Tensor& scores, int k, int min_tokens_to_keep) {
  // TopKLogitsWarper: scores below the k-th largest become -inf.
  if (k <= 0) return;
  const int64_t kk = std::min<int64_t>(std::max(k, min_tokens_to_keep), scores.size(-1));
  const auto kth = std::get<0>(scores.topk(kk)).narrow(-1, kk - 1, 1);
  scores.masked_fill_(scores < kth, kNegInf);
}

void top_p(torch::Tensor& scores, double p, int min_tokens_to_keep) {
  // TopPLogitsWarper: ascending sort; tokens whose cumulative probability is <= 1 - top_p go,
  // except the last min_tokens_to_keep.
  if (p < 0.0 || p > 1.0) LOUPE_THROW(InvalidArgument, "top_p must be in [0, 1] (is " << p << ")");
  if (p >= 1.0) return;
  const auto sorted = scores.sort(-1, /*descending=*/false);
  const auto& sorted_logits = std::get<0>(sorted);
  const auto& sorted_indices = std::get<1>(sorted);
  const auto cumulative = sorted_logits.softmax(-1).cumsum(-1);
  auto remove = cumulative <= (1.0 - p);
  const int64_t V = scores.size(-1), keep = std::min<int64_t>(min_tokens_to_keep, V);
  remove.narrow(-1, V - keep, keep).fill_(false);
  const auto to_remove = remove.scatter(1, sorted_indices, remove);
  scores.masked_fill_(to_remove, kNegInf);
}

torch::Tensor sample(const torch::Tensor& scores, at::Generator& gen) {
  // One draw per row by the inverse of the cumulative distribution of softmax(scores), with a
  // uniform double from the generator's mt19937 (53 random bits): the same draws on every machine
  // and libtorch version (torch.multinomial's own CPU kernel changed between versions).
  const auto probs = torch::softmax(scores.to(torch::kCPU, torch::kFloat32), -1).to(torch::kFloat64).contiguous();
  const int64_t N = probs.size(0), V = probs.size(1);
  auto out = torch::empty({N}, torch::kLong);
  auto* impl = gen.get<at::CPUGeneratorImpl>();
  std::lock_guard<std::mutex> lock(gen.mutex());
  for (int64_t r = 0; r < N; ++r) {
    const double* p = probs.data_ptr<double>() + r * V;
    double total = 0.0;
    for (int64_t i = 0; i < V; ++i) total += p[i];
    const double u = static_cast<double>(impl->random64() >> 11) * (1.0 / 9007199254740992.0) * total;
    double acc = 0.0;
    int64_t pick = -1;
    for (int64_t i = 0; i < V; ++i) {
      if (p[i] <= 0.0) continue;
      acc += p[i];
      pick = i;
      if (u < acc) break;
    }
    if (pick < 0) LOUPE_THROW(InvalidArgument, "sampling: every token has probability 0 (all scores are -inf)");
    out[r] = pick;
  }
  return out.to(scores.device());
}

void process_logits(torch::Tensor& scores, const torch::Tensor& ids, int64_t prompt_length, const GenerationConfig& cfg,
                    bool warpers) {
  const int64_t cur = ids.size(1), V = scores.size(1);
  const int64_t max_len = prompt_length + cfg.max_new_tokens;
  if (cfg.repetition_penalty != 1.0) repetition_penalty(scores, ids, cfg.repetition_penalty);
  if (cfg.no_repeat_ngram_size > 0) no_repeat_ngram(scores, ids, cfg.no_repeat_ngram_size);
  if (cur - prompt_length < cfg.min_new_tokens)
    for (auto id : cfg.eos_token_ids)
      if (id >= 0 && id < V) scores.select(1, id).fill_(kNegInf);
  if (cur == 1 && cfg.forced_bos_token_id >= 0 && cfg.forced_bos_token_id < V) force(scores, cfg.forced_bos_token_id);
  if (cur == max_len - 1 && cfg.forced_eos_token_id >= 0 && cfg.forced_eos_token_id < V)
    force(scores, cfg.forced_eos_token_id);
  if (!warpers) return;
  const int min_keep = cfg.num_beams > 1 ? static_cast<int>(cfg.eos_token_ids.size()) + 1 : 1;
  if (cfg.temperature != 1.0) temperature(scores, cfg.temperature);
  if (cfg.top_k > 0) top_k(scores, cfg.top_k, min_keep);
  if (cfg.top_p < 1.0) top_p(scores, cfg.top_p, min_keep);
}

// ---------------------------------------------------------------- strategies

namespace {

struct Processing {
  const GenerationConfig& cfg;
  int64_t prompt_len, max_len;
  torch::Tensor eos;  // long [E] on the scores' device (may be empty)

  void apply(torch::Tensor& scores, const torch::Tensor& seqs) const { process_logits(scores, seqs, prompt_len, cfg, false); }
  void warp(torch::Tensor& scores, const torch::Tensor& seqs) const { process_logits(scores, seqs, prompt_len, cfg, true); }
  bool is_eos(int64_t t) const {
    return std::find(cfg.eos_token_ids.begin(), cfg.eos_token_ids.end(), t) != cfg.eos_token_ids.end();
  }
};

std::vector<int64_t> host_row(const torch::Tensor& seqs, int64_t row, int64_t from) {
  const auto r = seqs.select(0, row).slice(0, from).cpu().contiguous();
  return std::vector<int64_t>(r.data_ptr<int64_t>(), r.data_ptr<int64_t>() + r.numel());
}

// Up to and including the first stop token.
std::vector<int64_t> cut(std::vector<int64_t> ids, const Processing& pr) {
  for (size_t i = 0; i < ids.size(); ++i)
    if (pr.is_eos(ids[i])) {
      ids.resize(i + 1);
      break;
    }
  return ids;
}

torch::Tensor float_scores(const torch::Tensor& logits) {
  if (!logits.defined() || logits.dim() != 2)
    LOUPE_THROW(Internal, "generation: the model's step must return logits [rows, vocab]");
  return logits.to(torch::kFloat32, /*non_blocking=*/false, /*copy=*/true);
}

GenerationResult greedy_or_sample(Stepper& m, const torch::Tensor& prompt, const GenerationConfig& cfg,
                                  const TokenCallback& on_token, const StepCallback& on_step) {
  const int64_t B = prompt.size(0), P = prompt.size(1), max_len = P + cfg.max_new_tokens;
  auto scores = float_scores(m.step(torch::Tensor()));
  if (scores.size(0) != B) LOUPE_THROW(Internal, "generation: the model returned " << scores.size(0) << " rows for " << B);
  const auto dev = scores.device();
  Processing pr{cfg, P, max_len, torch::tensor(cfg.eos_token_ids, torch::kLong).to(dev)};
  const int64_t pad = cfg.pad_token_id >= 0 ? cfg.pad_token_id : (cfg.eos_token_ids.empty() ? 0 : cfg.eos_token_ids.front());
  at::Generator gen;
  if (cfg.do_sample) gen = at::make_generator<at::CPUGeneratorImpl>(cfg.seed);
  auto seqs = prompt.to(dev, torch::kLong);
  auto unfinished = torch::ones({B}, torch::dtype(torch::kBool).device(dev));
  // On a GPU the host looks only every few steps whether all rows are done (so it can queue work
  // ahead), unless the caller wants the ids of every step.
  const int64_t check_every = (dev.is_cpu() || on_token) ? 1 : 8;
  for (int64_t cur = P; cur < max_len; ++cur) {
    if (cur > P) scores = float_scores(m.step(seqs.select(1, cur - 1)));
    torch::Tensor next;
    if (cfg.do_sample) {
      pr.warp(scores, seqs);
      next = sample(scores, gen);
    } else {
      pr.apply(scores, seqs);
      next = scores.argmax(-1);
    }
    next = torch::where(unfinished, next, torch::full_like(next, pad));
    seqs = torch::cat({seqs, next.unsqueeze(1)}, 1);
    if (pr.eos.numel() > 0) unfinished = unfinished & (next.unsqueeze(1) != pr.eos.unsqueeze(0)).all(1);
    const int step = static_cast<int>(cur + 1 - P);
    if (on_step) on_step(step, cfg.max_new_tokens);
    if (on_token) {
      std::vector<std::vector<int64_t>> rows;
      for (int64_t b = 0; b < B; ++b) rows.push_back(cut(host_row(seqs, b, P), pr));
      on_token(step, cfg.max_new_tokens, rows);
    }
    if ((cur + 1 - P) % check_every == 0 && !unfinished.any().item<bool>()) break;
  }
  GenerationResult res;
  for (int64_t b = 0; b < B; ++b) res.ids.push_back(cut(host_row(seqs, b, P), pr));
  return res;
}

struct Hypothesis {
  std::vector<int64_t> seq;  // new ids
  float score;               // sum of log-probs / new tokens ^ length_penalty
};

GenerationResult beam_search(Stepper& m, const torch::Tensor& prompt, const GenerationConfig& cfg,
                             const TokenCallback& on_token, const StepCallback& on_step) {
  if (prompt.size(0) != 1) LOUPE_THROW(Unsupported, "beam search takes one sequence at a time (got " << prompt.size(0) << ")");
  if (cfg.do_sample) LOUPE_THROW(Unsupported, "sampling with beams (beam sample) is not supported: use num_beams 1");
  const int beams = cfg.num_beams;
  const int n_eos = static_cast<int>(cfg.eos_token_ids.size());
  const int keep = std::max(2, 1 + n_eos) * beams;  // candidates per step
  const int64_t P = prompt.size(1), max_len = P + cfg.max_new_tokens;
  auto logits = float_scores(m.step(torch::Tensor()));
  const auto dev = logits.device();
  if (logits.size(0) == 1) {  // expand the prompt's row to the beams
    m.reorder(torch::zeros({beams}, torch::kLong));
    logits = logits.expand({beams, logits.size(1)}).contiguous();
  } else if (logits.size(0) != beams) {
    LOUPE_THROW(Internal, "generation: the model returned " << logits.size(0) << " rows for " << beams << " beams");
  }
  Processing pr{cfg, P, max_len, torch::tensor(cfg.eos_token_ids, torch::kLong).to(dev)};
  // The running beams: their ids on the device, their log-prob sums here. Only the first is live at
  // the start (the others score -1e9).
  auto seqs = prompt.to(dev, torch::kLong).expand({beams, P}).contiguous();
  std::vector<float> scores(beams, -1e9f);
  scores[0] = 0.0f;
  std::vector<Hypothesis> finished;  // at most `beams`, best first
  bool improvable = true;            // transformers' is_early_stop_heuristic_unsatisfied
  auto norm = [&](int64_t new_tokens) {
    return static_cast<float>(std::pow(static_cast<double>(new_tokens), cfg.length_penalty));
  };
  for (int64_t cur = P;; ++cur) {  // cur: current length, prompt included
    if (cur > P) logits = float_scores(m.step(seqs.select(1, cur - 1)));
    auto logp = torch::log_softmax(logits, -1);
    pr.apply(logp, seqs);
    // float32 sums, as torch adds them; the best `keep` continuations over all beams (torch.topk)
    const auto acc = (logp + torch::tensor(scores).to(dev).unsqueeze(1)).reshape({-1});
    const auto top = acc.topk(keep);
    const auto top_v = std::get<0>(top).cpu().contiguous(), top_i = std::get<1>(top).cpu().contiguous();
    const int64_t V = logp.size(1);
    struct Cand {
      int beam;
      int64_t token;
      float score;
      bool done;  // a stop token, or the length limit reached
    };
    std::vector<Cand> cand;
    bool all_done = true;
    for (int r = 0; r < keep; ++r) {
      const int64_t i = top_i.data_ptr<int64_t>()[r];
      const int64_t tok = i % V;
      const bool done = pr.is_eos(tok) || cur + 1 >= max_len;
      cand.push_back({static_cast<int>(i / V), tok, top_v.data_ptr<float>()[r], done});
      all_done = all_done && done;
    }
    // Finished hypotheses: only among the best `beams` candidates, and only while they can matter.
    const bool full = static_cast<int>(finished.size()) >= beams;
    const bool accept = improvable && !(full && cfg.early_stopping == EarlyStopping::AllFinished);
    for (int r = 0; r < beams && accept; ++r) {
      if (!cand[r].done) continue;
      auto seq = host_row(seqs, cand[r].beam, P);
      seq.push_back(cand[r].token);
      finished.push_back({std::move(seq), cand[r].score / norm(cur + 1 - P)});
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
    if (on_step) on_step(static_cast<int>(cur + 1 - P), cfg.max_new_tokens);
    if (on_token) {
      auto best = host_row(seqs, origin[0], P);
      best.push_back(tokens[0]);
      on_token(static_cast<int>(cur + 1 - P), cfg.max_new_tokens, {best});
    }
    // Stopping rules of transformers' beam search.
    if (static_cast<int>(finished.size()) >= beams) {
      const int64_t best_len =
          (cfg.early_stopping == EarlyStopping::Never && cfg.length_penalty > 0.0) ? max_len - P : cur + 1 - P;
      improvable = improvable && scores.front() / norm(best_len) > finished.back().score;
    }
    const bool all_finished = static_cast<int>(finished.size()) >= beams && cfg.early_stopping == EarlyStopping::AllFinished;
    if (!improvable || all_finished || all_done) break;
    const auto idx = torch::tensor(origin, torch::dtype(torch::kLong));
    m.reorder(idx);
    const auto didx = idx.to(dev);
    seqs = torch::cat({seqs.index_select(0, didx), torch::tensor(tokens, torch::dtype(torch::kLong)).to(dev).unsqueeze(1)}, 1);
  }
  GenerationResult res;
  if (finished.empty()) {
    res.ids.push_back(host_row(seqs, 0, P));
  } else {
    res.ids.push_back(finished.front().seq);
    res.scores.push_back(finished.front().score);
  }
  return res;
}

}  // namespace

GenerationResult generate(Stepper& model, const torch::Tensor& prompt, const GenerationConfig& cfg,
                          const TokenCallback& on_token, const StepCallback& on_step) {
  if (!model.step) LOUPE_THROW(Internal, "generation: no step function");
  if (!prompt.defined() || prompt.dim() != 2 || prompt.size(0) < 1)
    LOUPE_THROW(InvalidArgument, "generation: the prompt ids must be [batch, length] with batch >= 1");
  if (cfg.max_new_tokens < 1) LOUPE_THROW(InvalidArgument, "max_new_tokens must be at least 1 (is " << cfg.max_new_tokens << ")");
  if (cfg.min_new_tokens < 0) LOUPE_THROW(InvalidArgument, "min_new_tokens must not be negative");
  if (cfg.num_beams < 1) LOUPE_THROW(InvalidArgument, "num_beams must be at least 1 (is " << cfg.num_beams << ")");
  if (cfg.repetition_penalty <= 0.0)
    LOUPE_THROW(InvalidArgument, "repetition_penalty must be positive (is " << cfg.repetition_penalty << ")");
  if (cfg.do_sample && !(cfg.temperature > 0.0))
    LOUPE_THROW(InvalidArgument, "temperature must be positive when sampling (is " << cfg.temperature << ")");
  if (cfg.num_beams > 1) return beam_search(model, prompt, cfg, on_token, on_step);
  return greedy_or_sample(model, prompt, cfg, on_token, on_step);
}

}  // namespace loupe::nn
