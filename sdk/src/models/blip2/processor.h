// Blip2Processor's work, as transformers does it: the image through BlipImageProcessor (PIL resize
// to the model's size, bicubic by default; rescale; normalise with OpenAI CLIP's mean and std) and
// the prompt's ids: num_query_tokens <image> tokens ahead of the tokenized text in the current
// layout (image_token_index in config.json), the tokenized text alone in the older one (the model
// then puts the query embeddings ahead of it). OPT's tokenizer starts the text with its bos token
// ("</s>"); T5's ends it with "</s>". The tasks' prompts: a caption continues an optional prefix
// ("a photo of"), a question is asked as "Question: {q} Answer:".
#pragma once
#include <string>
#include <vector>

#include <torch/torch.h>

#include "core/types.h"
#include "models/blip2/config.h"

namespace loupe::blip2 {

// An RGB(A)/gray image -> pixel values [1, 3, S, S] in `dtype` on `device`.
torch::Tensor preprocess_image(const Image& image, const Config& cfg, torch::Device device, torch::ScalarType dtype);

// The prompt's ids from the text's own token ids (`text_ids`: the tokenizer's encoding of the text,
// no special tokens): image tokens (current layout), bos (OPT), the text, eos (T5).
std::vector<int64_t> prompt_ids(const Config& cfg, const std::vector<int64_t>& text_ids, int64_t bos_id, int64_t eos_id);

// The text of a task's prompt: "caption" -> the prefix (may be empty), "vqa" -> "Question: {q} Answer:".
// InvalidArgument for an unknown task or an empty question.
std::string task_prompt(const std::string& task, const std::string& text);

}  // namespace loupe::blip2
