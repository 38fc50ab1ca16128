// Stable Diffusion benchmark, JSON out. The case is the reference run behind the targets
// (../shared/device/reference_baseline.py): SD 1.5 sizes, random weights, fp16, 512 x 512, one UNet
// step with classifier-free guidance (batch 2), the VAE decode, and the whole 30-step Euler image at
// guidance 7.5 from prompt embeddings. --size sdxl: SDXL base 1.0 sizes at 1024 x 1024 (the UNet step
// with guidance takes the pooled text embedding and the size/crop time ids too), UNet step and VAE
// decode only.
//   loupe-bench-sd [--size sd15|sdxl|tiny] [--device cuda|cpu] [--dtype fp16|bf16|fp32] [--steps 30]
//                  [--resolution PX]  (image side in pixels, a multiple of 8; default 512, sdxl 1024,
//                                      tiny 64)
//                  [--cases unet,vae] (which of the two cases to run, each alone in its process
//                                      when asked: only the model it needs is loaded)
//                  [--weights DIR]   (a diffusers folder: the same weights the reference run used)
//                  [--threads N]     (CPU threads; default: as the runtime, all physical cores)
//                  [--profile F]     (one UNet step and one VAE decode under libtorch's profiler:
//                                     a Chrome trace in F.unet.json / F.vae.json, then exits)
//                  [--outputs F]     (writes the UNet and VAE outputs to F.safetensors, to compare
//                                     stacks and precisions; --steps 0 leaves out the pipeline)
// On the CPU the inputs are drawn as bench/sd_reference.py draws them (one CPU generator, seed 0),
// so that both stacks' outputs can be compared. The run that makes a case's output is also its
// warm-up run.
// Peak device memory is sampled from the device's used memory while each case runs (the same
// method bench/sd_reference.py uses for diffusers), so both stacks are measured alike.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <map>
#include <string>

#include <nlohmann/json.hpp>
#include <torch/torch.h>
#include <torch/csrc/autograd/profiler_legacy.h>

#include "bench_util.h"
#include "core/cpu.h"
#include "core/cpu_cache.h"
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
  if (size == "sdxl")  // stabilityai/stable-diffusion-xl-base-1.0's unet/config.json (as bench/sd_reference.py)
    return {{"block_out_channels", {320, 640, 1280}}, {"layers_per_block", 2}, {"transformer_layers_per_block", {1, 2, 10}},
            {"attention_head_dim", {5, 10, 20}}, {"cross_attention_dim", 2048}, {"addition_embed_type", "text_time"},
            {"addition_time_embed_dim", 256}, {"projection_class_embeddings_input_dim", 2816},
            {"use_linear_projection", true}, {"sample_size", 128},
            {"down_block_types", {"DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"}},
            {"up_block_types", {"CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"}}};
  if (size != "sd15") throw std::invalid_argument("--size " + size + " (sd15, sdxl or tiny)");
  return {{"cross_attention_dim", 768}};  // diffusers' defaults are SD 1.5's UNet
}

nlohmann::json vae_config(const std::string& size) {
  if (size == "tiny") return {{"block_out_channels", {8, 16, 16, 16}}, {"layers_per_block", 2}, {"norm_num_groups", 4}};
  nlohmann::json c = {{"block_out_channels", {128, 256, 512, 512}}, {"layers_per_block", 2}, {"sample_size", 512}};
  if (size == "sdxl") c["sample_size"] = 1024, c["scaling_factor"] = 0.13025;
  return c;
}

}  // namespace

