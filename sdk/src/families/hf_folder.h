// What the families whose checkpoints are Hugging Face folders (Florence-2, PaliGemma, BLIP-2) share.
#pragma once
#include <functional>
#include <string>

namespace loupe::families {

// A ModelFamily::detect for folders whose config.json says "model_type": `model_type`: the variant
// from `variant(path)`, or `fallback` (the family's name) when the family's own config reader refuses
// the folder (inspect() then says why); "" for anything else.
std::function<std::string(const std::string&)> detect_by_model_type(std::string model_type, std::string fallback,
                                                                     std::function<std::string(const std::string&)> variant);

}  // namespace loupe::families
