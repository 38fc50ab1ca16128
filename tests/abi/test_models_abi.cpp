// Discovery and downloads through the C ABI (libloupe only). Downloads run against a tiny
// Hugging Face-style server on 127.0.0.1 that the test starts (hub_server.py): range requests, a
// connection dropped midway and resumed, cancel and resume, checksums from the catalog and from the
// hub's LFS ETag, 404 and 401 with what to do, tokens, sharded indexes, the offline switch.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "loupe/loupe.h"

#include "../support/scoped_env.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const std::string kFix = LOUPE_FIXTURES_DIR;
const std::string kServer = LOUPE_HUB_SERVER;


std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_file(const fs::path& p, const std::string& data) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << data;
}

std::string random_bytes(size_t n, unsigned seed) {
  std::mt19937 g(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(g() & 0xff);
  return s;
}

std::string sha256_of(const std::string& data, const fs::path& tmp) {
  // python3 is there anyway (the server): one implementation of SHA-256 in the SDK, the reference here.
  write_file(tmp, data);
  const std::string cmd = "python3 -c \"import hashlib,sys;print(hashlib.sha256(open(sys.argv[1],'rb').read()).hexdigest())\" " + tmp.string();
  FILE* p = popen(cmd.c_str(), "r");
  char buf[100] = {0};
  if (p && fgets(buf, sizeof buf, p)) {}
  if (p) pclose(p);
  fs::remove(tmp);
  std::string s(buf);
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  return s;
}

// The hub: ROOT/<org>/<name>/<file>, served by hub_server.py.
class HubTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = fs::temp_directory_path() / ("loupe-hub-test-" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    root_ = dir_ / "hub";
    fs::create_directories(root_);
    big_ = random_bytes(3 << 20, 1);
    write_file(root_ / "org/tiny/config.json", R"({"model_type": "tiny"})");
    write_file(root_ / "org/tiny/model.safetensors", big_);
    write_file(root_ / "org/tiny/drop-once.bin", random_bytes(2 << 20, 2));
    write_file(root_ / "org/tiny/bad-etag.bin", random_bytes(5000, 3));
    write_file(root_ / "gated/model/weights.bin", random_bytes(4000, 4));
    write_file(root_ / "org/sharded/config.json", "{}");
    write_file(root_ / "org/sharded/model-00001-of-00002.safetensors", random_bytes(3000, 5));
    write_file(root_ / "org/sharded/model-00002-of-00002.safetensors", random_bytes(3000, 6));
    write_file(root_ / "org/sharded/model.safetensors.index.json",
               R"({"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}})");
    const fs::path port_file = dir_ / "port";
    log_ = dir_ / "requests.log";
    pid_ = fork();
    if (pid_ == 0) {
      execlp("python3", "python3", kServer.c_str(), "--root", root_.c_str(), "--port-file", port_file.c_str(), "--log",
             log_.c_str(), (char*)nullptr);
      _exit(127);
    }
    for (int i = 0; i < 600 && !fs::exists(port_file); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    ASSERT_TRUE(fs::exists(port_file)) << "the test server did not start (python3 " << kServer << ")";
    endpoint_ = "http://127.0.0.1:" + read_file(port_file);
  }
  static void TearDownTestSuite() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      waitpid(pid_, nullptr, 0);
    }
    fs::remove_all(dir_);
  }

  void SetUp() override {
    const auto* t = ::testing::UnitTest::GetInstance()->current_test_info();
    work_ = dir_ / t->name();
    fs::create_directories(work_ / "models");
    loupe_runtime_options ro = LOUPE_RUNTIME_OPTIONS_INIT;
    ro.device = "cpu";
    models_ = (work_ / "models").string();
    ro.models_dir = models_.c_str();
    ASSERT_EQ(loupe_runtime_create(&rt_, &ro), LOUPE_OK) << loupe_last_error();
    std::ofstream(log_, std::ios::trunc);
  }
  void TearDown() override { loupe_runtime_free(rt_); }

  struct Outcome {
    loupe_status submit = LOUPE_OK, status = LOUPE_OK;
    std::string error;
    json result;
  };

  Outcome download(const std::map<std::string, std::string>& params, loupe_progress_fn fn = nullptr, void* user = nullptr) {
    Outcome o;
    loupe_request* rq = nullptr;
    EXPECT_EQ(loupe_request_create(&rq, "download"), LOUPE_OK);
    for (const auto& [k, v] : params) EXPECT_EQ(loupe_request_set_string(rq, k.c_str(), v.c_str()), LOUPE_OK);
    loupe_job* job = nullptr;
    o.submit = loupe_runtime_submit(&job, rt_, rq, fn, user);
    loupe_request_free(rq);
    if (o.submit != LOUPE_OK) {
      o.error = loupe_last_error();
      return o;
    }
    EXPECT_EQ(loupe_job_wait(job, -1), LOUPE_OK);
    o.status = loupe_job_status(job);
    if (o.status != LOUPE_OK) o.error = loupe_last_error();
    loupe_result* res = nullptr;
    if (o.status == LOUPE_OK && loupe_job_take_result(&res, job) == LOUPE_OK) {
      o.result = json::parse(loupe_result_json(res));
      loupe_result_free(res);
    }
    loupe_job_free(job);
    return o;
  }

  std::vector<json> requests() {
    std::vector<json> out;
    std::ifstream in(log_);
    for (std::string line; std::getline(in, line);)
      if (!line.empty()) out.push_back(json::parse(line));
    return out;
  }

  fs::path catalog(const std::string& sha_for_model) {
    json c = {{"families",
               {{{"id", "tiny"},
                 {"tasks", {"caption"}},
                 {"files", {"config.json"}},
                 {"download", {"config.json", "model.safetensors|pytorch_model.bin", "?generation_config.json"}},
                 {"variants",
                  {{{"id", "tiny-v"}, {"repo", "org/tiny"}, {"folder", "Tiny"}, {"sha256", {{"model.safetensors", sha_for_model}}}},
                   {{"id", "sharded-v"}, {"repo", "org/sharded"}, {"download", {"config.json", "model.safetensors|model.safetensors.index.json"}}}}}}}}};
    const fs::path p = work_ / "catalog.json";
    write_file(p, c.dump());
    return p;
  }

  static inline fs::path dir_, root_, log_;
  static inline std::string endpoint_, big_;
  static inline pid_t pid_ = -1;
  fs::path work_;
  std::string models_;
  loupe_runtime* rt_ = nullptr;
  Env no_offline_{"HF_HUB_OFFLINE", nullptr}, no_offline2_{"LOUPE_OFFLINE", nullptr}, no_token_{"HF_TOKEN", nullptr};
  Env no_token_path_{"HF_TOKEN_PATH", nullptr}, hf_home_{"HF_HOME", "/nonexistent-loupe-hf-home"};
};

