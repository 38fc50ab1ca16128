// PaliGemma and PaliGemma 2 as a Loupe model family ("paligemma"): captions (with a language),
// visual question answering, OCR, detection ("cat ; dog") and segmentation (big_vision's mask
// decoder, vae-oid.npz next to the model or in the models folder).
#pragma once
#include "core/model.h"

namespace loupe::paligemma {

ModelFamily family();

}  // namespace loupe::paligemma
