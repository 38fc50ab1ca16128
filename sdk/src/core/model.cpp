#include "core/model.h"

namespace loupe {

void Model::set_lora(const std::string& path, float) {
  LOUPE_THROW(Unsupported, variant() << " does not take LoRA files ('" << path << "')");
}

void Model::set_vae(const std::string& path) {
  LOUPE_THROW(Unsupported, variant() << " does not take an external VAE ('" << path << "')");
}

}  // namespace loupe