TEST_F(HubTest, CatalogEntryIsDownloadedVerifiedAndRenamedWhole) {
  const std::string sha = sha256_of(big_, work_ / "tmp");
  ASSERT_EQ(sha.size(), 64u);
  const auto o = download({{"catalog_id", "tiny-v"}, {"catalog", catalog(sha).string()}, {"endpoint", endpoint_}});
  ASSERT_EQ(o.status, LOUPE_OK) << o.error;
  const fs::path dest = work_ / "models" / "Tiny";  // models_dir / the entry's folder
  EXPECT_EQ(o.result["text"], dest.string());
  EXPECT_EQ(read_file(dest / "model.safetensors"), big_);
  EXPECT_EQ(read_file(dest / "config.json"), R"({"model_type": "tiny"})");
  EXPECT_FALSE(fs::exists(dest / "generation_config.json"));  // optional, not in the repo
  EXPECT_FALSE(fs::exists(dest / "model.safetensors.part"));
  EXPECT_FALSE(fs::exists(dest / ".loupe-download"));
  EXPECT_EQ(o.result["numbers"]["files"], 2);
  EXPECT_EQ(o.result["numbers"]["verified"], 1);  // the LFS file; config.json has a git ETag only
  EXPECT_EQ(o.result["numbers"]["bytes_downloaded"].get<double>(), double(big_.size() + 22));
  bool head = false, get = false;
  for (const auto& r : requests()) {
    EXPECT_TRUE(r["auth"].is_null());  // no token configured: none sent
    head = head || (r["method"] == "HEAD" && r["path"] == "/org/tiny/resolve/main/model.safetensors");
    get = get || (r["method"] == "GET" && r["path"] == "/cdn/org/tiny/model.safetensors");
  }
  EXPECT_TRUE(head && get);
  // Again: everything is there, nothing is fetched.
  const auto again = download({{"catalog_id", "tiny-v"}, {"catalog", catalog(sha).string()}, {"endpoint", endpoint_}});
  ASSERT_EQ(again.status, LOUPE_OK) << again.error;
  EXPECT_EQ(again.result["numbers"]["fetched"], 0);
}

