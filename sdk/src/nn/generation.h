// Decoding strategies, one implementation for every autoregressive model (decoder-only LMs and
// encoder-decoders alike), with the semantics of transformers' generate(): greedy, sampled
// (temperature, top-k, top-p) and beam search (2 x num_beams candidates a step, or (1 + stop
// tokens) x num_beams; finished hypotheses scored by log-prob sum / new tokens ^ length_penalty;
// early_stopping false / true / "never"); the logits processors in transformers' order (repetition
// penalty, no-repeat n-grams, min new tokens, forced BOS / EOS, then the sampling warpers); several
// stop tokens; finished rows padded with pad_token_id. Checked against transformers 4.46's
// generate() on Gemma, Gemma 2 and OPT (tests/models/test_decoder_lm_parity.cpp) and against a
// transcription of the vectorised beam search of >= 4.50 on Florence-2
// (tests/models/test_florence2_parity.cpp). The model is seen only through a Stepper (logits for
// the next token of each running row; reorder for beams), so the strategies know no model.
//
// Sampling is portable, and therefore not torch.multinomial's draws: one CPU generator seeded with
// `seed` (libtorch's mt19937, as torch.manual_seed(seed)) gives one 53-bit uniform per row and
// step, inverted through the cumulative fp32 probabilities in double; so a seed gives the same ids
// on every machine, device and libtorch version (torch.multinomial's CPU kernel changed between
// versions).
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include <torch/torch.h>

namespace loupe::nn {

// When beam search stops (transformers' GenerationConfig.early_stopping): Heuristic (false) when no
// running beam can beat the worst finished one at its current length; AllFinished (true) as soon as
// num_beams hypotheses are finished; Never ("never") only when no better one can come at any length.
enum class EarlyStopping { Heuristic, AllFinished, Never };

struct GenerationConfig {
  int max_new_tokens = 20;
  int min_new_tokens = 0;  // stop tokens are banned before this many new tokens
  // Beam search (num_beams > 1; batch 1)
  int num_beams = 1;
  double length_penalty = 1.0;
  EarlyStopping early_stopping = EarlyStopping::Heuristic;
  // Sampling (do_sample; num_beams 1)
  bool do_sample = false;
  double temperature = 1.0;
  int top_k = 50;       // 0 = off (transformers' default is 50)
  double top_p = 1.0;   // 1 = off
  uint64_t seed = 0;
  // Processors
  double repetition_penalty = 1.0;  // 1 = off; over the whole sequence, prompt included
  int no_repeat_ngram_size = 0;
  int64_t forced_bos_token_id = -1;  // forced when the sequence has length 1 (encoder-decoders)
  int64_t forced_eos_token_id = -1;  // forced at the last step
  // Stop tokens and the filler of finished rows (-1: the first stop token)
  std::vector<int64_t> eos_token_ids;
  int64_t pad_token_id = -1;
};

// The model as the strategies see it.
struct Stepper {
  // Logits [N, V] (any float dtype, any device) for the next token of each running row, given each
  // row's newest id [N] (long). The first call gets an undefined tensor: the model returns the
  // logits after the prompt it was given (decoder-only: the prefill; encoder-decoders: the step of
  // the decoder start). N may be 1 on the first call of beam search, which then expands the rows
  // with reorder(zeros(num_beams)).
  std::function<torch::Tensor(const torch::Tensor& ids)> step;
  // Rows follow index [N'] (long, on the CPU): beams, finished rows dropped, expansion.
  std::function<void(const torch::Tensor& index)> reorder;
};

// Called after every new token: step (1-based), the most steps, and each row's new ids so far (for
// beam search: the best running beam's). Throw to stop (cancellation): the exception propagates.
using TokenCallback = std::function<void(int step, int total, const std::vector<std::vector<int64_t>>& new_ids)>;

// Called after every new token with (step, total) only: no ids leave the device (progress bars).
using StepCallback = std::function<void(int step, int total)>;

struct GenerationResult {
  // Per row: the new ids (the prompt not included), up to and including the first stop token.
  std::vector<std::vector<int64_t>> ids;
  std::vector<float> scores;  // beam search: the finished hypothesis' score; else empty
};

// `prompt` [B, P] long (CPU): each row's ids so far, which the processors see (repetition penalty,
// n-grams, lengths); for an encoder-decoder, the decoder start. Greedy / sampling for any B; beam
// search for B = 1.
// on_step is called before on_token when both are set.
GenerationResult generate(Stepper& model, const torch::Tensor& prompt, const GenerationConfig& cfg,
                          const TokenCallback& on_token = {}, const StepCallback& on_step = {});

// The processors on their own, as transformers' classes do them, on scores [N, V] (fp32, in place)
// with each row's ids so far `ids` [N, cur] (long, same device).
void repetition_penalty(torch::Tensor& scores, const torch::Tensor& ids, double penalty);
void no_repeat_ngram(torch::Tensor& scores, const torch::Tensor& ids, int n);
void temperature(torch::Tensor& scores, double t);
void top_k(torch::Tensor& scores, int k, int min_tokens_to_keep = 1);
void top_p(torch::Tensor& scores, double p, int min_tokens_to_keep = 1);
// generate()'s processing of scores [N, V] (fp32, in place) for rows `ids` [N, cur] whose first
// `prompt_length` ids are the prompt: the processors in transformers' order (repetition penalty,
// no-repeat n-grams, min new tokens, forced BOS, forced EOS at prompt_length + max_new_tokens - 1);
// with `warpers`, then temperature, top-k and top-p (keeping min_tokens_to_keep as generate() does:
// 1, or eos count + 1 with beams).
void process_logits(torch::Tensor& scores, const torch::Tensor& ids, int64_t prompt_length, const GenerationConfig& cfg,
                    bool warpers);
// One draw per row from softmax(scores) as torch.multinomial(probs, 1) with `gen` (CPU, fp32).
torch::Tensor sample(const torch::Tensor& scores, at::Generator& gen);

}  // namespace loupe::nn