int main(int argc, char** argv) {
  std::string size = "tiny", device = torch::cuda::is_available() ? "cuda" : "cpu", dtype = "auto", weights, outputs,
              profile, cases = "unet,vae";
  int steps = -1, threads = 0, px = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--size")) size = argv[i + 1];
    else if (!std::strcmp(argv[i], "--device")) device = argv[i + 1];
    else if (!std::strcmp(argv[i], "--dtype")) dtype = argv[i + 1];
    else if (!std::strcmp(argv[i], "--steps")) steps = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--resolution")) px = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--cases")) cases = argv[i + 1];
    else if (!std::strcmp(argv[i], "--weights")) weights = argv[i + 1];
    else if (!std::strcmp(argv[i], "--threads")) threads = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--outputs")) outputs = argv[i + 1];
    else if (!std::strcmp(argv[i], "--profile")) profile = argv[i + 1];
    else {
      std::cerr << "loupe-bench-sd: unknown option " << argv[i] << std::endl;
      return 2;
    }
  }
  cpu::apply_threads(cpu::resolve_threads(threads));
  try {
    torch::NoGradGuard ng;
    const torch::Device dev = parse_device(device);
    const auto dt = dtype == "fp32" || (dtype == "auto" && !dev.is_cuda()) ? torch::kFloat32
                    : dtype == "bf16"                                       ? torch::kBFloat16
                                                                            : torch::kFloat16;
    const bool tiny = size == "tiny", xl = size == "sdxl";
    const bool run_unet = cases.find("unet") != std::string::npos, run_vae = cases.find("vae") != std::string::npos;
    if (!run_unet && !run_vae) throw std::invalid_argument("--cases " + cases + " (unet, vae or unet,vae)");
    if (steps < 0) steps = xl ? 0 : 30;
    if (px <= 0) px = tiny ? 64 : xl ? 1024 : 512;
    if (px % 8) throw std::invalid_argument("--resolution must be a multiple of 8");
    const int lat = px / 8;

    pipelines::DiffusionModels m;
    auto ucfg = unet_config(size), vcfg = vae_config(size);
    if (!weights.empty()) {
      ucfg = io::read_json_file(weights + "/unet/config.json");
      vcfg = io::read_json_file(weights + "/vae/config.json");
    }
    // the inputs' sizes come from the UNet's config, read for a VAE-only run too (the same draws)
    const auto uc = sd::UNetConfig::from_json(ucfg, "unet config");
    const bool text_time = uc.text_time;
    const int64_t ctx_dim = uc.cross_attention_dim.at(0),
                  pooled_dim = uc.projection_class_embeddings_input_dim - 6 * uc.addition_time_embed_dim;
    if (steps > 0 && (text_time || !run_unet || !run_vae))
      throw std::invalid_argument("the whole-image pipeline (--steps) runs for sd15/tiny with both models: pass --steps 0");
    io::BindOptions bo;
    bo.device = dev;
    bo.dtype = dt;
    auto vae_dt = dt;
    int64_t params = 0;
    if (run_unet) {
      m.unet = sd::UNet2DConditionModel(uc);
      m.unet->to(dev, dt);
      if (!weights.empty()) io::bind(*m.unet, io::Checkpoint::open(weights + "/unet"), bo);
      m.unet->eval();
      for (const auto& p : m.unet->parameters()) params += p.numel();
    }
    if (run_vae) {
      m.vae = sd::AutoencoderKL(sd::VaeConfig::from_json(vcfg, "vae config"));
      // on the CPU in the dtype a session gives it (sd::vae_dtype: fp32); on a GPU in the model's,
      // as the reference decodes in fp16 too
      vae_dt = dev.is_cpu() ? sd::vae_dtype(dt, dev, m.vae->cfg) : dt;
      m.vae->to(dev, vae_dt);
      io::BindOptions vo = bo;
      vo.dtype = vae_dt;
      if (!weights.empty()) io::bind(*m.vae, io::Checkpoint::open(weights + "/vae"), vo);
      m.vae->eval();
    }
    m.device = dev;
    m.dtype = dt;
    m.vae_dtype = vae_dt;

    nlohmann::json out;
    out["stack"] = "loupe";
    out["machine"] = device_info();
    out["build"] = build_info();
    out["model"] = {{"size", size}, {"unet_params_M", params / 1e6}, {"dtype", dtype_name(dt)}, {"device", dev.str()},
                    {"weights", weights.empty() ? "random (libtorch init)" : weights}};
    out["resolution"] = px;
    out["cases"] = cases;

    out["threads"] = cpu::current_threads();
    // drawn in bench/sd_reference.py's order from one CPU generator, then moved and cast
    torch::manual_seed(0);
    auto rnd = [&](std::vector<int64_t> shape) { return torch::randn(shape).to(dev, dt); };
    torch::Tensor pe, ne, x, ctx, z, pooled, tids;
    if (text_time) {  // latents, prompt embeddings (both encoders), pooled embedding; time ids: no crop, px x px
      x = rnd({2, 4, lat, lat}), ctx = rnd({2, 77, ctx_dim}), pooled = rnd({2, pooled_dim}), z = rnd({1, 4, lat, lat});
      tids = pipelines::time_ids(px, px, 0, 0, px, px).repeat({2, 1}).to(dev, dt);
    } else {
      pe = rnd({1, 77, ctx_dim}), ne = rnd({1, 77, ctx_dim});
      x = rnd({2, 4, lat, lat}), ctx = rnd({2, 77, ctx_dim}), z = rnd({1, 4, lat, lat});
    }
    const auto t = torch::tensor({500.0f, 500.0f}).to(dev);
    // On the CPU the runtime's block cache (core/cpu_cache.h) is installed, and emptied after every
    // run as the runtime empties it after every job (LOUPE_CPU_CACHE=0: libtorch's allocator alone).
    const bool block_cache = dev.is_cpu() && cpu::install_block_cache();
    out["cpu_block_cache"] = block_cache;
    auto job = [](auto&& f) {
      auto y = f();
      cpu::release_block_cache();
      return y;
    };
    auto unet_step = [&] { return job([&] { return m.unet->forward(x, t, ctx, pooled, tids); }); };
    auto vae_decode = [&] { return job([&] { return m.vae->decode(z.to(m.vae_dtype)); }); };
    const bool cuda = dev.is_cuda();
    if (!profile.empty()) {
      if (run_unet) {
        unet_step();  // warm-up
        torch::autograd::profiler::RecordProfile rp(profile + ".unet.json");
        unet_step();
      }
      if (run_vae) {
        torch::autograd::profiler::RecordProfile rp(profile + ".vae.json");
        vae_decode();
      }
      return 0;
    }
    std::map<std::string, torch::Tensor> kept;  // the outputs, for the comparison of the stacks
    auto keep = [&](const char* name, const torch::Tensor& v) {
      if (!outputs.empty()) kept[name] = v.to(torch::kCPU, torch::kFloat32).contiguous();
    };
    if (run_unet) {
      PeakSampler ps(dev);
      double cpu_s = 0;
      keep("unet", unet_step());  // the first warm-up run
      out["unet_cfg2_step_ms"] = 1000 * timeit(dev, [&] { unet_step(); }, cuda ? 2 : 0, cuda ? 20 : 3, &cpu_s);
      out["unet_cfg2_step_cpu_ms"] = 1000 * cpu_s;
      out["unet_step_peak_device_bytes"] = ps.stop();
    }
    if (run_vae) {
      PeakSampler ps(dev);
      double cpu_s = 0;
      keep("vae", vae_decode());  // the first warm-up run
      out["vae_decode_ms"] = 1000 * timeit(dev, [&] { vae_decode(); }, cuda ? 1 : 0, cuda ? 5 : 2, &cpu_s);
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
      out["pipeline_s"] = timeit(dev, [&] { job([&] { return pipelines::txt2img(m, pe, ne, p); }); }, 1, 3);
      out["pipeline_peak_device_bytes"] = ps.stop();
    }
    if (!outputs.empty()) io::save_safetensors(outputs, {kept.begin(), kept.end()});
    if (dev.is_cpu()) out["process_peak_rss_bytes"] = rss_bytes(true);
    if (block_cache) out["cpu_block_cache_stats"] = cpu::to_json(cpu::block_cache_stats());
    std::cout << out.dump(2) << std::endl;
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "loupe-bench-sd: " << e.what() << std::endl;
    return 1;
  }
}