struct CancelAtFirstChunk {
  int calls = 0;
  std::string last_stage;
  static int fn(void* user, const loupe_progress* p) {
    auto* self = static_cast<CancelAtFirstChunk*>(user);
    self->last_stage = p->stage;
    if (std::string(p->stage).rfind("download ", 0) == 0) return ++self->calls > 1 ? 1 : 0;
    return 1;
  }
};

TEST_F(HubTest, CancelKeepsThePartAndTheNextDownloadResumesWithARange) {
  const fs::path dest = work_ / "dl";
  CancelAtFirstChunk cancel;
  const auto first = download({{"repo", "org/tiny"}, {"files", "model.safetensors"}, {"dest", dest.string()}, {"endpoint", endpoint_}},
                              &CancelAtFirstChunk::fn, &cancel);
  ASSERT_EQ(first.status, LOUPE_ERROR_CANCELLED) << first.error;
  EXPECT_NE(first.error.find("model.safetensors.part"), std::string::npos) << first.error;
  EXPECT_EQ(cancel.last_stage, "download model.safetensors");
  EXPECT_FALSE(fs::exists(dest / "model.safetensors"));  // nothing half-written under the real name
  ASSERT_TRUE(fs::exists(dest / "model.safetensors.part"));
  const auto kept = fs::file_size(dest / "model.safetensors.part");
  EXPECT_GT(kept, 0u);
  EXPECT_LT(kept, big_.size());
  EXPECT_TRUE(fs::exists(dest / ".loupe-download"));  // discovery reports the folder as unfinished

  std::ofstream(log_, std::ios::trunc);
  const auto second = download({{"repo", "org/tiny"}, {"files", "model.safetensors"}, {"dest", dest.string()}, {"endpoint", endpoint_}});
  ASSERT_EQ(second.status, LOUPE_OK) << second.error;
  EXPECT_EQ(read_file(dest / "model.safetensors"), big_);
  EXPECT_FALSE(fs::exists(dest / "model.safetensors.part"));
  EXPECT_EQ(second.result["numbers"]["verified"], 1);  // against the hub's X-Linked-Etag
  EXPECT_EQ(second.result["numbers"]["bytes_downloaded"].get<double>(), double(big_.size() - kept));
  bool ranged = false;
  for (const auto& r : requests())
    if (r["method"] == "GET") ranged = ranged || r["range"] == "bytes=" + std::to_string(kept) + "-";
  EXPECT_TRUE(ranged);
}

TEST_F(HubTest, ADroppedConnectionIsResumedFromWhereItStopped) {
  const fs::path dest = work_ / "dl";
  const auto o = download({{"repo", "org/tiny"}, {"files", "drop-once.bin"}, {"dest", dest.string()}, {"endpoint", endpoint_}});
  ASSERT_EQ(o.status, LOUPE_OK) << o.error;
  EXPECT_EQ(read_file(dest / "drop-once.bin"), read_file(root_ / "org/tiny/drop-once.bin"));
  int gets = 0;
  std::string range;
  for (const auto& r : requests())
    if (r["method"] == "GET" && r["path"] == "/cdn/org/tiny/drop-once.bin") {
      ++gets;
      if (!r["range"].is_null()) range = r["range"];
    }
  EXPECT_EQ(gets, 2);
  EXPECT_EQ(range.rfind("bytes=", 0), 0u) << range;
  EXPECT_NE(range, "bytes=0-");
  EXPECT_EQ(o.result["numbers"]["verified"], 1);
}

