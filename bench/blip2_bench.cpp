// BLIP-2 generation benchmark, JSON out: ms per generated token (greedy, EOS banned until the last
// token) and the time to the first token (vision tower + Q-Former + the prompt through the language
// model), with random weights at the published sizes (Salesforce/blip2-opt-2.7b: EVA ViT-g 39 layers
// at 224, Q-Former 12 layers with 32 queries, OPT-2.7b; or blip2-opt-6.7b), or a tiny model for a
// quick run; or the weights of a BLIP-2 folder (transformers' layout), with the inputs of a file, as
// bench/lm_reference.py runs transformers' generate() on the same files (bench/lm_compare.sh).
//   loupe-bench-blip2 [--size opt-2.7b|opt-6.7b|tiny] [--device cpu|cuda] [--dtype fp32|bf16|fp16]
//                     [--tokens 32] [--runs 3] [--threads N] [--weights DIR] [--inputs FILE.safetensors]
//                     [--logits FILE.safetensors] [--out FILE.json]
// --inputs: pixel_values [1, 3, S, S] and input_ids [1, L] (lm_reference.py make blip2 writes them);
// without it: seeded random pixels and 32 image tokens, </s>, 10 ids. Timing (bench/gen_timing.h):
// one warm-up generate() of 2 tokens, then `runs` timed ones, each clocked at every new token by the
// token callback; then the image features alone (vision + Q-Former + projection). --runs 0: no
// timing. --logits: afterwards, untimed, a generate() keeping the logits of every step
// ("step_logits" [tokens, vocab] fp32, "ids" [tokens]), for the distance to transformers'.
// OPT-2.7b needs about 15 GB of memory in fp32 (7.5 GB in bf16).
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
#include "models/blip2/config.h"
#include "models/blip2/modeling.h"

using namespace loupe::blip2;

static Config make_config(const std::string& size) {
  Config c;  // Blip2VisionConfig / Blip2QFormerConfig defaults: EVA ViT-g, BERT-base Q-Former
  c.layout = PromptLayout::ImageTokens;
  nlohmann::json t = {{"model_type", "opt"}, {"vocab_size", 50304}, {"max_position_embeddings", 2048},
                      {"eos_token_id", 50118}, {"word_embed_proj_dim", 2560}, {"hidden_size", 2560},
                      {"ffn_dim", 10240}, {"num_hidden_layers", 32}, {"num_attention_heads", 32}};
  if (size == "opt-6.7b") {
    t["hidden_size"] = t["word_embed_proj_dim"] = 4096;
    t["ffn_dim"] = 16384;
  } else if (size == "tiny") {
    c.vision.hidden_size = 64, c.vision.intermediate_size = 128, c.vision.num_layers = 2, c.vision.num_heads = 4;
    c.qformer.hidden_size = 64, c.qformer.intermediate_size = 128, c.qformer.num_layers = 2, c.qformer.num_heads = 4;
    c.qformer.encoder_hidden_size = 64;
    t["hidden_size"] = t["word_embed_proj_dim"] = 64;
    t["ffn_dim"] = 128;
    t["num_hidden_layers"] = 2;
    t["num_attention_heads"] = 4;
  } else if (size != "opt-2.7b") {
    throw std::runtime_error("--size must be opt-2.7b, opt-6.7b or tiny");
  }
  c.text = loupe::nn::DecoderConfig::from_json(t, "bench config");
  c.text_hidden_size = c.text.hidden_size;
  c.text_vocab_size = c.text.vocab_size;
  c.image_token_id = 50265;
  c.eos_token_ids = c.text.eos_token_ids;
  c.pad_token_id = 1;
  return c;
}

