// A PaliGemma folder that ships only tokenizer.json (no tokenizer.model) loads and gives the same
// ids as tokenizer.model read by libsentencepiece: the 2,200 strings of the SentencePiece parity
// corpus, PaliGemma's task prompts, text holding its user-defined pieces (<image>, <locNNNN>,
// <segNNN>: taken whole, never merged, as sentencepiece's prefix matcher does), and a session's
// caption.
// The tokenizer.json is tests/fixtures/paligemma/tiny-pg-tokenizer.json
// (tests/fixtures/gen/make_paligemma_tokenizer_json.py; transformers' own converter needs the
// `tokenizers` package, which Debian does not ship).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "core/job.h"
#include "core/model.h"
#include "families/paligemma.h"
#include "text/sentencepiece.h"

namespace fs = std::filesystem;
using namespace loupe;
using loupe::text::SentencePieceTokenizer;

namespace {

const std::string kPg = std::string(LOUPE_FIXTURES_DIR) + "/paligemma";

struct JsonOnlyFolder {
  fs::path path;
  JsonOnlyFolder() {
    path = fs::temp_directory_path() / ("loupe-pg-json-" + std::to_string(::getpid()));
    fs::remove_all(path);
    fs::create_directories(path);
    for (const auto& e : fs::directory_iterator(kPg + "/tiny-pg1"))
      if (e.path().filename() != "tokenizer.model") fs::copy(e.path(), path / e.path().filename(), fs::copy_options::recursive);
    fs::copy_file(kPg + "/tiny-pg-tokenizer.json", path / "tokenizer.json");
  }
  ~JsonOnlyFolder() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

Result run(const std::shared_ptr<Model>& m, const Request& r) {
  Job job([](const Progress&) { return true; });
  JobContext ctx(&job);
  return m->run(r, ctx);
}

}  // namespace

TEST(PaliGemmaTokenizerJson, SameIdsAsTokenizerModel) {
  JsonOnlyFolder f;
  const auto model = SentencePieceTokenizer::load_from_dir(kPg + "/tiny-pg1");
  const auto json = SentencePieceTokenizer::load_from_dir(f.path.string());
  EXPECT_EQ(model.backend(), SentencePieceTokenizer::Backend::Library);
  EXPECT_EQ(json.backend(), SentencePieceTokenizer::Backend::Native);
  ASSERT_EQ(model.vocab_size(), json.vocab_size());
  for (size_t id = 0; id < model.vocab_size(); ++id) {
    ASSERT_EQ(model.id_to_piece(id), json.id_to_piece(id)) << id;
    // libsentencepiece's API tells control, unknown, byte and unused pieces apart, not user-defined
    // ones (<image>, <loc0000>): it reports them as normal
    if (json.type(id) == SentencePieceTokenizer::PieceType::UserDefined)
      ASSERT_EQ(model.type(id), SentencePieceTokenizer::PieceType::Normal) << id;
    else
      ASSERT_EQ(model.type(id), json.type(id)) << id;
  }
  EXPECT_EQ(model.eos_id(), json.eos_id());
  EXPECT_EQ(model.bos_id(), json.bos_id());
  EXPECT_EQ(model.pad_id(), json.pad_id());
  EXPECT_EQ(json.piece_to_id("<image>"), model.piece_to_id("<image>"));
  // PaliGemma's prompts as text, with its user-defined pieces where a prompt or an answer has them
  std::vector<std::string> texts = {"caption en\n", "detect cat ; dog\n", "segment the red car\n",
                                    "answer en what is 12 + 7?\n", "ocr\n", "x  two  spaces",
                                    "<image><image><bos>caption en\n", "<loc0012><loc0345><loc0999><loc1023> car ; "
                                    "<loc0000><loc0001><loc0002><loc0003><seg005><seg127> dog",
                                    "a<image>b", " <loc0012> ", "<loc001", "<loc00123>", "<seg12>", "<seg128>",
                                    "prefix<seg000>suffix", "<<image>>", "<image", "image>", "12<loc0100>34",
                                    "\xc3\xa9t\xc3\xa9 <loc0500>\xe6\x97\xa5\xe6\x9c\xac <seg064>"};
  const auto parity = nlohmann::json::parse(std::ifstream(std::string(LOUPE_FIXTURES_DIR) + "/text/spm/parity.json"));
  for (const auto& s : parity.at("strings")) texts.push_back(s.get<std::string>());
  size_t same = 0, shown = 0;
  for (const auto& t : texts) {
    const auto a = model.encode(t), b = json.encode(t);
    if (a == b && model.decode(a) == json.decode(a)) ++same;
    else if (++shown <= 20)
      ADD_FAILURE() << "differs for " << nlohmann::json(t).dump() << ": " << nlohmann::json(a).dump() << " vs "
                    << nlohmann::json(b).dump();
  }
  EXPECT_EQ(same, texts.size());
}

TEST(PaliGemmaTokenizerJson, SessionGivesTheSameCaption) {
  JsonOnlyFolder f;
  Request r;
  r.task = "caption";
  Image im{32, 24, 3, std::vector<uint8_t>(32 * 24 * 3)};
  for (size_t i = 0; i < im.pixels.size(); ++i) im.pixels[i] = static_cast<uint8_t>(i * 13);
  r.images.push_back(im);
  r.ints["max_new_tokens"] = 8;
  r.ints["num_beams"] = 1;
  const auto a = run(paligemma::family().load(kPg + "/tiny-pg1", ModelOptions{}), r);
  const auto b = run(paligemma::family().load(f.path.string(), ModelOptions{}), r);
  EXPECT_EQ(a.text, b.text);
  EXPECT_EQ(a.strings.at("raw_0"), b.strings.at("raw_0"));
}