TEST_F(HubTest, AWrongChecksumIsRejectedAndNothingIsLeft) {
  const auto o = download({{"catalog_id", "tiny-v"}, {"catalog", catalog(std::string(64, 'a')).string()}, {"endpoint", endpoint_}});
  ASSERT_EQ(o.status, LOUPE_ERROR_BAD_MODEL) << o.error;
  EXPECT_NE(o.error.find("model.safetensors"), std::string::npos) << o.error;
  EXPECT_NE(o.error.find("sha256"), std::string::npos) << o.error;
  EXPECT_NE(o.error.find("the catalog"), std::string::npos) << o.error;
  EXPECT_NE(o.error.find(endpoint_ + "/org/tiny/resolve/main/model.safetensors"), std::string::npos) << o.error;
  const fs::path dest = work_ / "models" / "Tiny";
  EXPECT_FALSE(fs::exists(dest / "model.safetensors"));
  EXPECT_FALSE(fs::exists(dest / "model.safetensors.part"));

  // The same with the sha256 the hub announces (X-Linked-Etag) not matching the bytes.
  const fs::path d2 = work_ / "dl";
  const auto e = download({{"repo", "org/tiny"}, {"files", "bad-etag.bin"}, {"dest", d2.string()}, {"endpoint", endpoint_}});
  ASSERT_EQ(e.status, LOUPE_ERROR_BAD_MODEL) << e.error;
  EXPECT_NE(e.error.find("LFS ETag"), std::string::npos) << e.error;
  EXPECT_FALSE(fs::exists(d2 / "bad-etag.bin"));
  EXPECT_FALSE(fs::exists(d2 / "bad-etag.bin.part"));
}

TEST_F(HubTest, NotFoundNamesTheUrlAndWhatToCheck) {
  const fs::path dest = work_ / "dl";
  const auto o = download({{"repo", "org/tiny"}, {"files", "missing.bin"}, {"dest", dest.string()}, {"endpoint", endpoint_}});
  ASSERT_EQ(o.status, LOUPE_ERROR_NOT_FOUND) << o.error;
  EXPECT_NE(o.error.find(endpoint_ + "/org/tiny/resolve/main/missing.bin"), std::string::npos) << o.error;
  EXPECT_NE(o.error.find("404"), std::string::npos) << o.error;
  EXPECT_NE(o.error.find("check the repo"), std::string::npos) << o.error;
  EXPECT_FALSE(fs::exists(dest / "missing.bin"));
}

TEST_F(HubTest, UnauthorizedSaysToAcceptTheLicenseAndSetHfToken) {
  const fs::path dest = work_ / "dl";
  const std::map<std::string, std::string> p{{"repo", "gated/model"}, {"files", "weights.bin"}, {"dest", dest.string()}, {"endpoint", endpoint_}};
  const auto o = download(p);
  ASSERT_EQ(o.status, LOUPE_ERROR_NOT_FOUND) << o.error;
  EXPECT_NE(o.error.find("401"), std::string::npos) << o.error;
  EXPECT_NE(o.error.find(endpoint_ + "/gated/model/resolve/main/weights.bin"), std::string::npos) << o.error;
  EXPECT_NE(o.error.find("HF_TOKEN"), std::string::npos) << o.error;
  EXPECT_NE(o.error.find("license"), std::string::npos) << o.error;
  EXPECT_NE(o.error.find(endpoint_ + "/gated/model"), std::string::npos) << o.error;  // the model's page
  EXPECT_FALSE(fs::exists(dest / "weights.bin"));
  {
    Env token("HF_TOKEN", "test-token");
    const auto ok = download(p);
    ASSERT_EQ(ok.status, LOUPE_OK) << ok.error;
    bool sent = false;
    for (const auto& r : requests()) sent = sent || r["auth"] == "Bearer test-token";
    EXPECT_TRUE(sent);
  }
  // The token file (HF_TOKEN_PATH) works as well.
  fs::remove_all(dest);
  write_file(work_ / "token", "test-token\n");
  Env path("HF_TOKEN_PATH", (work_ / "token").c_str());
  const auto from_file = download(p);
  ASSERT_EQ(from_file.status, LOUPE_OK) << from_file.error;
  EXPECT_EQ(read_file(dest / "weights.bin"), read_file(root_ / "gated/model/weights.bin"));
}

