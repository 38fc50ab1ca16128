// FLUX.1 schnell benchmark (issue 17), JSON out: Loupe's side of bench/flux_compare.sh, on a diffusers
// folder made by bench/flux_reference.py make (FLUX.1's width, fewer blocks, random weights).
//   loupe-bench-flux --case step|image --weights DIR --out FILE.json
//                    [--size 512]       image side in pixels (multiple of 16)
//                    [--dtype fp32|bf16] compute dtype (the weights are upcast / cast from the file's)
//                    [--threads N]      CPU threads (default: as the runtime, all physical cores)
//                    [--warm 1 --n 3]   step: warm-up runs and timed runs (then one run with every block timed)
//                    [--steps 4 --warm-steps 1]  image: schnell's 4 steps after a warm-up image of 1 step (0: none)
//                    [--outputs F.safetensors]   step: the transformer's output; image: the image (to compare)
// step: FluxTransformer::load of DIR/transformer placed as the session places it on the CPU (resident
// when what residency adds fits 3/4 of the memory available now, else blocks streamed), then one
// forward at the image size (size/16 squared image tokens) with 256 text tokens (schnell's
// max_sequence_length), timestep 1; inputs drawn from torch::manual_seed(0) in the order
// bench/flux_reference.py draws them. image: the FLUX family's session (families/flux: tokenizers, CLIP-L,
// T5, the transformer, flow-matching Euler, the VAE decode, the uint8 image) on txt2img with seed 0.
// Peak memory: the process's resident set sampled every millisecond while a case runs, and VmHWM.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "bench_util.h"
#include "core/cpu.h"
#include "core/job.h"
#include "core/model.h"
#include "core/runtime.h"
#include "core/types.h"
#include "families/flux.h"
#include "io/safetensors.h"
#include "models/flux/transformer.h"
#include "pipelines/flux.h"

using namespace loupe;
using namespace loupe::bench;

