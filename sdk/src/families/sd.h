// Stable Diffusion 1.x / 2.x as a Loupe model family ("stable-diffusion").
#pragma once
#include "core/model.h"

namespace loupe::sd {

ModelFamily family();

// A Stable Diffusion model (1.x, 2.x or SDXL) from a diffusers folder or a single file; the "sdxl"
// family loads through this.
std::shared_ptr<Model> load_model(const std::string& path, const ModelOptions& o);

// The tasks every Stable Diffusion model (1.x, 2.x, SDXL, inpainting or not) offers.
const std::vector<std::string>& task_names();

// loupe_model_inspect of a diffusers folder: a problem for each of `subfolders` that is missing.
void inspect_folders(const std::string& path, const std::vector<const char*>& subfolders, nlohmann::json& report);

// loupe_model_inspect of a single file: whether its CLIP tokenizer is on this machine, and if not,
// that it is fetched on first open (info) or cannot be in offline mode (error). Reads no weights.
void inspect_single_file_tokenizer(const std::string& path, nlohmann::json& report);

}  // namespace loupe::sd
