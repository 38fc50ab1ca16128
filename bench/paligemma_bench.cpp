// PaliGemma generation benchmark, JSON out: the prefix (image + prompt through the model, first
// token) and ms per generated token (greedy, EOS banned until the last token) at several batch
// sizes, peak resident set, and the generated ids, on the weights and inputs of a transformers-layout
// folder, timed as bench/lm_reference.py times transformers' generate() on the same files (see
// bench/gen_timing.h; bench/lm_compare.sh runs both).
//   loupe-bench-paligemma --weights DIR --inputs FILE.safetensors [--dtype fp32|bf16] [--device cpu|cuda]
//                         [--tokens 16] [--batches 1,8] [--runs 3,2] [--threads N] [--prompt "caption en"]
//                         [--logits FILE.safetensors] [--out FILE.json]
// DIR: config.json, weights (model.safetensors or its index + shards), tokenizer (tokenizer.model or
// tokenizer.json). FILE: pixel_values [B, 3, S, S] and input_ids [B, L] (lm_reference.py make
// paligemma writes both); batch b runs the first b rows. The folder's tokenizer must give the
// prompt's ids (PaliGemmaProcessor's layout) that the inputs hold: reported under "prompt_check".
// Per batch: one warm-up generate() of 2 tokens, then `runs` timed ones of --tokens; batch 1 also
// times the image features alone (SigLIP + projector). A batch with 0 runs is left out. --logits:
// afterwards, untimed, batch 1's generate() keeping the logits of every step ("step_logits" [tokens,
// vocab] fp32, "ids" [tokens]), for the distance to transformers' (bench/lm_reference.py combine).
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <string>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "bench_util.h"
#include "core/cpu.h"
#include "core/runtime.h"
#include "gen_timing.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "models/paligemma/config.h"
#include "models/paligemma/modeling.h"
#include "models/paligemma/processor.h"
#include "text/sentencepiece.h"

using namespace loupe;

