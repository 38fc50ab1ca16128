// Stable Diffusion benchmark, JSON out. The case is the reference run behind the targets
// (../shared/device/reference_baseline.py): SD 1.5 sizes, random weights, fp16, 512 x 512, one UNet
// step with classifier-free guidance (batch 2), the VAE decode, and the whole 30-step Euler image at
// guidance 7.5 from prompt embeddings.
//   loupe-bench-sd [--size sd15|tiny] [--device cuda|cpu] [--dtype fp16|bf16|fp32] [--steps 30]
//                  [--weights DIR]   (a diffusers folder: the same weights the reference run used)
//                  [--threads N]     (CPU threads; default: as the runtime, all physical cores)
//                  [--profile F]     (one UNet step and one VAE decode under libtorch's profiler:
//                                     a Chrome trace in F.unet.json / F.vae.json, then exits)
//                  [--outputs F]     (writes the UNet and VAE outputs to F.safetensors, to compare
//                                     stacks and precisions; --steps 0 leaves out the pipeline)
// On the CPU the inputs are drawn as bench/sd_reference.py draws them (one CPU generator, seed 0),
// so that both stacks' outputs can be compared.
// Peak device memory is sampled from the device's used memory while each case runs (the same
// method bench/sd_reference.py uses for diffusers), so both stacks are measured alike.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>

#include <nlohmann/json.hpp>
#include <torch/torch.h>
#include <torch/csrc/autograd/profiler_legacy.h>

#include "bench_util.h"
#include "core/cpu.h"
#include "core/runtime.h"
#include "io/checkpoint.h"
#include "io/config.h"
#include "io/safetensors.h"
#include "io/state_dict.h"
#include "pipelines/diffusion.h"

using namespace loupe;
using namespace loupe::bench;

namespace {

nlohmann::json unet_config(const std::string& size) {
  if (size == "tiny")
    return {{"block_out_channels", {8, 16, 16}}, {"layers_per_block", 2}, {"norm_num_groups", 4}, {"cross_attention_dim", 32},
            {"attention_head_dim", 2}, {"sample_size", 8},
            {"down_block_types", {"CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"}},
            {"up_block_types", {"UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"}}};
  return {{"cross_attention_dim", 768}};  // diffusers' defaults are SD 1.5's UNet
}

nlohmann::json vae_config(const std::string& size) {
  if (size == "tiny") return {{"block_out_channels", {8, 16, 16, 16}}, {"layers_per_block", 2}, {"norm_num_groups", 4}};
  return {{"block_out_channels", {128, 256, 512, 512}}, {"layers_per_block", 2}, {"sample_size", 512}};
}

}  // namespace

