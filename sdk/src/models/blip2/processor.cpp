#include "models/blip2/processor.h"

#include "core/error.h"
#include "nn/pil_resize.h"

namespace loupe::blip2 {

torch::Tensor preprocess_image(const Image& image, const Config& cfg, torch::Device device, torch::ScalarType dtype) {
  if (image.empty()) LOUPE_THROW(InvalidArgument, "BLIP-2: the image is empty");
  const Image rgb = image.to_rgb();  // do_convert_rgb
  auto t = torch::from_blob(const_cast<uint8_t*>(rgb.pixels.data()), {rgb.height, rgb.width, 3}, torch::kUInt8).clone();
  if (rgb.height != cfg.image_height || rgb.width != cfg.image_width) {
    if (!cfg.do_resize)
      LOUPE_THROW(InvalidArgument, "BLIP-2: the image is " << rgb.width << "x" << rgb.height << " and the processor does not "
                                                          << "resize (do_resize false); the model takes " << cfg.image_width
                                                          << "x" << cfg.image_height);
    t = nn::pil_resize(t, static_cast<int>(cfg.image_width), static_cast<int>(cfg.image_height),
                       cfg.resample == 2 ? nn::PilFilter::Bilinear : nn::PilFilter::Bicubic);
  }
  return nn::hf_rescale_normalize(t, cfg.do_rescale, cfg.rescale_factor, cfg.do_normalize, cfg.image_mean, cfg.image_std)
      .to(device, dtype);
}

std::vector<int64_t> prompt_ids(const Config& cfg, const std::vector<int64_t>& text_ids, int64_t bos_id, int64_t eos_id) {
  std::vector<int64_t> ids;
  if (cfg.layout == PromptLayout::ImageTokens) ids.assign(static_cast<size_t>(cfg.num_query_tokens), cfg.image_token_id);
  if (!cfg.is_t5() && cfg.add_bos) {
    if (bos_id < 0) LOUPE_THROW(BadModel, cfg.dir << ": the tokenizer has no bos token");
    ids.push_back(bos_id);
  }
  ids.insert(ids.end(), text_ids.begin(), text_ids.end());
  if (cfg.is_t5()) {
    if (eos_id < 0) LOUPE_THROW(BadModel, cfg.dir << ": the tokenizer has no eos token");
    ids.push_back(eos_id);
  }
  return ids;
}

std::string task_prompt(const std::string& task, const std::string& text) {
  if (task == "caption") return text;
  if (task == "vqa") {
    if (text.find_first_not_of(" \t\r\n") == std::string::npos)
      LOUPE_THROW(InvalidArgument, "BLIP-2 task 'vqa' needs a question (\"question\")");
    return "Question: " + text + " Answer:";
  }
  LOUPE_THROW(InvalidArgument, "BLIP-2 does not do task '" << task << "'");
}

}  // namespace loupe::blip2