namespace {

const char* kPrompt = "a photo of a red fox sitting in the snow at sunrise, detailed fur, 35mm";  // as flux_reference.py
constexpr int64_t kTextTokens = 256;

std::string cpu_name() {  // as flux_reference.py: /proc/cpuinfo's model name
  std::ifstream f("/proc/cpuinfo");
  for (std::string line; std::getline(f, line);)
    if (line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      return colon == std::string::npos ? line : line.substr(line.find_first_not_of(" \t", colon + 1));
    }
  return "cpu";
}

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// The session's rule on the CPU (families/flux.cpp, placement_budget): 3/4 of the memory available now.
uint64_t cpu_budget() { return std::max<uint64_t>(device_memory(torch::kCPU).first / 4 * 3, 1); }

// Mean double / single block, the rest of the forward, and the full FLUX.1 (19 + 38 blocks) estimate.
nlohmann::json block_summary(const std::vector<double>& dbl, const std::vector<double>& sgl, double total_ms) {
  double sd = 0, ss = 0;
  for (double t : dbl) sd += t;
  for (double t : sgl) ss += t;
  const double md = dbl.empty() ? 0 : sd / dbl.size(), ms = sgl.empty() ? 0 : ss / sgl.size(), rest = total_ms - sd - ss;
  return {{"double", dbl}, {"single", sgl}, {"double_mean", md}, {"single_mean", ms}, {"rest", rest},
          {"full_flux1_19_38_estimate", rest + 19 * md + 38 * ms}};
}

void step_case(const std::string& weights, int size, torch::ScalarType dt, int warm, int n, const std::string& outputs,
               nlohmann::json& out) {
  const torch::Device cpu(torch::kCPU);
  flux::FluxLoadOptions o;
  o.device = cpu;
  o.dtype = dt;
  o.placement = flux::Placement::Auto;
  o.budget_bytes = cpu_budget();
  out["placement_budget_bytes"] = o.budget_bytes;
  std::unique_ptr<flux::FluxTransformer> tr;
  {
    PeakSampler ps(cpu);
    const auto t0 = Clock::now();
    tr = flux::FluxTransformer::load(weights + "/transformer", o);
    out["load_s"] = since(t0);
    out["load_peak_rss_bytes"] = ps.stop();
  }
  out["transformer_placement"] = tr->streaming() ? "streamed" : "resident";
  out["transformer_host_bytes"] = tr->host_bytes();
  out["transformer_added_bytes"] = tr->added_bytes(cpu, dt);
  const auto& c = tr->config();
  out["transformer"] = {{"double_blocks", c.num_layers}, {"single_blocks", c.num_single_layers},
                        {"inner_dim", c.inner_dim()}, {"joint_attention_dim", c.joint_attention_dim}};

  const int64_t lat = size / 8;  // latent side; packed 2 x 2
  torch::manual_seed(0);         // drawn in flux_reference.py's order
  const auto hidden = torch::randn({1, (lat / 2) * (lat / 2), c.in_channels});
  const auto enc = torch::randn({1, kTextTokens, c.joint_attention_dim});
  const auto pooled = torch::randn({1, c.pooled_projection_dim});
  const auto img_ids = pipelines::flux::latent_image_ids(lat, lat), txt_ids = pipelines::flux::text_ids(kTextTokens);
  const auto timestep = torch::tensor({1.0f});
  out["image_tokens"] = hidden.size(1);
  auto fwd = [&] { return tr->forward(hidden, enc, pooled, timestep, img_ids, txt_ids); };

  {
    PeakSampler ps(cpu);
    double cpu_s = 0;
    out["step_ms"] = 1000 * timeit(cpu, [&] { fwd(); }, warm, n, &cpu_s);
    out["step_cpu_ms"] = 1000 * cpu_s;
    out["step_peak_rss_bytes"] = ps.stop();
    out["step_warm_up_runs"] = warm;
    out["step_runs"] = n;
  }
  // one more run with every block timed through the module's block hook (resident only: a streamed
  // placement's hook is where blocks are brought in)
  if (!tr->streaming()) {
    std::vector<Clock::time_point> at(static_cast<size_t>(c.num_layers + c.num_single_layers));
    std::vector<double> dbl, sgl;
    auto hook = [&](int64_t i, bool before) {
      if (before) {
        at[static_cast<size_t>(i)] = Clock::now();
        return;
      }
      (i < c.num_layers ? dbl : sgl).push_back(1000 * since(at[static_cast<size_t>(i)]));
    };
    auto to = [&](const torch::Tensor& t) { return t.to(cpu, dt); };
    const auto t0 = Clock::now();
    tr->module()->forward(to(hidden), to(enc), to(pooled), to(timestep), img_ids, txt_ids, torch::Tensor(), hook);
    const double total = 1000 * since(t0);
    out["blocks_ms"] = block_summary(dbl, sgl, total);
    out["blocks_ms"]["run_ms"] = total;
  }
  if (!outputs.empty()) io::save_safetensors(outputs, {{"step", fwd().to(torch::kFloat32).contiguous()}});
}

void image_case(const std::string& weights, int size, torch::ScalarType dt, int steps, int warm_steps,
                const std::string& outputs, nlohmann::json& out) {
  const torch::Device cpu(torch::kCPU);
  ModelOptions o;
  o.device = cpu;
  o.dtype = dt;
  std::shared_ptr<Model> m;
  {
    PeakSampler ps(cpu);
    const auto t0 = Clock::now();
    m = flux_family::family().load(weights, o);
    out["load_s"] = since(t0);
    out["load_peak_rss_bytes"] = ps.stop();
  }
  out["variant"] = m->variant();
  std::vector<Clock::time_point> marks;
  auto run = [&](int n_steps) {
    Request r;
    r.task = "txt2img";
    r.strings["prompt"] = kPrompt;
    r.ints["steps"] = n_steps;
    r.ints["seed"] = 0;
    r.ints["width"] = size;
    r.ints["height"] = size;
    marks.clear();
    Job job([&](const Progress& p) {
      if (p.stage == "denoising") marks.push_back(Clock::now());
      return true;
    });
    JobContext ctx(&job);
    marks.push_back(Clock::now());
    Result res = m->run(r, ctx);
    marks.push_back(Clock::now());
    return res;
  };
  if (warm_steps > 0) {
    const auto t0 = Clock::now();
    run(warm_steps);
    out["warm_up_image_steps"] = warm_steps;
    out["warm_up_image_s"] = since(t0);
  }
  Result res;
  {
    PeakSampler ps(cpu);
    res = run(steps);
    out["image_peak_rss_bytes"] = ps.stop();
  }
  auto secs = [](Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); };
  out["image_s"] = secs(marks.front(), marks.back());
  if (static_cast<int>(marks.size()) == steps + 2) {  // start, every step's end, the end
    std::vector<double> later;
    double sum = 0;
    for (int i = 2; i <= steps; ++i) later.push_back(secs(marks[i - 1], marks[i])), sum += later.back();
    const double first = secs(marks[0], marks[1]);
    nlohmann::json st = {{"prompt_and_first_step", first}, {"later_steps", later},
                         {"decode_and_output", secs(marks[steps], marks.back())}};
    if (!later.empty()) {
      st["step_mean_of_later"] = sum / later.size();
      st["text_encoders_estimate"] = first - sum / later.size();
    }
    out["stages_s"] = st;
  }
  for (const auto& [k, v] : res.strings) out["result_strings"][k] = v;
  out["transformer_placement"] = res.strings.count("transformer_placement") ? res.strings["transformer_placement"] : "?";
  if (!outputs.empty() && !res.images.empty()) {
    const Image& img = res.images[0];
    auto t = torch::from_blob(const_cast<uint8_t*>(img.pixels.data()), {img.height, img.width, img.channels}, torch::kUInt8)
                 .permute({2, 0, 1})
                 .to(torch::kFloat32)
                 .contiguous();
    io::save_safetensors(outputs, {{"image", t}});
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string which = "step", weights, dtype = "fp32", out_file, outputs;
  int size = 512, threads = 0, warm = 1, n = 3, steps = 4, warm_steps = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    const char* v = argv[i + 1];
    if (a == "--case") which = v;
    else if (a == "--weights") weights = v;
    else if (a == "--dtype") dtype = v;
    else if (a == "--out") out_file = v;
    else if (a == "--outputs") outputs = v;
    else if (a == "--size") size = std::atoi(v);
    else if (a == "--threads") threads = std::atoi(v);
    else if (a == "--warm") warm = std::atoi(v);
    else if (a == "--n") n = std::atoi(v);
    else if (a == "--steps") steps = std::atoi(v);
    else if (a == "--warm-steps") warm_steps = std::atoi(v);
    else {
      std::cerr << "loupe-bench-flux: unknown option " << a << "\n";
      return 2;
    }
  }
  cpu::apply_threads(cpu::resolve_threads(threads));
  try {
    if (weights.empty()) throw std::runtime_error("--weights DIR is needed (bench/flux_reference.py make DIR)");
    if (size < 16 || size % 16) throw std::runtime_error("--size must be a multiple of 16");
    if (n < 1 || steps < 1) throw std::runtime_error("--n and --steps must be at least 1");
    torch::NoGradGuard ng;
    const auto dt = dtype == "bf16" ? torch::kBFloat16 : torch::kFloat32;
    nlohmann::json out;
    out["stack"] = "loupe";
    out["case"] = which;
    out["machine"] = cpu_name();
    out["devices"] = device_info();
    out["build"] = build_info();
    out["dtype"] = dtype == "bf16" ? "bf16" : "fp32";
    out["threads"] = cpu::current_threads();
    out["size"] = size;
    out["text_tokens"] = kTextTokens;
    if (which == "step") {
      step_case(weights, size, dt, warm, n, outputs, out);
    } else if (which == "image") {
      out["steps"] = steps;
      out["prompt"] = kPrompt;
      out["seed"] = 0;
      image_case(weights, size, dt, steps, warm_steps, outputs, out);
    } else {
      throw std::runtime_error("--case must be step or image");
    }
    out["process_peak_rss_bytes"] = rss_bytes(true);
    const std::string text = out.dump(2);
    if (out_file.empty()) {
      std::cout << text << std::endl;
    } else {
      std::ofstream(out_file) << text << "\n";
      std::cout << text << std::endl;
    }
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "loupe-bench-flux: " << e.what() << std::endl;
    return 1;
  }
}
