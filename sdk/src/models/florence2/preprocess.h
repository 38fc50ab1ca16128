// Florence-2 image preprocessing: an image -> pixel_values, as the reference image processor makes them.
#pragma once
#include <torch/torch.h>

#include "core/types.h"
#include "models/florence2/config.h"

namespace loupe::florence2 {

// Resizes to cfg.image_size (PIL's 8-bit BICUBIC: antialiased, rounded and clipped after each
// pass), rescales by cfg.rescale_factor and normalises with cfg.image_mean / image_std, on
// `device`. Returns [1, 3, S, S] in `dtype`.
torch::Tensor preprocess_image(const Image& im, const Config& cfg, torch::Device device, torch::ScalarType dtype);

}  // namespace loupe::florence2
