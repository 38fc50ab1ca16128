// Sessions and GPU residency: opening through the family registry, describing, the VRAM budget
// offloading the least recently used idle session and bringing it back when used. The model here
// is a small real module loaded from a safetensors file (a test family, not a product model).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/runtime.h"
#include "io/checkpoint.h"
#include "io/config.h"
#include "io/safetensors.h"
#include "io/state_dict.h"

namespace fs = std::filesystem;
using namespace loupe;

namespace {

// y = W x: a "model" whose task "selftest"-like run returns the sum of W, so tests can see that
// the weights are really used and where they live.
class LinearModel : public Model {
 public:
  explicit LinearModel(const std::string& path) {
    lin_ = torch::nn::Linear(torch::nn::LinearOptions(64, 64).bias(false));
    io::bind(*lin_, io::Checkpoint::open(path));
  }
  std::string family() const override { return "test-linear"; }
  std::string variant() const override { return "test-linear-64"; }
  std::vector<tasks::Task> tasks() const override { return {tasks::get("caption")}; }
  uint64_t bytes() const override { return 64 * 64 * 4; }
  void to(torch::Device d) override {
    lin_->to(d);
    device_ = d;
    moves_++;
  }
  Result run_task(const Request& r, JobContext& ctx) override {
    ctx.progress(0, 1, "run");
    Result out;
    out.task = r.task;
    out.text = "sum=" + std::to_string(lin_->weight.sum().item<float>());
    out.numbers["moves"] = moves_;
    return out;
  }
  torch::nn::Linear lin_{nullptr};
  torch::Device device_{torch::kCPU};
  int moves_ = 0;
};

fs::path make_model_dir(const std::string& name, float value) {
  auto d = fs::temp_directory_path() / ("loupe-sessions-" + name + "-" + std::to_string(::getpid()));
  fs::create_directories(d);
  std::ofstream(d / "config.json") << R"({"model_type": "test-linear"})";
  io::save_safetensors((d / "model.safetensors").string(), {{"weight", torch::full({64, 64}, value)}});
  return d;
}

void register_once() {
  static bool done = false;
  if (done) return;
  done = true;
  ModelFamily f;
  f.name = "test-linear";
  f.detect = [](const std::string& path) -> std::string {
    if (!fs::exists(fs::path(path) / "config.json")) return "";
    auto j = io::read_json_file((fs::path(path) / "config.json").string());
    return j.value("model_type", "") == "test-linear" ? "test-linear-64" : "";
  };
  f.load = [](const std::string& path, const ModelOptions&) {
    return std::make_shared<LinearModel>((fs::path(path) / "model.safetensors").string());
  };
  register_model_family(f);
}

Result run(Runtime& rt, std::shared_ptr<Session> s) {
  Request r;
  r.task = "caption";
  r.images.push_back(Image{4, 4, 3, std::vector<uint8_t>(48, 0)});  // the task's required input
  auto job = rt.submit_session(s, r, {}, false);
  EXPECT_TRUE(job->wait(30000));
  EXPECT_EQ(job->status(), Status::Ok) << job->message();
  return *job->take_result();
}

}  // namespace

// A host may let go of the runtime and the session while a job still runs: the job's session then
// holds the last reference, and the runtime is destroyed on its own worker thread when the job
// ends (it used to join itself there: std::system_error, terminate).
TEST(Sessions, HostMayLetGoOfRuntimeAndSessionWhileAJobRuns) {
  register_once();
  auto dir = make_model_dir("let-go", 0.25f);
  for (int i = 0; i < 20; ++i) {
    std::shared_ptr<Job> job;
    {
      RuntimeOptions o;
      o.device = "cpu";
      auto rt = Runtime::create(o, {}, LogLevel::Info);
      auto s = rt->open_session(dir.string(), "", Precision::Auto);
      Request r;
      r.task = "caption";
      r.images.push_back(Image{4, 4, 3, std::vector<uint8_t>(48, 0)});
      job = rt->submit_session(s, r, {}, false);
    }
    ASSERT_TRUE(job->wait(30000));
    EXPECT_EQ(job->status(), Status::Ok) << job->message();
  }
}

