// The interface every model family implements. A Model owns its weights; pipelines (tasks) are
// run through it. The runtime moves weights between the device and host memory (VRAM budget).
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "core/job.h"
#include "core/tasks.h"
#include "core/types.h"

namespace loupe {

struct ModelOptions {
  torch::Device device = torch::kCPU;
  torch::ScalarType dtype = torch::kFloat32;
  // The runtime's models folder ("" = none): where a family may look for files a checkpoint lacks
  // (e.g. a single SD file's CLIP tokenizer).
  std::string models_dir;
  // The runtime's VRAM budget (0 = none): a family that can run with part of its weights on the
  // device at a time (FLUX.1: blocks streamed) uses it to choose; the others load whole.
  uint64_t device_budget_bytes = 0;
};

class Model {
 public:
  virtual ~Model() = default;
  virtual std::string family() const = 0;   // "florence2", "stable-diffusion", ...
  virtual std::string variant() const = 0;  // "florence2-base", "sd15", ...
  // The tasks it offers: entries of the task table (tasks::get), with defaults and ranges adjusted
  // to this model where they differ (its native size, its generation settings).
  virtual std::vector<loupe::tasks::Task> tasks() const = 0;
  virtual uint64_t bytes() const = 0;       // bytes of all weights
  // Moves all weights to `device` (keeping the dtype). Used for offloading to host memory.
  virtual void to(torch::Device device) = 0;
  // Runs one request: checks it against the description of its task in tasks() (tasks::resolve:
  // defaults filled in, types, ranges and choices checked), then run_task.
  Result run(const Request& request, JobContext& ctx);
  // Optional: LoRA (diffusion families). Default: Unsupported error.
  virtual void set_lora(const std::string& path, float weight);
  // Optional: uses an external VAE (diffusion families); "" restores the checkpoint's own. Default:
  // Unsupported error.
  virtual void set_vae(const std::string& path);

 protected:
  // Runs a resolved request: every parameter of its task is there and checked (Request::integer,
  // real, flag, text). Long loops call ctx.check_cancelled() between steps and report progress.
  virtual Result run_task(const Request& request, JobContext& ctx) = 0;
};

// A family registers a detector and a loader. detect() looks at a folder/file without loading
// weights and returns a non-empty variant name when the family recognises it.
struct ModelFamily {
  std::string name;
  std::function<std::string(const std::string& path)> detect;
  std::function<std::shared_ptr<Model>(const std::string& path, const ModelOptions& opts)> load;
  // Describes the folder for loupe_model_inspect: problems (missing files...) as JSON objects
  // {severity, message, remedy}. May be empty.
  std::function<void(const std::string& path, nlohmann::json& report)> inspect;
  // Precision "auto" on a CPU with native bf16 (AVX512-BF16 or AMX) runs this family in bf16
  // (diffusion: several times faster, images close to fp32's); others stay in fp32.
  bool bf16_on_fast_cpu = false;
  // The tasks its models offer (names in the task table), for reports made without loading
  // weights (loupe_model_inspect, the models scan). A session's own list is Model::tasks().
  std::vector<std::string> tasks;
};

// All families compiled in (explicit list in core/families.cpp: static-library registration
// objects would be dropped by the linker).
std::vector<ModelFamily> model_families();
// Adds a family at run time (before the built-in ones in detection order). Internal: used by
// tests and by embedders that link the static library.
void register_model_family(ModelFamily family);

}  // namespace loupe