TEST_F(HubTest, AShardIndexBringsItsShardsAndHfEndpointIsHonoured) {
  Env ep("HF_ENDPOINT", (endpoint_ + "/").c_str());
  const auto o = download({{"catalog_id", "sharded-v"}, {"catalog", catalog(std::string(64, '0')).string()}});
  ASSERT_EQ(o.status, LOUPE_OK) << o.error;
  const fs::path dest = work_ / "models" / "sharded";  // no folder in the entry: the repo's name
  for (const char* f : {"config.json", "model.safetensors.index.json", "model-00001-of-00002.safetensors",
                        "model-00002-of-00002.safetensors"})
    EXPECT_EQ(read_file(dest / f), read_file(root_ / "org/sharded" / f)) << f;
}

TEST_F(HubTest, OfflineModeRefusesAtSubmit) {
  for (const char* var : {"HF_HUB_OFFLINE", "LOUPE_OFFLINE"}) {
    Env off(var, "1");
    const auto o = download({{"repo", "org/tiny"}, {"files", "config.json"}, {"endpoint", endpoint_}});
    EXPECT_EQ(o.submit, LOUPE_ERROR_UNSUPPORTED);
    EXPECT_NE(o.error.find(var), std::string::npos) << o.error;
    EXPECT_NE(o.error.find("offline"), std::string::npos) << o.error;
  }
  EXPECT_TRUE(requests().empty());
  EXPECT_FALSE(fs::exists(work_ / "models" / "tiny"));
}

// Issue 12: a single-file checkpoint with no CLIP tokenizer anywhere on the machine fetches it once
// (into Loupe's data folder, through the verified downloads) and opens; inspect says so first; in
// offline mode with nothing fetched the error says what to do, before any weight is read.
TEST_F(HubTest, ASingleFileFetchesItsClipTokenizerOnce) {
  const fs::path src = fs::path(kFix) / "sd" / "single";
  const fs::path m = work_ / "m";
  fs::create_directories(m / "tiny");
  fs::copy_file(src / "tiny-sd15.safetensors", m / "tiny.safetensors");
  for (const char* sub : {"unet", "vae", "text_encoder", "scheduler"})  // the sidecar, without tokenizer/
    fs::copy(src / "tiny-sd15" / sub, m / "tiny" / sub, fs::copy_options::recursive);
  const fs::path repo = root_ / "openai" / "clip-vit-large-patch14";
  fs::create_directories(repo);
  for (const char* f : {"vocab.json", "merges.txt"}) fs::copy_file(src / "tiny-sd15" / "tokenizer" / f, repo / f,
                                                                   fs::copy_options::overwrite_existing);
  EnvGuard env;
  env.set("HF_ENDPOINT", endpoint_);
  env.set("XDG_DATA_HOME", (work_ / "data").string());
  env.set("HF_HOME", (work_ / "hf").string());
  env.set("HF_HUB_CACHE", (work_ / "hf" / "hub").string());
  env.set("HUGGINGFACE_HUB_CACHE", std::nullopt);
  env.set("HF_HUB_OFFLINE", std::nullopt);
  env.set("LOUPE_OFFLINE", std::nullopt);
  const std::string path = (m / "tiny.safetensors").string();
  auto problems = [&]() {
    char* js = nullptr;
    EXPECT_EQ(loupe_model_inspect(rt_, path.c_str(), &js), LOUPE_OK) << loupe_last_error();
    const json j = json::parse(js ? js : "{}");
    loupe_string_free(js);
    return j.value("problems", json::array()).dump();
  };
  EXPECT_NE(problems().find("fetched once from " + endpoint_ + "/openai/clip-vit-large-patch14"), std::string::npos);
  {
    Env off("HF_HUB_OFFLINE", "1");  // offline, nothing on the machine: the error says what to do
    EXPECT_NE(problems().find("offline mode is on (HF_HUB_OFFLINE)"), std::string::npos);
    loupe_session* s = nullptr;
    EXPECT_EQ(loupe_session_open(&s, rt_, path.c_str(), nullptr), LOUPE_ERROR_NOT_FOUND);
    const std::string e = loupe_last_error();
    EXPECT_NE(e.find("offline mode is on (HF_HUB_OFFLINE)"), std::string::npos) << e;
    EXPECT_NE(e.find("vocab.json"), std::string::npos) << e;
    EXPECT_EQ(s, nullptr);
  }
  EXPECT_TRUE(requests().empty());
  loupe_session* s = nullptr;
  ASSERT_EQ(loupe_session_open(&s, rt_, path.c_str(), nullptr), LOUPE_OK) << loupe_last_error();
  loupe_session_close(s);
  const fs::path own = work_ / "data" / "loupe" / "tokenizers" / "clip";
  for (const char* f : {"vocab.json", "merges.txt"}) EXPECT_EQ(read_file(own / f), read_file(repo / f)) << f;
  EXPECT_FALSE(requests().empty());
  EXPECT_EQ(problems().find("CLIP tokenizer"), std::string::npos);  // found now: no problem reported
  std::ofstream(log_, std::ios::trunc);
  Env off("HF_HUB_OFFLINE", "1");  // kept: the next open needs no network
  s = nullptr;
  ASSERT_EQ(loupe_session_open(&s, rt_, path.c_str(), nullptr), LOUPE_OK) << loupe_last_error();
  loupe_session_close(s);
  EXPECT_TRUE(requests().empty());
}

