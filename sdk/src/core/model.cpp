#include "core/model.h"

namespace loupe {

void Model::set_lora(const std::string& path, float) {
  LOUPE_THROW(Unsupported, variant() << " does not take LoRA files ('" << path << "')");
}

}  // namespace loupe
