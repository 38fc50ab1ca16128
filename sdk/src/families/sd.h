// Stable Diffusion 1.x / 2.x as a Loupe model family ("stable-diffusion").
#pragma once
#include "core/model.h"

namespace loupe::sd {

ModelFamily family();

// A Stable Diffusion model (1.x, 2.x or SDXL) from a diffusers folder or a single file; the "sdxl"
// family loads through this.
std::shared_ptr<Model> load_model(const std::string& path, const ModelOptions& o);

}  // namespace loupe::sd
