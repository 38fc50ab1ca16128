// SentencePiece models given as tokenizer.json (text/sentencepiece's native reader: BPE with byte
// fallback, Unigram, the normalizers), then a few texts encoded and decoded. (tokenizer.model is
// parsed by libsentencepiece itself, loaded with dlmopen() into a namespace of its own, which a
// sanitized process cannot host: not fuzzed here.)
#include "fuzz_util.h"
#include "text/sentencepiece.h"

using loupe::text::SentencePieceTokenizer;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = loupe::fuzz::write_file("tokenizer.json", data, size);
  loupe::fuzz::expect_only_loupe_errors("sentencepiece tokenizer.json", [&] {
    const auto t = SentencePieceTokenizer::from_tokenizer_json(path);
    for (const char* text : {"Hello world", "  caption en\n", "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80 \xff", "<bos><eos>"}) {
      const auto ids = t.encode(text);
      (void)t.decode(ids);
    }
    (void)t.decode({-1, 0, 1, 1 << 30});
    for (int64_t id : {int64_t{-1}, int64_t{0}, static_cast<int64_t>(t.vocab_size())}) {
      (void)t.id_to_piece(id);
      (void)t.score(id);
      (void)t.type(id);
    }
  });
  return 0;
}