TEST_F(HubTest, BadParametersAreClearErrorsAtSubmit) {
  struct Case {
    std::map<std::string, std::string> params;
    loupe_status status;
    const char* says;
  };
  const std::string cat = catalog(std::string(64, '0')).string();
  const Case cases[] = {
      {{}, LOUPE_ERROR_INVALID_ARGUMENT, "'catalog_id'"},
      {{{"repo", "a/b/c"}, {"files", "x"}}, LOUPE_ERROR_INVALID_ARGUMENT, "more than one '/'"},
      {{{"repo", "a b"}, {"files", "x"}}, LOUPE_ERROR_INVALID_ARGUMENT, "character ' '"},
      {{{"repo", "org/tiny"}}, LOUPE_ERROR_INVALID_ARGUMENT, "set 'files'"},
      {{{"repo", "org/tiny"}, {"files", "../../etc/passwd"}}, LOUPE_ERROR_INVALID_ARGUMENT, "steps out of the repo"},
      {{{"repo", "org/tiny"}, {"files", "/etc/passwd"}}, LOUPE_ERROR_INVALID_ARGUMENT, "not a relative path"},
      {{{"repo", "org/tiny"}, {"files", " , "}}, LOUPE_ERROR_INVALID_ARGUMENT, "lists no file"},
      {{{"repo", "org/tiny"}, {"files", "x"}, {"endpoint", "ftp://h"}}, LOUPE_ERROR_INVALID_ARGUMENT, "http:// or https://"},
      {{{"catalog_id", "nope"}, {"catalog", cat}}, LOUPE_ERROR_NOT_FOUND, "'tiny-v', 'sharded-v'"},
      {{{"catalog_id", "nope"}}, LOUPE_ERROR_NOT_FOUND, "'florence2-base'"},
      {{{"catalog_id", "tiny-v"}, {"catalog", (work_ / "none.json").string()}}, LOUPE_ERROR_NOT_FOUND, "none.json"},
      {{{"catalog_id", "tiny-v"}, {"catalog", cat}, {"repo", "other/repo"}}, LOUPE_ERROR_INVALID_ARGUMENT, "set only one"},
      {{{"repo", "org/tiny"}, {"files", "x"}, {"dest", kServer}}, LOUPE_ERROR_INVALID_ARGUMENT, "not a folder"},
  };
  for (const auto& c : cases) {
    const auto o = download(c.params);
    EXPECT_EQ(o.submit, c.status) << c.says << ": " << o.error;
    EXPECT_NE(o.error.find(c.says), std::string::npos) << o.error;
  }
  // Without dest and without a models_dir there is nowhere to put it.
  loupe_runtime* bare = nullptr;
  loupe_runtime_options ro = LOUPE_RUNTIME_OPTIONS_INIT;
  ro.device = "cpu";
  ASSERT_EQ(loupe_runtime_create(&bare, &ro), LOUPE_OK);
  std::swap(bare, rt_);
  const auto o = download({{"repo", "org/tiny"}, {"files", "x"}});
  EXPECT_EQ(o.submit, LOUPE_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(o.error.find("'dest'"), std::string::npos) << o.error;
  std::swap(bare, rt_);
  loupe_runtime_free(bare);
  EXPECT_TRUE(requests().empty());
}

TEST_F(HubTest, FreeingTheRuntimeCancelsADownload) {
  loupe_request* rq = nullptr;
  ASSERT_EQ(loupe_request_create(&rq, "download"), LOUPE_OK);
  loupe_request_set_string(rq, "repo", "org/tiny");
  loupe_request_set_string(rq, "files", "model.safetensors");
  loupe_request_set_string(rq, "dest", (work_ / "dl").c_str());
  loupe_request_set_string(rq, "endpoint", endpoint_.c_str());
  loupe_job* job = nullptr;
  ASSERT_EQ(loupe_runtime_submit(&job, rt_, rq, nullptr, nullptr), LOUPE_OK);
  loupe_request_free(rq);
  loupe_runtime_free(rt_);  // returns only when the download thread has stopped
  rt_ = nullptr;
  loupe_job_state state;
  ASSERT_EQ(loupe_job_poll(job, &state, nullptr), LOUPE_OK);
  EXPECT_EQ(state, LOUPE_JOB_DONE);
  const loupe_status st = loupe_job_status(job);
  EXPECT_TRUE(st == LOUPE_OK || st == LOUPE_ERROR_CANCELLED) << loupe_status_name(st);
  if (st == LOUPE_ERROR_CANCELLED) EXPECT_FALSE(fs::exists(work_ / "dl" / "model.safetensors"));
  loupe_job_free(job);
}

// ------------------------------------------------------------------ scan

TEST(ScanAbi, BadArgumentsAreClearErrors) {
  char* json_out = nullptr;
  EXPECT_EQ(loupe_models_scan(nullptr, nullptr, nullptr), LOUPE_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(loupe_last_error()).find("out_json"), std::string::npos);
  loupe_scan_options o = LOUPE_SCAN_OPTIONS_INIT;
  o.struct_size = 0;
  EXPECT_EQ(loupe_models_scan(nullptr, &o, &json_out), LOUPE_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(loupe_last_error()).find("struct_size"), std::string::npos);
  o = LOUPE_SCAN_OPTIONS_INIT;
  o.dir_count = 2;
  EXPECT_EQ(loupe_models_scan(nullptr, &o, &json_out), LOUPE_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(loupe_last_error()).find("dirs is NULL"), std::string::npos);
  const char* dirs[] = {"/tmp", nullptr};
  o.dirs = dirs;
  EXPECT_EQ(loupe_models_scan(nullptr, &o, &json_out), LOUPE_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(loupe_last_error()).find("dirs[1]"), std::string::npos);
  o.dir_count = 0;
  o.catalog_path = "/nonexistent/catalog.json";
  EXPECT_EQ(loupe_models_scan(nullptr, &o, &json_out), LOUPE_ERROR_NOT_FOUND);
  EXPECT_NE(std::string(loupe_last_error()).find("/nonexistent/catalog.json"), std::string::npos);
  EXPECT_EQ(json_out, nullptr);  // untouched on error
}

TEST(ScanAbi, FindsTheFixturesAndTheRuntimesModelsFolder) {
  loupe_runtime* rt = nullptr;
  loupe_runtime_options ro = LOUPE_RUNTIME_OPTIONS_INIT;
  ro.device = "cpu";
  const std::string models = kFix + "/sd";
  ro.models_dir = models.c_str();
  ASSERT_EQ(loupe_runtime_create(&rt, &ro), LOUPE_OK);
  loupe_scan_options o = LOUPE_SCAN_OPTIONS_INIT;
  o.skip_default_locations = 1;
  const std::string lora = kFix + "/sd/lora";
  const char* dirs[] = {lora.c_str()};
  o.dirs = dirs;
  o.dir_count = 1;
  char* out = nullptr;
  ASSERT_EQ(loupe_models_scan(rt, &o, &out), LOUPE_OK) << loupe_last_error();
  const json j = json::parse(out);
  loupe_string_free(out);
  ASSERT_EQ(j["roots"].size(), 2u);
  EXPECT_EQ(j["roots"][0]["source"], "models_dir");
  int folders = 0, loras = 0;
  for (const auto& m : j["models"]) {
    folders += m["format"] == "folder" && m["family"] == "stable-diffusion";
    loras += m["kind"] == "lora";
  }
  EXPECT_GE(folders, 3);  // tiny-sd15, tiny-sd15-inpaint, tiny-sd2 (and single/'s sidecars)
  EXPECT_GE(loras, 2);
  loupe_runtime_free(rt);
  // A freed runtime is refused, as everywhere.
}

}  // namespace
