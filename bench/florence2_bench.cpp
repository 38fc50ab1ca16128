// Florence-2 generation benchmark, JSON out. The configs are those of the reference run behind
// the targets (../shared/device/reference_baseline.py): random weights at the real sizes,
// 64 new tokens (EOS banned before), greedy, batch 1 and 8 images, 768 x 768 input; timed as the
// reference times generate() (median of 5 after a warm-up, vision tower + encoder + decoding). Also
// the SDK's default for one image, beam search with 3 beams and no-repeat 3-grams, at batch 1.
//   loupe-bench-florence2 [--size base|large|tiny] [--device cuda|cpu] [--dtype fp16|fp32] [--tokens 64]
//                         [--weights DIR]  (a transformers Florence-2 folder: the weights
//                                           bench/florence2_reference.py ran, for a side-by-side run)
//                         [--cuda-graphs]  (the same cases with decoding steps replayed from CUDA
//                                           graphs, named "<case>_graphs"; a separate run so that a
//                                           failure there cannot cost the eager figures)
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "bench_util.h"
#include "core/runtime.h"
#include "io/checkpoint.h"
#include "io/state_dict.h"
#include "models/florence2/generate.h"
#include "models/florence2/modeling.h"

using namespace loupe::florence2;

static Config make_config(const std::string& size) {
  Config c;
  c.text.vocab_size = 51290;
  c.text.max_position_embeddings = 1024;
  c.image_token_id = 51289;
  if (size == "large") {
    c.vision.embed_dim = {256, 512, 1024, 2048};
    c.vision.num_heads = {8, 16, 32, 64};
    c.vision.num_groups = {8, 16, 32, 64};
    c.vision.projection_dim = 1024;
    c.text.d_model = 1024;
    c.text.encoder_layers = c.text.decoder_layers = 12;
    c.text.encoder_attention_heads = c.text.decoder_attention_heads = 16;
    c.text.encoder_ffn_dim = c.text.decoder_ffn_dim = 4096;
  } else if (size == "base") {
    c.vision.projection_dim = 768;
    c.text.d_model = 768;
    c.text.encoder_layers = c.text.decoder_layers = 6;
    c.text.encoder_attention_heads = c.text.decoder_attention_heads = 12;
    c.text.encoder_ffn_dim = c.text.decoder_ffn_dim = 3072;
  } else {  // tiny: for a quick run on any machine
    c.vision.depths = {1, 1};
    c.vision.patch_size = {7, 3};
    c.vision.patch_stride = {4, 2};
    c.vision.patch_padding = {3, 1};
    c.vision.patch_prenorm = {false, true};
    c.vision.embed_dim = {16, 32};
    c.vision.num_heads = {2, 4};
    c.vision.num_groups = {2, 4};
    c.vision.window_size = 4;
    c.vision.projection_dim = 32;
    c.text.d_model = 32;
    c.text.encoder_layers = c.text.decoder_layers = 2;
    c.text.encoder_attention_heads = c.text.decoder_attention_heads = 4;
    c.text.encoder_ffn_dim = c.text.decoder_ffn_dim = 64;
    c.image_size = 64;
  }
  return c;
}

int main(int argc, char** argv) {
  std::string size = "tiny", device = torch::cuda::is_available() ? "cuda" : "cpu", dtype = "auto", weights;
  int tokens = 64;
  bool graphs = false;
  for (int i = 1; i < argc; ++i) {
    const char* value = i + 1 < argc ? argv[i + 1] : "";
    if (!std::strcmp(argv[i], "--cuda-graphs")) graphs = true;
    else if (!std::strcmp(argv[i], "--size")) size = value, ++i;
    else if (!std::strcmp(argv[i], "--device")) device = value, ++i;
    else if (!std::strcmp(argv[i], "--dtype")) dtype = value, ++i;
    else if (!std::strcmp(argv[i], "--tokens")) tokens = std::atoi(value), ++i;
    else if (!std::strcmp(argv[i], "--weights")) weights = value, ++i;
  }
  try {
    using namespace loupe::bench;
    const torch::Device dev = loupe::parse_device(device);
    const auto dt = dtype == "fp32" || (dtype == "auto" && dev.is_cpu()) ? torch::kFloat32 : torch::kFloat16;
    torch::NoGradGuard ng;
    const Config cfg = weights.empty() ? make_config(size) : Config::load(weights);
    Florence2 net(cfg);
    net->eval();
    net->to(dev, dt);
    if (!weights.empty()) {
      loupe::io::BindOptions bo;
      bo.device = dev;
      bo.dtype = dt;
      loupe::io::bind(*net, loupe::io::Checkpoint::open(weights), bo);
    }
    int64_t params = 0;
    for (const auto& p : net->parameters()) params += p.numel();
    nlohmann::json out;
    out["stack"] = "loupe";
    out["machine"] = loupe::device_info();
    out["build"] = loupe::build_info();
    out["model"] = {{"size", size}, {"params_M", params / 1e6}, {"dtype", loupe::dtype_name(dt)}, {"device", dev.str()},
                    {"weights", weights.empty() ? "random (libtorch init)" : weights}};
    // One case: `bs` random images with an 8-token prompt, decoded with `beams` beams (1: greedy,
    // the whole batch at once as the SDK runs a multi-image job; otherwise image 0 alone), timed for
    // `tokens` and for 1 new token, with the peak device memory over both.
    auto measure = [&](const std::string& name, int bs, int beams, int ngram, bool graphs) {
      torch::manual_seed(0);
      const auto pixels = torch::randn({bs, 3, cfg.image_size, cfg.image_size}).to(dev, dt);
      std::vector<int64_t> ids(cfg.image_tokens(), cfg.image_token_id);
      for (int k = 0; k < 8; ++k) ids.push_back(4 + 97 * k);
      const auto input = torch::tensor(ids, torch::kLong).to(dev).unsqueeze(0).expand({bs, -1});
      auto run = [&](int n) {
        auto enc = net->encode(input, net->image_features(pixels));
        GenerateOptions o;
        o.num_beams = beams;
        o.no_repeat_ngram_size = ngram;
        o.max_new_tokens = n;
        o.min_new_tokens = n;
        o.cuda_graphs = graphs;
        if (beams == 1) generate_greedy_batch(*net, enc, o);
        else generate(*net, enc, o);
      };
      PeakSampler ps(dev);
      const double t64 = timeit(dev, [&] { run(tokens); }, 1, 5), t1 = timeit(dev, [&] { run(1); }, 1, 5);
      const uint64_t peak = ps.stop();
      const double per_token = (t64 - t1) / (tokens - 1) * 1000;  // per decoding step, as the reference reports
      out["cases"]["florence2_" + size + "_" + name] = {
          {"gen" + std::to_string(tokens) + "_s", t64}, {"gen1_s", t1}, {"per_token_ms", per_token},
          {"per_token_per_image_ms", per_token / bs}, {"peak_device_bytes", peak}};
      std::cerr << name << ": " << t64 << " s for " << tokens << " tokens\n";
    };
    // The reference run's cases (greedy, no n-gram rule) and the SDK's default for one image (beam
    // search); with --cuda-graphs, the same with decoding steps replayed from CUDA graphs.
    const std::string g = graphs ? "_graphs" : "";
    measure("bs1" + g, 1, 1, 0, graphs);
    measure("bs8" + g, 8, 1, 0, graphs);
    measure("beam3_bs1" + g, 1, 3, 3, graphs);
    std::cout << out.dump(1) << std::endl;
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "loupe-bench-florence2: " << e.what() << std::endl;
    return 1;
  }
}
