#include "families/sdxl.h"

#include <filesystem>

#include "families/sd.h"
#include "models/sd/single_file.h"
#include "io/config.h"

namespace fs = std::filesystem;

namespace loupe::sdxl {

namespace {

// The UNet's config says SDXL (the "text_time" added conditioning), whatever the folder is called
// or model_index.json claims.
bool text_time_unet(const fs::path& dir) {
  const fs::path cfg = dir / "unet" / "config.json";
  if (!fs::exists(cfg)) return false;
  const auto j = io::read_json_file(cfg.string());
  const auto it = j.find("addition_embed_type");
  return it != j.end() && it->is_string() && it->get<std::string>() == "text_time";
}

}  // namespace

ModelFamily family() {
  ModelFamily f;
  f.name = "sdxl";
  f.bf16_on_fast_cpu = true;
  f.tasks = sd::task_names();
  f.detect = [](const std::string& path) -> std::string {
    if (!fs::is_directory(path)) {
      const std::string v = sd::detect_single_file(path);  // from the tensors
      return v.rfind("sdxl", 0) == 0 ? v : "";
    }
    if (!text_time_unet(path)) return "";
    const fs::path d(path);
    int in_channels = 4;
    const auto j = io::read_json_file((d / "unet" / "config.json").string());
    if (j.contains("in_channels") && j["in_channels"].is_number_integer()) in_channels = j["in_channels"].get<int>();
    if (in_channels == 9) return "sdxl-inpainting";
    // the refiner: OpenCLIP-G alone (no text_encoder/), aesthetic-score conditioning
    return !fs::is_directory(d / "text_encoder") && fs::is_directory(d / "text_encoder_2") ? "sdxl-refiner" : "sdxl";
  };
  f.load = [](const std::string& path, const ModelOptions& o) -> std::shared_ptr<Model> { return sd::load_model(path, o); };
  f.inspect = [](const std::string& path, nlohmann::json& report) {
    if (fs::is_directory(path) && !fs::is_directory(fs::path(path) / "text_encoder") &&
        fs::is_directory(fs::path(path) / "text_encoder_2"))  // the refiner
      sd::inspect_folders(path, {"unet", "vae", "text_encoder_2", "tokenizer_2", "scheduler"}, report);
    else
      sd::inspect_folders(path, {"unet", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "scheduler"},
                          report);
    sd::inspect_single_file_tokenizer(path, report);  // a single file: its tokenizers' vocabulary
  };
  return f;
}

}  // namespace loupe::sdxl
