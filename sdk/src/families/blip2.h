// BLIP-2 as a Loupe model family ("blip2"): captions (optionally continuing a prefix such as
// "a photo of") and visual question answering ("Question: ... Answer:"), on OPT (the shared
// decoder-only core); Salesforce/blip2-opt-2.7b / -6.7b layouts, both prompt layouts.
#pragma once
#include "core/model.h"

namespace loupe::blip2 {

ModelFamily family();

}  // namespace loupe::blip2
