// BLIP-2 generation benchmark, JSON out: ms per generated token (greedy, batch 1, EOS banned until
// the last token) and the time to the first token (vision tower + Q-Former + the prompt through
// the language model) with random weights at the published sizes (Salesforce/blip2-opt-2.7b:
// EVA ViT-g 39 layers at 224, Q-Former 12 layers with 32 queries, OPT-2.7b; or blip2-opt-6.7b), or a
// tiny model for a quick run; or the weights of a real BLIP-2 folder.
//   loupe-bench-blip2 [--size opt-2.7b|opt-6.7b|tiny] [--device cpu|cuda] [--dtype fp32|bf16|fp16]
//                     [--tokens 32] [--weights DIR] [--out FILE.json]
// OPT-2.7b needs about 15 GB of memory in fp32 (7.5 GB in bf16).
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <string>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "bench_util.h"
#include "core/runtime.h"
#include "io/checkpoint.h"
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
  std::string size = "opt-2.7b", device = "cpu", dtype = "fp32", weights, out_file;
  int tokens = 32;
  for (int i = 1; i < argc; ++i) {
    const char* value = i + 1 < argc ? argv[i + 1] : "";
    if (!std::strcmp(argv[i], "--size")) size = value, ++i;
    else if (!std::strcmp(argv[i], "--device")) device = value, ++i;
    else if (!std::strcmp(argv[i], "--dtype")) dtype = value, ++i;
    else if (!std::strcmp(argv[i], "--tokens")) tokens = std::atoi(value), ++i;
    else if (!std::strcmp(argv[i], "--weights")) weights = value, ++i;
    else if (!std::strcmp(argv[i], "--out")) out_file = value, ++i;
  }
  try {
    using namespace loupe::bench;
    if (tokens < 2) throw std::runtime_error("--tokens must be at least 2");
    const torch::Device dev = loupe::parse_device(device);
    const auto dt = dtype == "bf16" ? torch::kBFloat16 : dtype == "fp16" ? torch::kFloat16 : torch::kFloat32;
    torch::NoGradGuard ng;
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
    int64_t params = 0;
    for (const auto& p : net->parameters()) params += p.numel();
    nlohmann::json out;
    out["stack"] = "loupe";
    out["machine"] = loupe::device_info();
    out["build"] = loupe::build_info();
    out["model"] = {{"size", weights.empty() ? size : weights}, {"params_M", params / 1e6}, {"dtype", loupe::dtype_name(dt)},
                    {"device", dev.str()}, {"weights", weights.empty() ? "random (normal, std 0.02)" : weights},
                    {"threads", torch::get_num_threads()}};
    torch::manual_seed(1);
    const auto pixels = torch::randn({1, 3, cfg.vision.image_size, cfg.vision.image_size}).to(dev, dt);
    // "Question: what is in the picture? Answer:" sized prompt: the queries' image tokens, bos, 10 tokens
    std::vector<int64_t> ids(static_cast<size_t>(cfg.num_query_tokens), cfg.image_token_id);
    ids.push_back(2);
    for (int k = 0; k < 10; ++k) ids.push_back(100 + 97 * k);
    const auto input = torch::tensor(ids, torch::kLong).unsqueeze(0).to(dev);
    auto run = [&](int n) {
      loupe::nn::GenerationConfig g;
      g.max_new_tokens = n;
      g.min_new_tokens = n;
      g.eos_token_ids = cfg.eos_token_ids;
      g.pad_token_id = 1;
      net->generate(input, pixels, g);
    };
    PeakSampler ps(dev);
    double cpu_n = 0, cpu_1 = 0;
    const double tn = timeit(dev, [&] { run(tokens); }, 1, 3, &cpu_n), t1 = timeit(dev, [&] { run(1); }, 1, 3, &cpu_1);
    const uint64_t peak = ps.stop();
    const double vis = timeit(dev, [&] { net->image_features(pixels); }, 1, 3);
    out["cases"]["blip2_" + size + "_greedy_bs1"] = {
        {"gen" + std::to_string(tokens) + "_s", tn}, {"gen1_s", t1}, {"first_token_s", t1},
        {"vision_qformer_s", vis}, {"per_token_ms", (tn - t1) / (tokens - 1) * 1000},
        {"per_token_cpu_ms", (cpu_n - cpu_1) / (tokens - 1) * 1000}, {"peak_device_bytes", peak}};
    const std::string text = out.dump(1);
    std::cout << text << std::endl;
    if (!out_file.empty()) std::ofstream(out_file) << text << "\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "loupe-bench-blip2: " << e.what() << std::endl;
    return 1;
  }
}
