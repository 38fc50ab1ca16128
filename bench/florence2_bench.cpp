// Florence-2 generation benchmark, JSON out. The configs are those of the reference run behind
// the targets (../shared/device/reference_baseline.py): random weights at the real sizes,
// 64 new tokens (EOS banned before), greedy, batch 1 and 8 images, 768 x 768 input; timed as the
// reference times generate() (median of 5 after a warm-up, vision tower + encoder + decoding). Also
// the SDK's default for one image, beam search with 3 beams and no-repeat 3-grams, at batch 1.
//   loupe-bench-florence2 [--size base|large|tiny] [--device cuda|cpu] [--dtype fp16|fp32|bf16] [--tokens 64]
//                         [--weights DIR]  (a Florence-2 folder, transformers' layout or the original
//                                           remote-code one: the weights bench/florence2_reference.py
//                                           ran, for a side-by-side run)
//                         [--cuda-graphs]  (the same cases with decoding steps replayed from CUDA
//                                           graphs, named "<case>_graphs"; a separate run so that a
//                                           failure there cannot cost the eager figures)
//                         [--cases bs1,bs8,beam3_bs1,caption] (default: the first three)
//                         [--inputs FILE.safetensors] [--runs 5] [--threads N] [--out FILE.json]
//                         [--profile F] [--outputs F.safetensors]
// The "caption" case is the CPU side by side with the original modules (bench/florence2_reference.py
// run-cpu, bench/florence2_cpu_compare.sh), timed as that script times them: after a warm-up caption
// of 2 tokens, `runs` greedy captions of `tokens` new tokens at batch 1 (vision tower + projection,
// encoder, decoding), each clocked at every new token (first_token_s, per_token_ms = (last - first) /
// (tokens - 1), per_token_cpu_ms, total_s), then `runs` of the vision tower + projection alone
// (vision_s) and of the encoder alone (encoder_s); medians, peak resident set, the new ids of the
// last caption. --inputs: pixel_values [1, 3, S, S] and prompt_ids [1, L] (make-cpu writes them);
// without it seeded random pixels and 8 prompt ids. --threads: 0 = LOUPE_NUM_THREADS, else the
// physical cores. --profile F: one caption under libtorch's profiler, Chrome traces F.vision.json,
// F.encoder.json, F.decode.json (bench/profile_summary.py sums them per operator). --outputs: the
// caption case's image_features [1, T, d], encoder_states [1, L, d] and decoder_logits [1, tokens, V]
// (the decoder teacher-forced on the decoder start token and the caption's ids but the last), fp32,
// for the distance between the stacks.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iostream>
#include <string>

#include <nlohmann/json.hpp>
#include <torch/torch.h>
#include <torch/csrc/autograd/profiler_legacy.h>

#include "bench_util.h"
#include "core/cpu.h"
#include "core/runtime.h"
#include "gen_timing.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "io/state_dict.h"
#include "models/florence2/generate.h"
#include "models/florence2/modeling.h"

using namespace loupe::florence2;

static std::vector<std::string> split(const std::string& s) {  // "a,b" -> {"a", "b"}
  std::vector<std::string> out;
  size_t i = 0;
  while (i <= s.size()) {
    const size_t j = std::min(s.find(',', i), s.size());
    if (j > i) out.push_back(s.substr(i, j - i));
    i = j + 1;
  }
  return out;
}

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

// Module names -> the names of the original (remote-code) Florence-2 releases: the SDK's table
// (original_keymap() in sdk/src/families/florence2.cpp, which no header exposes), copied.
static loupe::io::KeyMap original_keymap() {
  const std::string blk = "^model\\.vision_tower\\.(blocks\\.\\d+\\.\\d+\\.";
  loupe::io::KeyMap k;
  k.regex("^model\\.vision_tower\\.convs\\.(\\d+)\\.conv\\.", "vision_tower.convs.$1.proj.")
      .regex(blk + "\\w+_block)\\.conv([12])\\.", "vision_tower.$1.conv$2.fn.dw.")
      .regex(blk + "spatial_block)\\.norm1\\.", "vision_tower.$1.window_attn.norm.")
      .regex(blk + "channel_block)\\.norm1\\.", "vision_tower.$1.channel_attn.norm.")
      .regex(blk + "\\w+_block)\\.(window_attn|channel_attn)\\.", "vision_tower.$1.$2.fn.")
      .regex(blk + "\\w+_block)\\.norm2\\.", "vision_tower.$1.ffn.norm.")
      .regex(blk + "\\w+_block)\\.ffn\\.(fc[12])\\.", "vision_tower.$1.ffn.fn.net.$2.")
      .prefix("model.vision_tower.", "vision_tower.")
      .regex("^model\\.multi_modal_projector\\.image_projection\\.weight$", "image_projection")
      .prefix("model.multi_modal_projector.image_position_embed.", "image_pos_embed.")
      .prefix("model.multi_modal_projector.", "")
      .prefix("model.language_model.", "language_model.model.")
      .transform("^model\\.multi_modal_projector\\.image_projection\\.weight$", [](const torch::Tensor& t) { return t.t(); });
  return k;
}

