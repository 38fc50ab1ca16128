// Every task a session lists runs on it: each fixture model (every family and layout the fixtures
// hold), each task it offers, with the task's defaults from the session's description and only its
// required inputs. What a host does when it builds a form from loupe_task_describe and the user
// presses Run without changing anything.
#include <gtest/gtest.h>

#include <filesystem>

#include "core/runtime.h"
#include "core/tasks.h"

namespace fs = std::filesystem;
using namespace loupe;

namespace {

const std::string kFixtures = LOUPE_FIXTURES_DIR;

Image test_image(int w, int h) {
  Image im{w, h, 3, std::vector<uint8_t>(static_cast<size_t>(w) * h * 3)};
  for (size_t i = 0; i < im.pixels.size(); ++i) im.pixels[i] = static_cast<uint8_t>((i * 37) ^ (i >> 7));
  return im;
}

// A request with the task's required inputs and no parameter: everything else takes its default.
Request defaults_request(const tasks::Task& t) {
  Request r;
  r.task = t.name;
  const int w = 72, h = 56;  // not the models' native size: the defaults must cope
  if (t.inputs & tasks::kImage) r.images.push_back(test_image(w, h));
  if (t.required & tasks::kMask) {
    Image m{w, h, 1, std::vector<uint8_t>(static_cast<size_t>(w) * h, 0)};
    for (int y = 16; y < 40; ++y)
      for (int x = 20; x < 52; ++x) m.pixels[static_cast<size_t>(y) * w + x] = 255;
    r.mask = m;
  }
  if (t.required & tasks::kRegion) r.region = std::array<float, 4>{8, 6, 48, 40};
  if (t.required & (tasks::kText | tasks::kQuestion)) r.strings[t.text_key] = "a red cat";
  // One exception to "nothing set": random weights never write the end token, so the default
  // length (Florence-2's config: up to 1023 tokens, 3 beams) would take minutes per task here. The
  // default length itself is tested by Florence2.DefaultLengthStaysWithinTheDecoderPositions.
  if (t.find("max_new_tokens")) r.ints["max_new_tokens"] = 16;
  return r;
}

void check_outputs(const tasks::Task& t, const Result& res, const Request& r) {
  EXPECT_EQ(res.task, t.name);
  if (t.outputs & tasks::kImages) {
    ASSERT_FALSE(res.images.empty()) << t.name;
    for (const auto& im : res.images) {
      EXPECT_FALSE(im.empty()) << t.name;
      // edits keep the input's size
      if (!r.images.empty()) {
        EXPECT_EQ(im.width, r.images[0].width) << t.name;
        EXPECT_EQ(im.height, r.images[0].height) << t.name;
      }
    }
  }
}

class EveryTask : public ::testing::TestWithParam<std::string> {};

}  // namespace

TEST_P(EveryTask, RunsWithItsDefaults) {
  const std::string path = kFixtures + "/" + GetParam();
  ASSERT_TRUE(fs::exists(path)) << path;
  RuntimeOptions o;
  o.device = "cpu";
  auto rt = Runtime::create(o, {}, LogLevel::Warning);
  auto s = rt->open_session(path, "", Precision::FP32);
  const auto offered = s->model()->tasks();
  ASSERT_FALSE(offered.empty()) << path;
  for (const auto& t : offered) {
    SCOPED_TRACE(GetParam() + ": " + t.name);
    const tasks::Task* table = tasks::find(t.name);
    ASSERT_NE(table, nullptr) << "a session offers a task the table does not have";
    // a session may adjust defaults and ranges and leave out a parameter it has no use for (in
    // the table's order), never add one
    size_t k = 0;
    for (const auto& p : t.params) {
      while (k < table->params.size() && table->params[k].name != p.name) ++k;
      ASSERT_LT(k, table->params.size()) << "'" << p.name << "' is not a parameter of the table's task (or out of order)";
      ++k;
    }
    const Request r = defaults_request(t);
    auto job = rt->submit_session(s, r, {}, false);
    ASSERT_TRUE(job->wait(600000));
    ASSERT_EQ(job->status(), Status::Ok) << job->message();
    check_outputs(t, *job->take_result(), r);
  }
}

// Every model folder and single file among the fixtures, one family and layout each.
INSTANTIATE_TEST_SUITE_P(Fixtures, EveryTask,
                         ::testing::Values("florence2/tiny", "florence2/tiny-original", "sd/tiny-sd15",
                                           "sd/tiny-sd15-inpaint", "sd/tiny-sd2", "sd/single/tiny-sd15.safetensors",
                                           "sdxl/tiny-sdxl", "sdxl/single/tiny-sdxl.safetensors", "sdxl/tiny-sdxl-refiner",
                                           "sdxl/tiny-sdxl-inpaint", "paligemma/tiny-pg1", "paligemma/tiny-pg2-v5",
                                           "blip2/tiny-opt", "blip2/tiny-opt-old", "blip2/tiny-t5"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string n = info.param;
                           for (auto& c : n)
                             if (!isalnum(static_cast<unsigned char>(c))) c = '_';
                           return n;
                         });
