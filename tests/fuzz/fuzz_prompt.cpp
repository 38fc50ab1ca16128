// The prompt-emphasis parser (models/sd/prompt: "(word:1.3)", "[word]", "\(", BREAK) and the
// 75-token chunking with the tiny CLIP tokenizer of tests/fixtures/sd/tiny-sd15.
#include <cstdlib>

#include "fuzz_util.h"
#include "models/sd/prompt.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string dir = [] {
    const char* env = std::getenv("LOUPE_FIXTURES_DIR");
    return std::string(env ? env : LOUPE_FIXTURES_DIR) + "/sd/tiny-sd15/tokenizer";
  }();
  static const auto tok = loupe::text::BpeTokenizer::load_from_dir(dir);
  static const auto ids = loupe::sd::clip_tokens(tok, dir);
  const std::string prompt(reinterpret_cast<const char*>(data), size);
  loupe::fuzz::expect_only_loupe_errors("prompt", [&] {
    for (const auto& w : loupe::sd::parse_prompt_attention(prompt))
      if (!(w.weight == w.weight)) std::abort();  // never NaN
    for (const auto& c : loupe::sd::tokenize_prompt(tok, ids, prompt))
      if (c.ids.size() != 77 || c.weights.size() != 77) std::abort();
  });
  return 0;
}