int main(int argc, char** argv) {
  std::string size = "tiny", device = torch::cuda::is_available() ? "cuda" : "cpu", dtype = "auto", weights, outputs,
              profile;
  int steps = 30, threads = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--size")) size = argv[i + 1];
    else if (!std::strcmp(argv[i], "--device")) device = argv[i + 1];
    else if (!std::strcmp(argv[i], "--dtype")) dtype = argv[i + 1];
    else if (!std::strcmp(argv[i], "--steps")) steps = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--weights")) weights = argv[i + 1];
    else if (!std::strcmp(argv[i], "--threads")) threads = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--outputs")) outputs = argv[i + 1];
    else if (!std::strcmp(argv[i], "--profile")) profile = argv[i + 1];
  }
  cpu::apply_threads(cpu::resolve_threads(threads));
  try {
    torch::NoGradGuard ng;
    const torch::Device dev = parse_device(device);
    const auto dt = dtype == "fp32" || (dtype == "auto" && !dev.is_cuda()) ? torch::kFloat32
                    : dtype == "bf16"                                       ? torch::kBFloat16
                                                                            : torch::kFloat16;
    const bool tiny = size == "tiny";
    const int px = tiny ? 64 : 512, lat = px / 8;
    const int64_t ctx_dim = tiny ? 32 : 768;

    pipelines::DiffusionModels m;
    auto ucfg = unet_config(size), vcfg = vae_config(size);
    if (!weights.empty()) {
      ucfg = io::read_json_file(weights + "/unet/config.json");
      vcfg = io::read_json_file(weights + "/vae/config.json");
    }
    m.unet = sd::UNet2DConditionModel(sd::UNetConfig::from_json(ucfg, "unet config"));
    m.vae = sd::AutoencoderKL(sd::VaeConfig::from_json(vcfg, "vae config"));
    m.unet->to(dev, dt);
    m.vae->to(dev, dt);  // the reference decodes in fp16 too
    if (!weights.empty()) {
      io::BindOptions bo;
      bo.device = dev;
      bo.dtype = dt;
      io::bind(*m.unet, io::Checkpoint::open(weights + "/unet"), bo);
      io::bind(*m.vae, io::Checkpoint::open(weights + "/vae"), bo);
    }
    m.unet->eval();
    m.vae->eval();
    m.device = dev;
    m.dtype = dt;
    m.vae_dtype = dt;
    int64_t params = 0;
    for (const auto& p : m.unet->parameters()) params += p.numel();

    nlohmann::json out;
    out["stack"] = "loupe";
    out["machine"] = device_info();
    out["build"] = build_info();
    out["model"] = {{"size", size}, {"unet_params_M", params / 1e6}, {"dtype", dtype_name(dt)}, {"device", dev.str()},
                    {"weights", weights.empty() ? "random (libtorch init)" : weights}};

    out["threads"] = cpu::current_threads();
    // drawn in bench/sd_reference.py's order from one CPU generator, then moved and cast
    torch::manual_seed(0);
    auto rnd = [&](std::vector<int64_t> shape) { return torch::randn(shape).to(dev, dt); };
    const auto pe = rnd({1, 77, ctx_dim}), ne = rnd({1, 77, ctx_dim});
    const auto x = rnd({2, 4, lat, lat}), ctx = rnd({2, 77, ctx_dim}), z = rnd({1, 4, lat, lat});
    const auto t = torch::tensor({500.0f, 500.0f}).to(dev);
    const bool cuda = dev.is_cuda();
    if (!profile.empty()) {
      m.unet->forward(x, t, ctx);  // warm-up
      {
        torch::autograd::profiler::RecordProfile rp(profile + ".unet.json");
        m.unet->forward(x, t, ctx);
      }
      {
        torch::autograd::profiler::RecordProfile rp(profile + ".vae.json");
        m.vae->decode(z);
      }
      return 0;
    }
    {
      PeakSampler ps(dev);
      double cpu_s = 0;
      out["unet_cfg2_step_ms"] = 1000 * timeit(dev, [&] { m.unet->forward(x, t, ctx); }, cuda ? 3 : 1, cuda ? 20 : 3, &cpu_s);
      out["unet_cfg2_step_cpu_ms"] = 1000 * cpu_s;
      out["unet_step_peak_device_bytes"] = ps.stop();
    }
    {
      PeakSampler ps(dev);
      double cpu_s = 0;
      out["vae_decode_ms"] = 1000 * timeit(dev, [&] { m.vae->decode(z); }, cuda ? 2 : 1, cuda ? 5 : 2, &cpu_s);
      out["vae_decode_cpu_ms"] = 1000 * cpu_s;
      out["vae_decode_peak_device_bytes"] = ps.stop();
    }
    pipelines::DiffusionParams p;
    p.sampler = "euler";
    p.steps = steps;
    p.guidance_scale = 7.5;
    p.width = p.height = px;
    if (steps > 0) {
      PeakSampler ps(dev);
      out["pipeline_steps"] = steps;
      out["pipeline_s"] = timeit(dev, [&] { pipelines::txt2img(m, pe, ne, p); }, 1, 3);
      out["pipeline_peak_device_bytes"] = ps.stop();
    }
    if (!outputs.empty())
      io::save_safetensors(outputs, {{"unet", m.unet->forward(x, t, ctx).to(torch::kCPU, torch::kFloat32).contiguous()},
                                     {"vae", m.vae->decode(z).to(torch::kCPU, torch::kFloat32).contiguous()}});
    if (dev.is_cpu()) out["process_peak_rss_bytes"] = rss_bytes(true);
    std::cout << out.dump(2) << std::endl;
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "loupe-bench-sd: " << e.what() << std::endl;
    return 1;
  }
}
