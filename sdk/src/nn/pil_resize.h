// PIL's Image.resize on 8-bit images, to the bit: ImagingResample's separable passes (horizontal
// first, a pass skipped where that size is unchanged), antialiased (the kernel stretches when
// shrinking), fixed-point weights (22 bits), each pass rounded and clipped to 0..255.
// Shared by the processors that must match a PIL-based reference (Florence-2's preprocessing,
// PaliGemma's mask paste).
#pragma once
#include <array>

#include <torch/torch.h>

namespace loupe::nn {

enum class PilFilter { Bilinear, Bicubic };

// hwc: [H, W, C] (or [H, W]) uint8 on any device -> [out_h, out_w, C] (or [out_h, out_w]) uint8.
torch::Tensor pil_resize(const torch::Tensor& hwc, int out_w, int out_h, PilFilter filter = PilFilter::Bicubic);

// What transformers' image processors (SiglipImageProcessor, BlipImageProcessor) do after the
// resize: uint8 [H, W, 3] -> [1, 3, H, W] fp32, rescaled in float64 then cast to float32, then
// normalised in float32 as (x - mean) / std.
torch::Tensor hf_rescale_normalize(const torch::Tensor& hw3, bool do_rescale, double rescale_factor, bool do_normalize,
                                   const std::array<double, 3>& mean, const std::array<double, 3>& std);

}  // namespace loupe::nn
