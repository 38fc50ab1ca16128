// The byte-level / CLIP BPE tokenizer (text/bpe_tokenizer): tokenizer.json, or vocab.json +
// merges.txt (the input split at the first NUL byte; the byte after it picks the flavour), then a
// few texts encoded and decoded with it.
#include <cstring>

#include "fuzz_util.h"
#include "text/bpe_tokenizer.h"

using loupe::text::BpeTokenizer;

namespace {
void exercise(const BpeTokenizer& t) {
  for (const char* text : {"a photo of a cat", " Hello,  world!\n", "<s>caption</s><pad>", "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80 \xff"}) {
    const auto ids = t.encode(text);
    (void)t.decode(ids);
    (void)t.decode(ids, true);
    (void)t.encode_with_special(text);
  }
  (void)t.decode({-1, 0, 1, 1 << 30});
  (void)t.id_to_token(static_cast<int64_t>(t.vocab_size()));
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto* nul = static_cast<const uint8_t*>(std::memchr(data, 0, size));
  if (!nul) {
    const auto path = loupe::fuzz::write_file("tokenizer.json", data, size);
    loupe::fuzz::expect_only_loupe_errors("tokenizer.json", [&] { exercise(BpeTokenizer::from_tokenizer_json(path)); });
    return 0;
  }
  const size_t vocab_size = static_cast<size_t>(nul - data);
  const bool clip = vocab_size + 1 < size && (nul[1] & 1);
  const size_t merges_at = std::min(size, vocab_size + 2);
  const auto vocab = loupe::fuzz::write_file("vocab.json", data, vocab_size);
  const auto merges = loupe::fuzz::write_file("merges.txt", data + merges_at, size - merges_at);
  loupe::fuzz::expect_only_loupe_errors("vocab.json + merges.txt", [&] {
    exercise(BpeTokenizer::from_vocab_merges(vocab, merges, clip ? BpeTokenizer::Flavor::Clip : BpeTokenizer::Flavor::ByteLevel));
  });
  return 0;
}
