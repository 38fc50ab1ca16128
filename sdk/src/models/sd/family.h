// Stable Diffusion 1.x / 2.x as a Loupe model family ("stable-diffusion").
#pragma once
#include "core/model.h"

namespace loupe::sd {

ModelFamily family();

}  // namespace loupe::sd
