// PaliGemmaProcessor's work, as transformers does it: the image through SiglipImageProcessor (PIL
// resize to the model's size, rescale, normalise) and the prompt laid out as
// <image> x num_image_tokens, <bos>, the prompt's tokens, "\n" (build_string_from_input).
#pragma once
#include <string>
#include <vector>

#include <torch/torch.h>

#include "core/types.h"
#include "models/paligemma/config.h"
#include "text/sentencepiece.h"

namespace loupe::paligemma {

// An RGB(A)/gray image -> pixel values [1, 3, H, W] in `dtype` on `device`.
torch::Tensor preprocess_image(const Image& image, const Config& cfg, torch::Device device, torch::ScalarType dtype);

// The prompt's ids: num_image_tokens x image token, bos, tokens of prompt + "\n".
std::vector<int64_t> prompt_ids(const text::SentencePieceTokenizer& tok, const Config& cfg, const std::string& prompt);

// The prompt of a task, in big_vision's / the mix checkpoints' wording: "caption en", "answer en Q",
// "ocr", "detect cat ; dog", "segment cat". InvalidArgument for an unknown task or empty text.
std::string task_prompt(const std::string& task, const std::string& text, const std::string& language);

}  // namespace loupe::paligemma
