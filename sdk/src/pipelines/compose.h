// What happens around the denoising loop when a person inpaints in an editor: the region to work
// on ("only masked" crops around the mask with padding), the mask the model sees (blurred a little
// past the painted edge), and the composite back into the original (feathered inside the mask,
// optional colour matching), so that pixels outside the painted mask are exactly the input's.
#pragma once
#include <functional>

#include <torch/torch.h>

#include "core/types.h"

namespace loupe::pipelines {

struct Rect {
  int x = 0, y = 0, w = 0, h = 0;
  bool empty() const { return w <= 0 || h <= 0; }
};

// Bounding box of the non-zero mask pixels (empty when the mask is all zero).
Rect mask_bounds(const Image& mask);
// `r` grown by `padding` on each side, then widened/heightened to the aspect ratio aw:ah, clamped
// to the image (web UIs' "only masked" crop).
Rect crop_region(Rect r, int padding, int aw, int ah, int image_w, int image_h);

// uint8 image <-> float tensors
torch::Tensor image_to_tensor(const Image& img);          // [1, C, H, W] float in [0, 1]
Image tensor_to_image(const torch::Tensor& t);            // [1, C, H, W] in [0, 1] -> uint8
Image hwc_to_image(const torch::Tensor& t);               // [H, W, 3] uint8 (a live preview) -> RGB8
Image crop(const Image& img, const Rect& r);
// Bicubic (antialiased when shrinking) resize of a [1, C, H, W] tensor.
torch::Tensor resize(const torch::Tensor& t, int w, int h);

// Gaussian blur of a [1, 1, H, W] mask with standard deviation `sigma` pixels (0: unchanged).
torch::Tensor blur_mask(const torch::Tensor& mask, double sigma);

// The model's mask: the painted mask grown by its blur (everything the blur reaches above 0.1),
// so the model redraws a little past the edge and the feathered composite has content to blend.
torch::Tensor model_mask(const torch::Tensor& mask, double blur);

// Compositing alpha in [0, 1]: 0 outside the painted mask, rising to 1 at `feather` pixels inside
// it (smoothstep of the distance to the nearest unpainted pixel). feather 0: the mask itself.
torch::Tensor feather_alpha(const Image& mask, double feather);

// Shifts the generated pixels' per-channel mean and spread to the original's, measured on the
// ring of `band` pixels just outside the painted mask.
Image color_correct(const Image& generated, const Image& original, const Image& mask, int band);

// out = original where alpha == 0 (bit-exact), alpha-blend elsewhere. All the same size (RGB8).
Image composite(const Image& original, const Image& generated, const torch::Tensor& alpha);

// The editor's inpainting around any model's denoising loop, as Stable Diffusion's session does it:
// the region ("only masked": a crop around the painted mask with `padding`, generated at `native`
// pixels on its long side or at width x height), the processing size (multiples of `multiple`),
// the model's mask (the painted mask grown by its blur, binarised at the processing size), then
// the result resized back, optionally colour-matched, and composited into the original inside the
// painted mask only (feathered inwards): pixels outside the mask are exactly the input's.
struct InpaintSettings {
  double mask_blur = 4, feather = 8;
  bool only_masked = false, color_correction = false;
  int padding = 32;
  int width = 0, height = 0;  // processing size; 0 = the image's (or the crop's at `native`)
  int native = 512;           // the model's native size (only masked, width/height 0)
  int multiple = 8;           // the processing size is rounded to multiples of it
};
// `run` gets the image [1, 3, h, w] in [-1, 1] and the model's mask [1, 1, h, w] in {0, 1} at the
// processing size and returns the image [1, 3, h, w] in [0, 1]. `src` and `mask` the same size.
Image inpaint_around(const Image& src, const Image& mask, const InpaintSettings& s,
                     const std::function<torch::Tensor(const torch::Tensor& image, const torch::Tensor& mask)>& run);

}  // namespace loupe::pipelines
