// The model families compiled into libloupe, in detection order.
#include "core/model.h"

namespace loupe {

const std::vector<ModelFamily>& model_families() {
  static const std::vector<ModelFamily> families = [] {
    std::vector<ModelFamily> f;
    return f;
  }();
  return families;
}

}  // namespace loupe