TEST(Sessions, OpenDescribeRunAndUnknownTask) {
  register_once();
  auto dir = make_model_dir("a", 0.5f);
  RuntimeOptions o;
  o.device = "cpu";
  o.models_dir = dir.parent_path().string();
  auto rt = Runtime::create(o, {}, LogLevel::Info);
  auto s = rt->open_session(dir.filename().string(), "", Precision::Auto);  // relative to models_dir
  EXPECT_EQ(s->model()->family(), "test-linear");
  EXPECT_TRUE(s->resident());
  EXPECT_EQ(run(*rt, s).text, "sum=2048.000000");
  Request bad;
  bad.task = "txt2img";
  try {
    rt->submit_session(s, bad, {}, false);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), Status::InvalidArgument);
    EXPECT_NE(std::string(e.what()).find("offers: caption"), std::string::npos) << e.what();
  }
  auto d = rt->diagnostics();
  ASSERT_EQ(d["sessions"].size(), 1u);
  EXPECT_EQ(d["sessions"][0]["bytes"], 64 * 64 * 4);
  auto report = rt->inspect(dir.string());
  EXPECT_EQ(report["family"], "test-linear");
  s->close();
  EXPECT_TRUE(rt->diagnostics()["sessions"].empty());
  fs::remove_all(dir);
}

TEST(Sessions, VramBudgetOffloadsLeastRecentlyUsedIdleSession) {
  register_once();
  auto a = make_model_dir("lru-a", 1.0f), b = make_model_dir("lru-b", 2.0f), c = make_model_dir("lru-c", 3.0f);
  RuntimeOptions o;
  o.device = "cpu";
  o.vram_budget_bytes = 2 * 64 * 64 * 4;  // room for two of the three
  auto rt = Runtime::create(o, {}, LogLevel::Info);
  auto sa = rt->open_session(a.string(), "", Precision::Auto);
  auto sb = rt->open_session(b.string(), "", Precision::Auto);
  EXPECT_TRUE(sa->resident() && sb->resident());
  run(*rt, sa);  // a is now more recently used than b
  auto sc = rt->open_session(c.string(), "", Precision::Auto);
  EXPECT_TRUE(sa->resident());
  EXPECT_FALSE(sb->resident());  // least recently used: offloaded
  EXPECT_TRUE(sc->resident());
  // using b brings it back (and offloads a, now the least recently used)
  EXPECT_EQ(run(*rt, sb).text, "sum=8192.000000");
  EXPECT_TRUE(sb->resident());
  EXPECT_FALSE(sa->resident());
  EXPECT_TRUE(sc->resident());
  bool saw_offload = false;
  const auto diag = rt->diagnostics();
  for (auto& r : diag["log"])
    saw_offload = saw_offload || r["message"].get<std::string>().find("offloading") != std::string::npos;
  EXPECT_TRUE(saw_offload);
  rt->shutdown();
  for (auto& d : {a, b, c}) fs::remove_all(d);
}

TEST(Sessions, UnrecognisedFolderIsBadModelWithHint) {
  register_once();
  auto d = fs::temp_directory_path() / ("loupe-sessions-unknown-" + std::to_string(::getpid()));
  fs::create_directories(d);
  std::ofstream(d / "config.json") << R"({"model_type": "something-else"})";
  RuntimeOptions o;
  o.device = "cpu";
  auto rt = Runtime::create(o, {}, LogLevel::Info);
  try {
    rt->open_session(d.string(), "", Precision::Auto);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), Status::BadModel);
    EXPECT_NE(std::string(e.what()).find("hint"), std::string::npos);
  }
  auto report = rt->inspect(d.string());
  EXPECT_FALSE(report["problems"].empty());
  fs::remove_all(d);
}