int main(int argc, char** argv) {
  std::string device = "cpu", dtype = "fp32", weights, inputs, out_file, logits_file, prompt = "caption en", batches_s = "1,8",
              runs_s = "3,2";
  int tokens = 16, threads = 0;
  for (int i = 1; i < argc; ++i) {
    const char* value = i + 1 < argc ? argv[i + 1] : "";
    if (!std::strcmp(argv[i], "--device")) device = value, ++i;
    else if (!std::strcmp(argv[i], "--dtype")) dtype = value, ++i;
    else if (!std::strcmp(argv[i], "--tokens")) tokens = std::atoi(value), ++i;
    else if (!std::strcmp(argv[i], "--batches")) batches_s = value, ++i;
    else if (!std::strcmp(argv[i], "--runs")) runs_s = value, ++i;
    else if (!std::strcmp(argv[i], "--threads")) threads = std::atoi(value), ++i;
    else if (!std::strcmp(argv[i], "--weights")) weights = value, ++i;
    else if (!std::strcmp(argv[i], "--inputs")) inputs = value, ++i;
    else if (!std::strcmp(argv[i], "--prompt")) prompt = value, ++i;
    else if (!std::strcmp(argv[i], "--out")) out_file = value, ++i;
    else if (!std::strcmp(argv[i], "--logits")) logits_file = value, ++i;
    else {
      std::cerr << "loupe-bench-paligemma: unknown argument " << argv[i] << std::endl;
      return 2;
    }
  }
  try {
    using namespace loupe::bench;
    if (weights.empty() || inputs.empty()) throw std::runtime_error("--weights DIR and --inputs FILE are needed");
    if (tokens < 2) throw std::runtime_error("--tokens must be at least 2");
    const auto batches = int_list(batches_s);
    auto runs = int_list(runs_s);
    if (batches.empty() || runs.empty()) throw std::runtime_error("--batches and --runs need at least one number");
    while (runs.size() < batches.size()) runs.push_back(runs.back());
    cpu::apply_threads(cpu::resolve_threads(threads));
    const torch::Device dev = parse_device(device);
    const auto dt = dtype == "bf16" ? torch::kBFloat16 : dtype == "fp16" ? torch::kFloat16 : torch::kFloat32;
    torch::NoGradGuard ng;

    const auto in = io::Checkpoint::open(inputs);
    const auto all_pixels = in.load("pixel_values");
    const auto all_ids = in.load("input_ids", torch::kCPU, torch::kLong);

    const auto t0 = std::chrono::steady_clock::now();
    const paligemma::Config cfg = paligemma::Config::load(weights);
    paligemma::PaliGemma net(cfg);
    net->eval();
    net->load(io::Checkpoint::open(weights), weights, dev, dt);
    const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    int64_t params = 0;
    for (const auto& p : net->parameters()) params += p.numel();

    nlohmann::json out;
    out["stack"] = "loupe";
    out["machine"] = device_info();
    out["cpu"] = cpu::to_json(cpu::current_threads());
    out["build"] = build_info();
    out["threads"] = cpu::current_threads();
    out["model"] = {{"name", cfg.variant()}, {"params_M", params / 1e6}, {"dtype", dtype_name(dt)}, {"device", dev.str()},
                    {"weights", weights}, {"inputs", inputs}};
    out["load_s"] = load_s;
    out["new_tokens"] = tokens;
    // The folder's tokenizer: the prompt's ids as PaliGemmaProcessor lays them out, against the inputs'
    try {
      const auto tok = text::SentencePieceTokenizer::load_from_dir(weights);
      const auto ids = paligemma::prompt_ids(tok, cfg, prompt);
      const auto row = all_ids[0];
      const std::vector<int64_t> given(row.data_ptr<int64_t>(), row.data_ptr<int64_t>() + row.numel());
      out["prompt_check"] = {{"prompt", prompt}, {"tokenizer_vocab_size", tok.vocab_size()},
                             {"ids_equal_inputs", ids == given}, {"prompt_ids", static_cast<int64_t>(ids.size())}};
    } catch (const std::exception& e) {
      out["prompt_check"] = {{"prompt", prompt}, {"error", e.what()}};
    }
    std::cerr << out.dump() << std::endl;

    auto gen_cfg = [&](int n) {
      nn::GenerationConfig g;
      g.max_new_tokens = n;
      g.min_new_tokens = n;
      g.eos_token_ids = {1};
      g.pad_token_id = 0;
      return g;
    };
    for (size_t k = 0; k < batches.size(); ++k) {
      const int b = batches[k];
      if (all_ids.size(0) < b) throw std::runtime_error("the inputs hold " + std::to_string(all_ids.size(0)) + " rows");
      if (runs[k] < 1) continue;
      const auto ids = all_ids.slice(0, 0, b).to(dev);
      const auto px = all_pixels.slice(0, 0, b).to(dev, dt);
      const std::string name = "paligemma-3b-224_" + dtype + "_bs" + std::to_string(b);
      PeakSampler ps(dev);
      net->generate(ids, px, gen_cfg(2));  // warm-up
      std::vector<GenRun> rs;
      for (int r = 0; r < runs[k]; ++r) {
        rs.push_back(time_generate(tokens, [&](const nn::TokenCallback& cb) { net->generate(ids, px, gen_cfg(tokens), cb); }));
        std::cerr << name << " first token " << rs.back().first_token_s << " s, " << rs.back().per_token_ms
                  << " ms/token" << std::endl;
      }
      auto j = summarize(rs, b, tokens);
      if (b == 1) {
        std::vector<double> vis;
        for (int r = 0; r < 3; ++r)
          vis.push_back(timeit(dev, [&] { net->image_features(px); }, 0, 1));
        j["image_features_s"] = median(vis);
      }
      j["peak_rss_bytes"] = ps.stop();
      out["cases"][name] = j;
    }
    if (!logits_file.empty()) {
      const auto g = net->generate(all_ids.slice(0, 0, 1).to(dev), all_pixels.slice(0, 0, 1).to(dev, dt), gen_cfg(tokens), {},
                                   true);
      io::save_safetensors(logits_file, {{"step_logits", torch::stack(g.step_logits)}, {"ids", torch::tensor(g.ids, torch::kLong)}});
      out["logits"] = {{"file", logits_file}, {"ids", g.ids}};
    }
    out["process_peak_rss_bytes"] = rss_bytes(true);
    const std::string text = out.dump(1);
    std::cout << text << std::endl;
    if (!out_file.empty()) std::ofstream(out_file) << text << "\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "loupe-bench-paligemma: " << e.what() << std::endl;
    return 1;
  }
}
