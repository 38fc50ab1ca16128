// Stable Diffusion XL as a Loupe model family ("sdxl"): diffusers folders with two text encoders
// and the "text_time" UNet. The model itself is Stable Diffusion's (families/sd.cpp): one
// implementation of loading, prompts, tasks and the editor-facing parts.
#pragma once
#include "core/model.h"

namespace loupe::sdxl {

ModelFamily family();

}  // namespace loupe::sdxl
