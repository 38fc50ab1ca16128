// Discovery speed: a folder of N LoRA files (SD 1.5-sized kohya headers: 264 modules x 3 tensors,
// names as sd-scripts writes them) plus M checkpoint-sized headers, scanned with headers only.
// JSON out; the target is 1000 files in under 2 s on the 2-core build machine.
//   loupe-bench-scan [--files 1000] [--runs 3] [--dir DIR]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <time.h>

#include <nlohmann/json.hpp>

#include "core/discovery.h"
#include "io/safetensors.h"

namespace fs = std::filesystem;
using namespace loupe;

namespace {

// One LoRA of SD 1.5's shape of header (rank-1 tensors keep the data small; the header is what
// discovery reads).
std::string lora_template(const fs::path& dir) {
  std::vector<std::pair<std::string, torch::Tensor>> ts;
  const char* blocks[] = {"down_blocks_0", "down_blocks_1", "down_blocks_2", "up_blocks_1", "up_blocks_2", "up_blocks_3"};
  int modules = 0;
  for (const char* b : blocks)
    for (int a = 0; a < 3 && modules < 192; ++a)
      for (const char* m : {"attn1_to_q", "attn1_to_k", "attn1_to_v", "attn1_to_out_0", "attn2_to_q", "attn2_to_k",
                            "attn2_to_v", "attn2_to_out_0", "ff_net_0_proj", "ff_net_2", "proj_in"}) {
        const std::string name = std::string("lora_unet_") + b + "_attentions_" + std::to_string(a) +
                                 "_transformer_blocks_0_" + m;
        const int64_t in = std::strstr(m, "attn2_to_k") || std::strstr(m, "attn2_to_v") ? 768 : 8;
        ts.push_back({name + ".lora_down.weight", torch::zeros({1, in}, torch::kFloat16)});
        ts.push_back({name + ".lora_up.weight", torch::zeros({8, 1}, torch::kFloat16)});
        ts.push_back({name + ".alpha", torch::zeros({}, torch::kFloat16)});
        ++modules;
      }
  for (int l = 0; l < 12; ++l)
    for (const char* m : {"self_attn_q_proj", "self_attn_k_proj", "self_attn_v_proj", "self_attn_out_proj", "mlp_fc1", "mlp_fc2"}) {
      const std::string name = "lora_te_text_model_encoder_layers_" + std::to_string(l) + "_" + m;
      ts.push_back({name + ".lora_down.weight", torch::zeros({1, 768}, torch::kFloat16)});
      ts.push_back({name + ".lora_up.weight", torch::zeros({8, 1}, torch::kFloat16)});
      ts.push_back({name + ".alpha", torch::zeros({}, torch::kFloat16)});
    }
  const fs::path p = dir / "template.safetensors";
  io::save_safetensors(p.string(), ts, {{"ss_base_model_version", "sd_v1"}});
  std::ifstream in(p, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), {});
  fs::remove(p);
  return bytes;
}

}  // namespace

int main(int argc, char** argv) {
  int files = 1000, runs = 3;
  fs::path dir = fs::temp_directory_path() / ("loupe-bench-scan-" + std::to_string(::getpid()));
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--files") files = std::stoi(argv[i + 1]);
    else if (a == "--runs") runs = std::stoi(argv[i + 1]);
    else if (a == "--dir") dir = argv[i + 1];
    else {
      std::fprintf(stderr, "usage: loupe-bench-scan [--files N] [--runs R] [--dir DIR]\n");
      return 2;
    }
  }
  fs::remove_all(dir);
  fs::create_directories(dir / "Lora");
  const std::string bytes = lora_template(dir);
  uint64_t header = 0;
  for (int i = 7; i >= 0; --i) header = (header << 8) | static_cast<uint8_t>(bytes[i]);
  for (int i = 0; i < files; ++i) {
    std::ofstream out(dir / "Lora" / ("lora-" + std::to_string(i) + ".safetensors"), std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  ScanOptions o;
  o.default_locations = false;
  o.dirs = {dir.string()};
  // CPU time (all threads of the process) beside wall time: the build machine is shared, so wall
  // time alone says little about the scan.
  auto cpu_now = [] {
    timespec t{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
  };
  std::vector<double> ts, cpu;
  size_t found = 0;
  for (int r = 0; r < runs; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    const double c0 = cpu_now();
    const auto j = scan_models(o);
    ts.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    cpu.push_back(cpu_now() - c0);
    found = j["models"].size();
  }
  const double first = ts.empty() ? 0.0 : ts.front();
  std::sort(ts.begin(), ts.end());
  std::sort(cpu.begin(), cpu.end());
  const io::SafetensorsFile probe((dir / "Lora" / "lora-0.safetensors").string());
  nlohmann::json out = {{"benchmark", "scan"},
                        {"files", files},
                        {"found", found},
                        {"tensors_per_file", probe.names().size()},
                        {"header_bytes_per_file", header},
                        {"runs", runs},
                        {"first_run_s", first},
                        {"median_s", ts.empty() ? 0.0 : ts[ts.size() / 2]},
                        {"median_cpu_s", cpu.empty() ? 0.0 : cpu[cpu.size() / 2]},
                        {"files_per_s", ts.empty() ? 0.0 : files / ts[ts.size() / 2]}};
  fs::remove_all(dir);
  std::printf("%s\n", out.dump(2).c_str());
  return found == static_cast<size_t>(files) ? 0 : 1;
}
