#include "models/paligemma/processor.h"

#include "core/error.h"
#include "nn/pil_resize.h"

namespace loupe::paligemma {

torch::Tensor preprocess_image(const Image& image, const Config& cfg, torch::Device device, torch::ScalarType dtype) {
  if (image.empty()) LOUPE_THROW(InvalidArgument, "PaliGemma: the image is empty");
  const Image rgb = image.to_rgb();
  auto t = torch::from_blob(const_cast<uint8_t*>(rgb.pixels.data()), {rgb.height, rgb.width, 3}, torch::kUInt8).clone();
  if (rgb.height != cfg.image_height || rgb.width != cfg.image_width)
    t = nn::pil_resize(t, static_cast<int>(cfg.image_width), static_cast<int>(cfg.image_height),
                       cfg.resample == 2 ? nn::PilFilter::Bilinear : nn::PilFilter::Bicubic);
  return nn::hf_rescale_normalize(t, cfg.do_rescale, cfg.rescale_factor, cfg.do_normalize, cfg.image_mean, cfg.image_std)
      .to(device, dtype);
}

std::vector<int64_t> prompt_ids(const text::SentencePieceTokenizer& tok, const Config& cfg, const std::string& prompt) {
  std::vector<int64_t> ids(static_cast<size_t>(cfg.num_image_tokens), cfg.image_token_id);
  const int64_t bos = tok.bos_id() >= 0 ? tok.bos_id() : cfg.text.bos_token_id;
  if (bos < 0) LOUPE_THROW(BadModel, "PaliGemma: the tokenizer has no <bos> token");
  ids.push_back(bos);
  for (auto t : tok.encode(prompt + "\n")) ids.push_back(t);
  return ids;
}

std::string task_prompt(const std::string& task, const std::string& text, const std::string& language) {
  auto need = [&](const char* what) {
    if (text.find_first_not_of(" \t\r\n") == std::string::npos)
      LOUPE_THROW(InvalidArgument, "PaliGemma task '" << task << "' needs " << what);
  };
  const std::string lang = language.empty() ? "en" : language;
  if (task == "caption") return "caption " + lang;
  if (task == "vqa") {
    need("a question (\"question\")");
    return "answer " + lang + " " + text;
  }
  if (task == "ocr") return "ocr";
  if (task == "detect" || task == "open_vocabulary_detect") {
    need("what to detect (\"text\", e.g. \"cat ; dog\")");
    return "detect " + text;
  }
  if (task == "segment") {
    need("what to segment (\"text\", e.g. \"cat\")");
    return "segment " + text;
  }
  LOUPE_THROW(InvalidArgument, "PaliGemma does not do task '" << task << "'");
}

}  // namespace loupe::paligemma
