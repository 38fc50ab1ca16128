// SentencePiece: parity with Debian's spm_encode / spm_decode on 2,200 varied strings for a BPE
// model with byte fallback (Gemma's settings) and a Unigram model (T5's), both trained with
// spm_train (tests/fixtures/gen/make_sentencepiece.py); the same ids from tokenizer.json folders
// (native reader) as from tokenizer.model (libsentencepiece through the dlmopen'd shim); and a
// process that holds libsentencepiece and libtorch together starts, tokenizes, runs a model and
// exits cleanly.
#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/wait.h>
#include <torch/torch.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "text/sentencepiece.h"

extern char** environ;

namespace fs = std::filesystem;
using loupe::text::SentencePieceTokenizer;

static const std::string kSpm = std::string(LOUPE_FIXTURES_DIR) + "/text/spm/";

static const nlohmann::json& parity() {
  static const nlohmann::json j = nlohmann::json::parse(std::ifstream(kSpm + "parity.json"));
  return j;
}

static std::string show(const std::string& s) { return nlohmann::json(s).dump(); }

static void expect_parity(const SentencePieceTokenizer& tok, const std::string& name) {
  const auto& j = parity();
  const auto& strings = j.at("strings");
  ASSERT_GE(strings.size(), 2000u);
  size_t ids_equal = 0, decoded_equal = 0;
  for (size_t i = 0; i < strings.size(); ++i) {
    const auto text = strings[i].get<std::string>();
    const auto expected = j.at(name)[i].get<std::vector<int64_t>>();
    const auto ids = tok.encode(text);
    if (ids == expected) ++ids_equal;
    else ADD_FAILURE() << name << ": ids differ from spm_encode for " << show(text);
    const auto text_back = tok.decode(expected);
    if (text_back == j.at(name + "_decoded")[i].get<std::string>()) ++decoded_equal;
    else ADD_FAILURE() << name << ": decode differs from spm_decode for " << show(text) << ": "
                       << show(text_back);
    if (ids_equal + 20 < i) break;  // stop the flood: the failures above say enough
  }
  EXPECT_EQ(ids_equal, strings.size()) << name;
  EXPECT_EQ(decoded_equal, strings.size()) << name;
}

static SentencePieceTokenizer library(const std::string& name) {
  std::string why;
  EXPECT_TRUE(SentencePieceTokenizer::library_available(&why)) << why;
  return SentencePieceTokenizer::from_model_file(kSpm + name + ".model");
}

TEST(SentencePiece, BpeByteFallbackModelMatchesSpmEncode) {
  const auto tok = library("bpe");
  EXPECT_EQ(tok.backend(), SentencePieceTokenizer::Backend::Library);
  EXPECT_EQ(tok.vocab_size(), 600u);
  EXPECT_EQ(tok.type(tok.piece_to_id("<0x41>")), SentencePieceTokenizer::PieceType::Byte);
  expect_parity(tok, "bpe");
}

TEST(SentencePiece, UnigramModelMatchesSpmEncode) {
  const auto tok = library("unigram");
  EXPECT_EQ(tok.pad_id(), 0);
  EXPECT_EQ(tok.eos_id(), 1);
  EXPECT_EQ(tok.unk_id(), 2);
  EXPECT_EQ(tok.bos_id(), -1);
  expect_parity(tok, "unigram");
}

TEST(SentencePiece, TokenizerJsonFoldersGiveTheSameIdsAsTokenizerModel) {
  const fs::path tmp = fs::temp_directory_path() / ("loupe_spm_" + std::to_string(::getpid()));
  for (const std::string name : {"bpe", "unigram"}) {
    const fs::path with_model = tmp / (name + "_model"), only_json = tmp / (name + "_json");
    fs::create_directories(with_model);
    fs::create_directories(only_json);
    fs::copy_file(kSpm + name + ".model", with_model / "tokenizer.model",
                  fs::copy_options::overwrite_existing);
    fs::copy_file(kSpm + name + ".tokenizer.json", only_json / "tokenizer.json",
                  fs::copy_options::overwrite_existing);
    const auto a = SentencePieceTokenizer::load_from_dir(with_model.string());
    const auto b = SentencePieceTokenizer::load_from_dir(only_json.string());
    EXPECT_EQ(a.backend(), SentencePieceTokenizer::Backend::Library);
    EXPECT_EQ(b.backend(), SentencePieceTokenizer::Backend::Native);
    ASSERT_EQ(a.vocab_size(), b.vocab_size()) << name;
    for (size_t id = 0; id < a.vocab_size(); ++id) {
      EXPECT_EQ(a.id_to_piece(id), b.id_to_piece(id)) << name << " id " << id;
      EXPECT_EQ(a.type(id), b.type(id)) << name << " id " << id;
    }
    EXPECT_EQ(a.unk_id(), b.unk_id());
    EXPECT_EQ(a.eos_id(), b.eos_id());
    EXPECT_EQ(a.pad_id(), b.pad_id());
    expect_parity(b, name);  // the native reader against spm_encode itself, string by string
  }
  fs::remove_all(tmp);
}