int main(int argc, char** argv) {
  std::string size = "opt-2.7b", device = "cpu", dtype = "fp32", weights, inputs, out_file, logits_file;
  int tokens = 32, runs = 3, threads = 0;
  for (int i = 1; i < argc; ++i) {
    const char* value = i + 1 < argc ? argv[i + 1] : "";
    if (!std::strcmp(argv[i], "--size")) size = value, ++i;
    else if (!std::strcmp(argv[i], "--device")) device = value, ++i;
    else if (!std::strcmp(argv[i], "--dtype")) dtype = value, ++i;
    else if (!std::strcmp(argv[i], "--tokens")) tokens = std::atoi(value), ++i;
    else if (!std::strcmp(argv[i], "--runs")) runs = std::atoi(value), ++i;
    else if (!std::strcmp(argv[i], "--threads")) threads = std::atoi(value), ++i;
    else if (!std::strcmp(argv[i], "--weights")) weights = value, ++i;
    else if (!std::strcmp(argv[i], "--inputs")) inputs = value, ++i;
    else if (!std::strcmp(argv[i], "--out")) out_file = value, ++i;
    else if (!std::strcmp(argv[i], "--logits")) logits_file = value, ++i;
    else {
      std::cerr << "loupe-bench-blip2: unknown argument " << argv[i] << std::endl;
      return 2;
    }
  }
  try {
    using namespace loupe::bench;
    if (tokens < 2) throw std::runtime_error("--tokens must be at least 2");
    if (runs < 0) throw std::runtime_error("--runs must be 0 or more");
    loupe::cpu::apply_threads(loupe::cpu::resolve_threads(threads));
    const torch::Device dev = loupe::parse_device(device);
    const auto dt = dtype == "bf16" ? torch::kBFloat16 : dtype == "fp16" ? torch::kFloat16 : torch::kFloat32;
    torch::NoGradGuard ng;
    const auto t0 = std::chrono::steady_clock::now();
    const Config cfg = weights.empty() ? make_config(size) : Config::load(weights);
    Blip2 net(cfg);
    net->eval();
    if (weights.empty()) {
      torch::manual_seed(0);
      for (auto& p : net->parameters()) p.normal_(0, 0.02);
      net->to(dev, dt);
    } else {
      net->load(loupe::io::Checkpoint::open(weights), weights, dev, dt);
    }
    const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    int64_t params = 0;
    for (const auto& p : net->parameters()) params += p.numel();
    nlohmann::json out;
    out["stack"] = "loupe";
    out["machine"] = loupe::device_info();
    out["cpu"] = loupe::cpu::to_json(loupe::cpu::current_threads());
    out["build"] = loupe::build_info();
    out["threads"] = loupe::cpu::current_threads();
    out["model"] = {{"size", size}, {"params_M", params / 1e6}, {"dtype", loupe::dtype_name(dt)},
                    {"device", dev.str()}, {"weights", weights.empty() ? "random (normal, std 0.02)" : weights},
                    {"inputs", inputs.empty() ? "random (seed 1)" : inputs}};
    out[weights.empty() ? "make_weights_s" : "load_s"] = load_s;
    out["new_tokens"] = tokens;
    torch::Tensor pixels, input;
    if (!inputs.empty()) {
      const auto in = loupe::io::Checkpoint::open(inputs);
      pixels = in.load("pixel_values").slice(0, 0, 1).to(dev, dt);
      input = in.load("input_ids", torch::kCPU, torch::kLong).slice(0, 0, 1).to(dev);
    } else {
      torch::manual_seed(1);
      pixels = torch::randn({1, 3, cfg.vision.image_size, cfg.vision.image_size}).to(dev, dt);
      // "Question: what is in the picture? Answer:" sized prompt: the queries' image tokens, bos, 10 tokens
      std::vector<int64_t> ids(static_cast<size_t>(cfg.num_query_tokens), cfg.image_token_id);
      ids.push_back(2);
      for (int k = 0; k < 10; ++k) ids.push_back(100 + 97 * k);
      input = torch::tensor(ids, torch::kLong).unsqueeze(0).to(dev);
    }
    auto gen_cfg = [&](int n) {
      loupe::nn::GenerationConfig g;
      g.max_new_tokens = n;
      g.min_new_tokens = n;
      g.eos_token_ids = cfg.eos_token_ids;
      g.pad_token_id = 1;
      return g;
    };
    const std::string name = "blip2-" + size + "_" + dtype + "_bs1";
    if (runs > 0) {
      PeakSampler ps(dev);
      net->generate(input, pixels, gen_cfg(2));  // warm-up
      std::vector<GenRun> rs;
      for (int r = 0; r < runs; ++r) {
        rs.push_back(time_generate(tokens, [&](const loupe::nn::TokenCallback& cb) { net->generate(input, pixels, gen_cfg(tokens), cb); }));
        std::cerr << name << " first token " << rs.back().first_token_s << " s, " << rs.back().per_token_ms << " ms/token"
                  << std::endl;
      }
      auto j = summarize(rs, 1, tokens);
      std::vector<double> vis;
      for (int r = 0; r < 3; ++r) vis.push_back(timeit(dev, [&] { net->image_features(pixels); }, 0, 1));
      j["image_features_s"] = median(vis);
      j["peak_rss_bytes"] = ps.stop();
      out["cases"][name] = j;
    }
    if (!logits_file.empty()) {
      const auto g = net->generate(input, pixels, gen_cfg(tokens), {}, true);
      loupe::io::save_safetensors(logits_file,
                                  {{"step_logits", torch::stack(g.step_logits)}, {"ids", torch::tensor(g.ids, torch::kLong)}});
      out["logits"] = {{"file", logits_file}, {"ids", g.ids}};
    }
    out["process_peak_rss_bytes"] = rss_bytes(true);
    const std::string text = out.dump(1);
    std::cout << text << std::endl;
    if (!out_file.empty()) std::ofstream(out_file) << text << "\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "loupe-bench-blip2: " << e.what() << std::endl;
    return 1;
  }
}
