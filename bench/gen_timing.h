// Generation timings as bench/lm_reference.py takes them from transformers' generate(): every timed
// generate() is clocked at each new token (here the token callback, there generate()'s streamer,
// both called as each token is chosen): first_token_s (the prefix: vision, projector, the prompt
// through the language model and the first token), per_token_ms ((last token - first token) /
// (tokens - 1): one decoding step of the whole batch), per_token_cpu_ms (the same in process CPU
// time, all threads), total_s; a case reports the median of each over its runs (statistics.median:
// the mean of the middle two for an even count), and the new ids of every row of the last run.
#pragma once
#include <algorithm>
#include <chrono>
#include <ctime>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "nn/generation.h"

namespace loupe::bench {

inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n == 0 ? 0.0 : n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

struct GenRun {
  double first_token_s = 0, total_s = 0, per_token_ms = 0, per_token_cpu_ms = 0, prefix_cpu_s = 0;
  std::vector<std::vector<int64_t>> ids;  // each row's new ids
};

// Runs gen(callback) (a generate() of `tokens` new tokens that calls the callback after each one) and
// clocks it.
inline GenRun time_generate(int tokens, const std::function<void(const nn::TokenCallback&)>& gen) {
  using clock = std::chrono::steady_clock;
  std::vector<clock::time_point> wall;
  std::vector<std::clock_t> cpu;
  GenRun r;
  const auto t0 = clock::now();
  const std::clock_t c0 = std::clock();
  gen([&](int, int, const std::vector<std::vector<int64_t>>& new_ids) {
    wall.push_back(clock::now());
    cpu.push_back(std::clock());
    r.ids = new_ids;
  });
  const auto t1 = clock::now();
  if (static_cast<int>(wall.size()) != tokens)
    throw std::runtime_error("generate() gave " + std::to_string(wall.size()) + " tokens, " + std::to_string(tokens) +
                             " asked");
  auto s = [](clock::time_point a, clock::time_point b) { return std::chrono::duration<double>(b - a).count(); };
  auto c = [](std::clock_t a, std::clock_t b) { return static_cast<double>(b - a) / CLOCKS_PER_SEC; };
  r.first_token_s = s(t0, wall.front());
  r.total_s = s(t0, t1);
  r.per_token_ms = s(wall.front(), wall.back()) / (tokens - 1) * 1000;
  r.per_token_cpu_ms = c(cpu.front(), cpu.back()) / (tokens - 1) * 1000;
  r.prefix_cpu_s = c(c0, cpu.front());
  return r;
}

// The case's figures (medians), every run's, and the last run's ids.
inline nlohmann::json summarize(const std::vector<GenRun>& runs, int batch, int tokens) {
  nlohmann::json j, all = nlohmann::json::array();
  std::vector<double> ft, tt, pt, pc, fc;
  for (const auto& r : runs) {
    all.push_back({{"first_token_s", r.first_token_s}, {"total_s", r.total_s}, {"per_token_ms", r.per_token_ms},
                   {"per_token_cpu_ms", r.per_token_cpu_ms}, {"prefix_cpu_s", r.prefix_cpu_s}});
    ft.push_back(r.first_token_s), tt.push_back(r.total_s), pt.push_back(r.per_token_ms);
    pc.push_back(r.per_token_cpu_ms), fc.push_back(r.prefix_cpu_s);
  }
  j["first_token_s"] = median(ft);
  j["total_s"] = median(tt);
  j["per_token_ms"] = median(pt);
  j["per_token_cpu_ms"] = median(pc);
  j["prefix_cpu_s"] = median(fc);
  j["per_token_per_image_ms"] = median(pt) / batch;
  j["batch"] = batch;
  j["new_tokens"] = tokens;
  j["runs"] = all;
  j["ids"] = runs.empty() ? nlohmann::json::array() : nlohmann::json(runs.back().ids);
  return j;
}

// "1,8" -> {1, 8}
inline std::vector<int> int_list(const std::string& s) {
  std::vector<int> out;
  size_t i = 0;
  while (i <= s.size()) {
    const size_t j = std::min(s.find(',', i), s.size());
    if (j > i) out.push_back(std::stoi(s.substr(i, j - i)));
    i = j + 1;
  }
  return out;
}

}  // namespace loupe::bench