int main(int argc, char** argv) {
  std::string size, device = torch::cuda::is_available() ? "cuda" : "cpu", dtype = "auto", weights, inputs, out_file,
                    profile, outputs, cases = "bs1,bs8,beam3_bs1";
  int tokens = 64, runs = 5, threads = 0;
  bool graphs = false;
  for (int i = 1; i < argc; ++i) {
    const char* value = i + 1 < argc ? argv[i + 1] : "";
    if (!std::strcmp(argv[i], "--cuda-graphs")) graphs = true;
    else if (!std::strcmp(argv[i], "--size")) size = value, ++i;
    else if (!std::strcmp(argv[i], "--device")) device = value, ++i;
    else if (!std::strcmp(argv[i], "--dtype")) dtype = value, ++i;
    else if (!std::strcmp(argv[i], "--tokens")) tokens = std::atoi(value), ++i;
    else if (!std::strcmp(argv[i], "--weights")) weights = value, ++i;
    else if (!std::strcmp(argv[i], "--cases")) cases = value, ++i;
    else if (!std::strcmp(argv[i], "--inputs")) inputs = value, ++i;
    else if (!std::strcmp(argv[i], "--runs")) runs = std::atoi(value), ++i;
    else if (!std::strcmp(argv[i], "--threads")) threads = std::atoi(value), ++i;
    else if (!std::strcmp(argv[i], "--out")) out_file = value, ++i;
    else if (!std::strcmp(argv[i], "--profile")) profile = value, ++i;
    else if (!std::strcmp(argv[i], "--outputs")) outputs = value, ++i;
    else {
      std::cerr << "loupe-bench-florence2: unknown argument " << argv[i] << std::endl;
      return 2;
    }
  }
  try {
    using namespace loupe::bench;
    if (tokens < 2) throw std::runtime_error("--tokens must be at least 2");
    if (runs < 1) throw std::runtime_error("--runs must be at least 1");
    const torch::Device dev = loupe::parse_device(device);
    if (dev.is_cpu()) loupe::cpu::apply_threads(loupe::cpu::resolve_threads(threads));
    const auto dt = dtype == "fp32" || (dtype == "auto" && dev.is_cpu()) ? torch::kFloat32
                    : dtype == "bf16"                                   ? torch::kBFloat16
                                                                        : torch::kFloat16;
    torch::NoGradGuard ng;
    const auto t0 = std::chrono::steady_clock::now();
    const Config cfg = weights.empty() ? make_config(size.empty() ? "tiny" : size) : Config::load(weights);
    if (size.empty()) size = weights.empty()            ? "tiny"
                             : cfg.text.d_model == 768  ? "base"
                             : cfg.text.d_model == 1024 ? "large"
                                                        : "d" + std::to_string(cfg.text.d_model);
    Florence2 net(cfg);
    net->eval();
    net->to(dev, dt);
    if (!weights.empty()) {
      loupe::io::BindOptions bo;
      bo.device = dev;
      bo.dtype = dt;
      if (cfg.original_layout) bo.keymap = original_keymap();
      loupe::io::bind(*net, loupe::io::Checkpoint::open(weights), bo);
    }
    const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    int64_t params = 0;
    for (const auto& p : net->parameters()) params += p.numel();
    nlohmann::json out;
    out["stack"] = "loupe";
    out["machine"] = loupe::device_info();
    out["build"] = loupe::build_info();
    if (dev.is_cpu()) {
      out["cpu"] = loupe::cpu::to_json(loupe::cpu::current_threads());
      out["threads"] = loupe::cpu::current_threads();
    }
    out["model"] = {{"size", size}, {"params_M", params / 1e6}, {"dtype", loupe::dtype_name(dt)}, {"device", dev.str()},
                    {"weights", weights.empty() ? "random (libtorch init)" : weights},
                    {"layout", cfg.original_layout ? "original (remote code)" : "transformers"}};
    out["load_s"] = load_s;
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
    // The CPU side by side with the original modules: one image (the file's, or seeded random), the
    // prompt after the image placeholders; parts timed alone and whole captions clocked per token.
    auto caption = [&]() {
      torch::Tensor pixels, prompt;
      if (!inputs.empty()) {
        const auto in = loupe::io::Checkpoint::open(inputs);
        pixels = in.load("pixel_values").slice(0, 0, 1).to(dev, dt);
        prompt = in.load("prompt_ids", torch::kCPU, torch::kLong).slice(0, 0, 1);
      } else {
        torch::manual_seed(1);
        pixels = torch::randn({1, 3, cfg.image_size, cfg.image_size}).to(dev, dt);
        std::vector<int64_t> p{0};
        for (int k = 1; k < 7; ++k) p.push_back(4 + 97 * k);
        p.push_back(2);
        prompt = torch::tensor(p, torch::kLong).unsqueeze(0);
      }
      const auto input = torch::cat({torch::full({1, int64_t{cfg.image_tokens()}}, cfg.image_token_id, torch::kLong), prompt}, 1)
                             .to(dev);
      auto gen = [&](int n, const loupe::nn::TokenCallback& cb) {
        auto enc = net->encode(input, net->image_features(pixels));
        GenerateOptions o;
        o.num_beams = 1;
        o.no_repeat_ngram_size = 0;
        o.max_new_tokens = n;
        o.min_new_tokens = n;
        std::vector<std::vector<int64_t>> last(1);
        if (cb) o.on_step = [&](int step, int) { cb(step, n, last); };
        auto ids = generate_greedy_batch(*net, enc, o);
        return ids;
      };
      const std::string name = "florence2_" + size + "_" + (dt == torch::kFloat32 ? "fp32" : dt == torch::kBFloat16 ? "bf16" : "fp16") + "_bs1";
      PeakSampler ps(dev);
      gen(2, nullptr);  // warm-up
      std::vector<GenRun> rs;
      std::vector<std::vector<int64_t>> ids;
      for (int r = 0; r < runs; ++r) {
        rs.push_back(time_generate(tokens, [&](const loupe::nn::TokenCallback& cb) { ids = gen(tokens, cb); }));
        std::cerr << name << " run " << r << ": first token " << rs.back().first_token_s << " s, "
                  << rs.back().per_token_ms << " ms/token, " << rs.back().total_s << " s" << std::endl;
      }
      auto j = summarize(rs, 1, tokens);
      // the new ids (the decoder start token dropped), as the reference reports them
      for (auto& row : ids) row.erase(row.begin());
      j["ids"] = ids;
      double vcpu = 0, ecpu = 0;
      j["vision_s"] = timeit(dev, [&] { net->image_features(pixels); }, 0, runs, &vcpu);
      j["vision_cpu_s"] = vcpu;
      const auto feats = net->image_features(pixels);
      j["encoder_s"] = timeit(dev, [&] { net->encode(input, feats); }, 0, runs, &ecpu);
      j["encoder_cpu_s"] = ecpu;
      j["peak_rss_bytes"] = ps.stop();
      out["cases"][name] = j;
      if (!outputs.empty()) {
        const auto enc = net->encode(input, feats);
        std::vector<int64_t> dec{cfg.text.decoder_start_token_id};
        dec.insert(dec.end(), ids[0].begin(), ids[0].end() - 1);
        std::vector<KV> self_cache, cross_cache;
        const auto logits = net->decode(torch::tensor(dec, torch::kLong).unsqueeze(0).to(dev), enc, self_cache, cross_cache, 0);
        auto f32 = [](const torch::Tensor& t) { return t.to(torch::kCPU, torch::kFloat32).contiguous(); };
        loupe::io::save_safetensors(outputs, {{"image_features", f32(feats)}, {"encoder_states", f32(enc)},
                                              {"decoder_logits", f32(logits)}});
      }
      if (!profile.empty()) {
        {
          torch::autograd::profiler::RecordProfile rp(profile + ".vision.json");
          net->image_features(pixels);
        }
        torch::Tensor enc;
        {
          torch::autograd::profiler::RecordProfile rp(profile + ".encoder.json");
          enc = net->encode(input, feats);
        }
        {
          torch::autograd::profiler::RecordProfile rp(profile + ".decode.json");
          GenerateOptions o;
          o.num_beams = 1;
          o.no_repeat_ngram_size = 0;
          o.max_new_tokens = o.min_new_tokens = tokens;
          generate_greedy_batch(*net, enc, o);
        }
      }
    };
    // The reference run's cases (greedy, no n-gram rule) and the SDK's default for one image (beam
    // search); with --cuda-graphs, the same with decoding steps replayed from CUDA graphs.
    const std::string g = graphs ? "_graphs" : "";
    for (const auto& c : split(cases)) {
      if (c == "bs1") measure("bs1" + g, 1, 1, 0, graphs);
      else if (c == "bs8") measure("bs8" + g, 8, 1, 0, graphs);
      else if (c == "beam3_bs1") measure("beam3_bs1" + g, 1, 3, 3, graphs);
      else if (c == "caption") caption();
      else throw std::runtime_error("--cases: unknown case " + c + " (bs1, bs8, beam3_bs1, caption)");
    }
    out["new_tokens"] = tokens;
    out["process_peak_rss_bytes"] = rss_bytes(true);
    const std::string text = out.dump(1);
    std::cout << text << std::endl;
    if (!out_file.empty()) std::ofstream(out_file) << text << "\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "loupe-bench-florence2: " << e.what() << std::endl;
    return 1;
  }
}
