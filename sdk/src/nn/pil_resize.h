// PIL's Image.resize on 8-bit images, to the bit: ImagingResample's separable passes (horizontal
// first, a pass skipped where that size is unchanged), antialiased (the kernel stretches when
// shrinking), fixed-point weights (22 bits), each pass rounded and clipped to 0..255.
// Shared by the processors that must match a PIL-based reference (Florence-2's preprocessing,
// PaliGemma's mask paste).
#pragma once
#include <torch/torch.h>

namespace loupe::nn {

enum class PilFilter { Bilinear, Bicubic };

// hwc: [H, W, C] (or [H, W]) uint8 on any device -> [out_h, out_w, C] (or [out_h, out_w]) uint8.
torch::Tensor pil_resize(const torch::Tensor& hwc, int out_w, int out_h, PilFilter filter = PilFilter::Bicubic);

}  // namespace loupe::nn