TEST(SentencePiece, MalformedFilesAreBadModelNamingTheFile) {
  const fs::path tmp = fs::temp_directory_path() / ("loupe_spm_bad_" + std::to_string(::getpid()));
  fs::create_directories(tmp);
  std::ofstream(tmp / "tokenizer.model") << "not a model proto \xff\xff\xff";
  try {
    SentencePieceTokenizer::from_model_file((tmp / "tokenizer.model").string());
    ADD_FAILURE() << "no error";
  } catch (const loupe::Error& e) {
    EXPECT_EQ(e.status(), loupe::Status::BadModel);
    EXPECT_NE(std::string(e.what()).find("tokenizer.model"), std::string::npos) << e.what();
  }
  std::ofstream(tmp / "tokenizer.json") << R"({"model": {"type": "WordPiece", "vocab": {}}})";
  try {
    SentencePieceTokenizer::from_tokenizer_json((tmp / "tokenizer.json").string());
    ADD_FAILURE() << "no error";
  } catch (const loupe::Error& e) {
    EXPECT_EQ(e.status(), loupe::Status::Unsupported);
    EXPECT_NE(std::string(e.what()).find("tokenizer.json"), std::string::npos) << e.what();
  }
  fs::remove_all(tmp);
}

// Linking libsentencepiece next to libtorch used to crash before main (sentencepiece.cpp says
// why). Here a process holding both tokenizes, runs a tiny model on the ids, tokenizes again and
// exits; the test runs that once in this process and once in a child, whose clean exit (status 0,
// after static destructors and the dlmopen'd namespace's teardown) it checks.
TEST(SentencePiece, WorksInTheSameProcessAsLibtorchAndExitsCleanly) {
  torch::manual_seed(0);
  auto before = torch::ones({2, 3}).matmul(torch::ones({3, 2}));
  EXPECT_EQ(before.sum().item<float>(), 12.0f);
  const auto tok = library("unigram");
  const auto ids = tok.encode("A tiny model runs next to sentencepiece.");
  ASSERT_FALSE(ids.empty());
  torch::nn::Embedding emb(static_cast<int64_t>(tok.vocab_size()), 16);
  torch::nn::Linear head(16, static_cast<int64_t>(tok.vocab_size()));
  torch::NoGradGuard ng;
  const auto x = torch::tensor(std::vector<int64_t>(ids.begin(), ids.end()), torch::kLong);
  const auto logits = head(emb(x).mean(0));
  const int64_t next = logits.argmax().item<int64_t>();
  EXPECT_GE(next, 0);
  EXPECT_LT(next, static_cast<int64_t>(tok.vocab_size()));
  EXPECT_FALSE(tok.decode({next}).empty() && tok.type(next) == SentencePieceTokenizer::PieceType::Normal);
  EXPECT_EQ(tok.encode("A tiny model runs next to sentencepiece."), ids);

  if (std::getenv("LOUPE_SPM_CHILD")) return;  // the child stops here and exits
  std::string self = fs::read_symlink("/proc/self/exe").string();
  std::string filter = "--gtest_filter=SentencePiece.WorksInTheSameProcessAsLibtorchAndExitsCleanly";
  std::vector<std::string> env_s = {"LOUPE_SPM_CHILD=1"};
  for (char** e = environ; *e; ++e) env_s.emplace_back(*e);
  std::vector<char*> argv = {self.data(), filter.data(), nullptr};
  std::vector<char*> envp;
  for (auto& e : env_s) envp.push_back(e.data());
  envp.push_back(nullptr);
  pid_t pid = 0;
  ASSERT_EQ(posix_spawn(&pid, self.c_str(), nullptr, nullptr, argv.data(), envp.data()), 0);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status)) << "the child died of signal " << (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
  EXPECT_EQ(WIFEXITED(status) ? WEXITSTATUS(status) : -1, 0);
}
