// The config readers of every family, on one JSON object: Stable Diffusion / SDXL (UNet, VAE,
// scheduler_config.json, CLIP text encoders), the decoder LM (Gemma, Gemma 2, OPT text configs;
// "model_type" picks), SigLIP, and the folder readers of Florence-2 and PaliGemma (config.json
// and preprocessor_config.json both given the input), T5 (BLIP-2's Flan-T5, FLUX's T5-XXL), the
// FLUX transformer and BLIP-2's folder reader. Input that is not a JSON object is skipped: io::read_json_file refuses it before any
// reader sees it.
#include "fuzz_util.h"
#include "io/config.h"
#include "models/blip2/config.h"
#include "models/clip/clip_text.h"
#include "models/florence2/config.h"
#include "models/flux/transformer.h"
#include "models/paligemma/config.h"
#include "models/sd/unet.h"
#include "models/sd/vae.h"
#include "models/siglip/siglip.h"
#include "nn/decoder_lm.h"
#include "nn/t5.h"
#include "schedulers/scheduler.h"

using loupe::fuzz::expect_only_loupe_errors;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto j = nlohmann::json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return 0;
  const std::string file = "config.json";
  expect_only_loupe_errors("unet", [&] { (void)loupe::sd::UNetConfig::from_json(j, file); });
  expect_only_loupe_errors("vae", [&] { (void)loupe::sd::VaeConfig::from_json(j, file).scale_factor(); });
  expect_only_loupe_errors("scheduler", [&] { (void)loupe::schedulers::SchedulerConfig::from_json(j, file); });
  expect_only_loupe_errors("clip", [&] { (void)loupe::clip::TextConfig::from_json(j, file); });
  expect_only_loupe_errors("decoder", [&] { (void)loupe::nn::DecoderConfig::from_json(j, file).attention_scale(); });
  expect_only_loupe_errors("siglip", [&] { (void)loupe::siglip::VisionConfig::from_json(j, file); });
  expect_only_loupe_errors("flux", [&] { (void)loupe::flux::FluxConfig::from_json(j, file).out_dim(); });
  expect_only_loupe_errors("t5", [&] { (void)loupe::nn::T5Config::from_json(j, file); });
  const auto dir = (loupe::fuzz::scratch() / "model").string();
  std::filesystem::create_directories(dir);
  loupe::fuzz::write_file("model/config.json", data, size);
  loupe::fuzz::write_file("model/preprocessor_config.json", data, size);
  expect_only_loupe_errors("florence2", [&] { (void)loupe::florence2::Config::load(dir).image_tokens(); });
  expect_only_loupe_errors("paligemma", [&] { (void)loupe::paligemma::Config::load(dir).variant(); });
  expect_only_loupe_errors("blip2", [&] { (void)loupe::blip2::Config::load(dir).variant(); });
  return 0;
}
