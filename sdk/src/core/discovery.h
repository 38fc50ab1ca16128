// Discovery: the models a person already has, found without loading weights (safetensors headers,
// config files and the families' detect/inspect only). Looks in the Hugging Face cache, web-UI
// folders (A1111/Forge: models/Stable-diffusion, Lora, VAE; ComfyUI: models/checkpoints,
// diffusion_models, unet, loras, vae, text_encoders, clip), the runtime's models folder and folders
// the host adds, and matches what it finds to the catalog.
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/catalog.h"

namespace loupe {

struct ScanOptions {
  std::vector<std::string> dirs;  // folders the host adds (web-UI roots, their models folders, any folder)
  std::string models_dir;         // the runtime's models folder ("" = none)
  bool default_locations = true;  // the Hugging Face cache and web-UI installs in the home folder
  const Catalog* catalog = nullptr;  // nullptr = the built-in catalog
};

// JSON {roots: [{path, source, exists}], models: [{path, name, source, kind, family, variant, base,
// tasks, format, bytes, precision, dtypes, repo, revision, catalog_id, supported, problems:
// [{severity, message, remedy}]}], catalog: [{id, name, family, family_name, repo, folder, license,
// size_bytes, vram_bytes, tasks, files, found: [path], state, path, missing_files}]} (as loupe.h says).
// kind: model, lora, vae, text_encoder, unet, embedding, partial, unknown. Never throws for what it
// finds on disk (unreadable files become problems); throws InvalidArgument for bad options.
nlohmann::json scan_models(const ScanOptions& options);

// One weight file, from its safetensors header only: kind, family, variant, base, precision,
// problems (the same entry as in scan_models' "models").
nlohmann::json describe_weight_file(const std::string& path, const std::string& kind_hint = "");

}  // namespace loupe
