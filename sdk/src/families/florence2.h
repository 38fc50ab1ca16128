// Florence-2 as a Loupe model family.
#pragma once
#include "core/model.h"

namespace loupe::florence2 {

ModelFamily family();

}  // namespace loupe::florence2
