// Edit by words (task "edit", loupe_edit_submit) through the C ABI with the tiny fixture models:
// the random-weight Florence-2 (finder) and the tiny SD 1.5 inpainting model (painter).
//
// The tiny Florence-2 writes arbitrary but deterministic tokens: with greedy decoding its referring
// segmentation of tests/fixtures/images/tiny.ppm comes back as a few (self-intersecting) polygons
// for any phrase, and with max_new_tokens 2 as none ("<loc_398></s>"): the tests take the finder's
// own answer (task "segment" run on its own) as the expected region, and max_new_tokens 2 for
// "nothing found". The expected mask is computed here independently: the centre of each pixel
// tested against each polygon (crossing number), then grown by brute force over all pixel pairs.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "loupe/loupe.h"

namespace {

std::string fixture(const std::string& rel) {
  const char* dir = std::getenv("LOUPE_FIXTURES_DIR");
  return std::string(dir ? dir : LOUPE_FIXTURES_DIR) + "/" + rel;
}

struct Rgb {
  int w = 0, h = 0;
  std::vector<uint8_t> px;
};

Rgb read_ppm(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::string magic;
  int maxval = 0;
  Rgb im;
  f >> magic >> im.w >> im.h >> maxval;
  f.get();
  im.px.resize(size_t(im.w) * im.h * 3);
  f.read(reinterpret_cast<char*>(im.px.data()), std::streamsize(im.px.size()));
  EXPECT_EQ(magic, "P6");
  EXPECT_TRUE(f.good()) << path;
  return im;
}

class Edit : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    loupe_runtime_options ro = LOUPE_RUNTIME_OPTIONS_INIT;
    ro.device = "cpu";
    ro.num_threads = 1;
    ASSERT_EQ(loupe_runtime_create(&rt_, &ro), LOUPE_OK) << loupe_last_error();
    ASSERT_EQ(loupe_session_open(&finder_, rt_, fixture("florence2/tiny").c_str(), nullptr), LOUPE_OK) << loupe_last_error();
    ASSERT_EQ(loupe_session_open(&painter_, rt_, fixture("sd/tiny-sd15-inpaint").c_str(), nullptr), LOUPE_OK)
        << loupe_last_error();
    image_ = read_ppm(fixture("images/tiny.ppm"));
  }
  static void TearDownTestSuite() {
    loupe_session_close(finder_);
    loupe_session_close(painter_);
    loupe_runtime_free(rt_);
  }

  static loupe_image view() { return loupe_image{image_.w, image_.h, image_.w * 3, LOUPE_RGB8, image_.px.data()}; }

  // An edit request with small, fast settings: greedy finder, 2 denoising steps, a fixed seed.
  static loupe_request* request(const char* target, const char* prompt) {
    loupe_request* rq = nullptr;
    EXPECT_EQ(loupe_request_create(&rq, "edit"), LOUPE_OK) << loupe_last_error();
    loupe_image im = view();
    EXPECT_EQ(loupe_request_set_image(rq, &im), LOUPE_OK);
    if (target) EXPECT_EQ(loupe_request_set_string(rq, "target", target), LOUPE_OK);
    if (prompt) EXPECT_EQ(loupe_request_set_string(rq, "prompt", prompt), LOUPE_OK);
    EXPECT_EQ(loupe_request_set_int(rq, "num_beams", 1), LOUPE_OK);
    EXPECT_EQ(loupe_request_set_int(rq, "max_new_tokens", 48), LOUPE_OK);
    EXPECT_EQ(loupe_request_set_int(rq, "steps", 2), LOUPE_OK);
    EXPECT_EQ(loupe_request_set_int(rq, "seed", 7), LOUPE_OK);
    return rq;
  }

  // Submits, waits; returns the job's status (and the result when OK).
  static loupe_status run(loupe_request* rq, loupe_result** out, loupe_session* finder, loupe_session* painter,
                          loupe_progress_fn fn = nullptr, void* user = nullptr) {
    loupe_job* job = nullptr;
    loupe_status st = loupe_edit_submit(&job, rt_, finder, painter, rq, fn, user);
    if (st != LOUPE_OK) return st;
    EXPECT_EQ(loupe_job_wait(job, -1), LOUPE_OK);
    st = loupe_job_take_result(out, job);
    last_message_ = loupe_last_error();
    loupe_job_free(job);
    return st;
  }

  static std::vector<uint8_t> plane(const loupe_result* res, size_t index, int channels) {
    loupe_image im;
    EXPECT_EQ(loupe_result_image(res, index, &im), LOUPE_OK);
    EXPECT_EQ(im.width, image_.w);
    EXPECT_EQ(im.height, image_.h);
    std::vector<uint8_t> out;
    for (int y = 0; y < im.height; ++y)
      out.insert(out.end(), im.data + size_t(y) * im.stride, im.data + size_t(y) * im.stride + size_t(im.width) * channels);
    return out;
  }

  static loupe_runtime* rt_;
  static loupe_session* finder_;
  static loupe_session* painter_;
  static Rgb image_;
  static std::string last_message_;
};
loupe_runtime* Edit::rt_ = nullptr;
loupe_session* Edit::finder_ = nullptr;
loupe_session* Edit::painter_ = nullptr;
Rgb Edit::image_;
std::string Edit::last_message_;

// The finder's own segmentation of the target, with the settings request() gives the edit.
std::vector<std::vector<float>> segment(loupe_session* finder, const loupe_image& im, const char* target) {
  loupe_request* rq = nullptr;
  EXPECT_EQ(loupe_request_create(&rq, "segment"), LOUPE_OK);
  loupe_request_set_image(rq, &im);
  loupe_request_set_string(rq, "text", target);
  loupe_request_set_int(rq, "num_beams", 1);
  loupe_request_set_int(rq, "max_new_tokens", 48);
  loupe_job* job = nullptr;
  EXPECT_EQ(loupe_session_submit(&job, finder, rq, nullptr, nullptr), LOUPE_OK) << loupe_last_error();
  loupe_job_wait(job, -1);
  loupe_result* res = nullptr;
  EXPECT_EQ(loupe_job_take_result(&res, job), LOUPE_OK) << loupe_last_error();
  std::vector<std::vector<float>> polys;
  for (size_t i = 0; res && i < loupe_result_polygon_count(res); ++i) {
    loupe_polygon p = LOUPE_POLYGON_INIT;
    EXPECT_EQ(loupe_result_get_polygon(res, i, &p), LOUPE_OK);
    polys.emplace_back(p.points, p.points + 2 * p.point_count);
  }
  loupe_result_free(res);
  loupe_job_free(job);
  loupe_request_free(rq);
  return polys;
}

// The documented mask, computed the slow way: pixel centres against each polygon (crossing number,
// edges counted for y0 <= cy < y1), union, then every pixel within `grow` of a found pixel.
std::vector<uint8_t> expected_mask(const std::vector<std::vector<float>>& polys, int w, int h, int grow) {
  std::vector<uint8_t> found(size_t(w) * h, 0), grown(size_t(w) * h, 0);
  for (const auto& p : polys) {
    const size_t n = p.size() / 2;
    if (n < 3) continue;
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x) {
        const double cx = x + 0.5, cy = y + 0.5;
        int crossings = 0;
        for (size_t i = 0; i < n; ++i) {
          const double x0 = p[2 * i], y0 = p[2 * i + 1], x1 = p[2 * ((i + 1) % n)], y1 = p[2 * ((i + 1) % n) + 1];
          if (!((y0 <= cy && cy < y1) || (y1 <= cy && cy < y0))) continue;
          if (x0 + (cy - y0) * (x1 - x0) / (y1 - y0) > cx) ++crossings;
        }
        if (crossings % 2) found[size_t(y) * w + x] = 255;
      }
  }
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int v = 0; v < h && !grown[size_t(y) * w + x]; ++v)
        for (int u = 0; u < w; ++u)
          if (found[size_t(v) * w + u] && (u - x) * (u - x) + (v - y) * (v - y) <= grow * grow) {
            grown[size_t(y) * w + x] = 255;
            break;
          }
  return grown;
}

struct Stages {
  std::vector<std::string> seen;
  std::string stop_at;  // the stage prefix at which the callback stops the job ("" = never)
};

int on_progress(void* user, const loupe_progress* p) {
  auto* s = static_cast<Stages*>(user);
  const std::string stage = p->stage ? p->stage : "";
  if (s->seen.empty() || s->seen.back() != stage) s->seen.push_back(stage);
  return s->stop_at.empty() || stage.rfind(s->stop_at, 0) != 0;
}

}  // namespace

TEST_F(Edit, TheTaskIsDescribed) {
  size_t index = 0;
  ASSERT_EQ(loupe_task_find(nullptr, "edit", &index), LOUPE_OK) << loupe_last_error();
  loupe_task_info info = LOUPE_TASK_INFO_INIT;
  ASSERT_EQ(loupe_task_describe(nullptr, index, &info), LOUPE_OK);
  EXPECT_STREQ(info.text_key, "target");
  EXPECT_EQ(info.runtime, 1);
  EXPECT_EQ(info.required, LOUPE_INPUT_IMAGE | LOUPE_INPUT_TEXT);
  EXPECT_TRUE(info.inputs & LOUPE_INPUT_MASK);
  EXPECT_TRUE(info.outputs & LOUPE_OUTPUT_MASKS);
  std::vector<std::string> names;
  for (size_t i = 0; i < info.param_count; ++i) {
    loupe_param_info p = LOUPE_PARAM_INFO_INIT;
    ASSERT_EQ(loupe_task_param(nullptr, index, i, &p), LOUPE_OK);
    names.push_back(p.name);
  }
  for (const char* want : {"prompt", "grow", "feather", "steps", "strength", "seed", "paint", "find_with"})
    EXPECT_NE(std::find(names.begin(), names.end(), want), names.end()) << want;
}

TEST_F(Edit, MaskIsTheSegmentationGrownAndOnlyTheMaskChanges) {
  const char* target = "the red car";
  const loupe_image im = view();
  const auto polys = segment(finder_, im, target);
  ASSERT_FALSE(polys.empty()) << "the tiny Florence-2 no longer answers with polygons: choose another input";
  const int grow = 3;
  loupe_request* rq = request(target, "a blue bicycle");
  loupe_request_set_int(rq, "grow", grow);
  loupe_request_set_float(rq, "feather", 2);
  Stages stages;
  loupe_result* res = nullptr;
  ASSERT_EQ(run(rq, &res, finder_, painter_, on_progress, &stages), LOUPE_OK) << last_message_;
  loupe_request_free(rq);
  ASSERT_EQ(loupe_result_image_count(res), 2u);
  loupe_image mim;
  ASSERT_EQ(loupe_result_image(res, 1, &mim), LOUPE_OK);
  EXPECT_EQ(mim.format, LOUPE_GRAY8);
  const auto mask = plane(res, 1, 1);
  const auto want = expected_mask(polys, image_.w, image_.h, grow);
  size_t differ = 0, in = 0;
  for (size_t i = 0; i < mask.size(); ++i) differ += mask[i] != want[i], in += want[i] != 0;
  EXPECT_EQ(differ, 0u) << "of " << mask.size() << " pixels (" << in << " in the expected mask)";
  ASSERT_GT(in, 0u);
  // Outside the mask every byte is the input's; inside, the painter changed something.
  const auto edited = plane(res, 0, 3);
  size_t outside_changed = 0, inside_changed = 0;
  for (size_t i = 0; i < mask.size(); ++i)
    for (int c = 0; c < 3; ++c) {
      const bool changed = edited[i * 3 + c] != image_.px[i * 3 + c];
      (mask[i] ? inside_changed : outside_changed) += changed;
    }
  EXPECT_EQ(outside_changed, 0u);
  EXPECT_GT(inside_changed, 0u);
  // The regions: a box per object (polygon group), labelled with the target; the outlines as found.
  EXPECT_EQ(loupe_result_polygon_count(res), polys.size());
  ASSERT_GT(loupe_result_box_count(res), 0u);
  loupe_box b = LOUPE_BOX_INIT;
  ASSERT_EQ(loupe_result_get_box(res, 0, &b), LOUPE_OK);
  EXPECT_STREQ(b.label, target);
  double v = 0;
  ASSERT_EQ(loupe_result_number(res, "mask_pixels", &v), LOUPE_OK);
  EXPECT_EQ(v, double(in));
  const std::string json = loupe_result_json(res);
  EXPECT_NE(json.find("\"found_by\":\"segment\""), std::string::npos) << json;
  EXPECT_NE(json.find("\"mode\":\"replace\""), std::string::npos) << json;
  loupe_result_free(res);
  // the stages, in order
  std::vector<std::string> parts;
  for (const auto& s : stages.seen) {
    const std::string part = s.substr(0, s.find(':'));
    if (parts.empty() || parts.back() != part) parts.push_back(part);
  }
  EXPECT_EQ(parts, (std::vector<std::string>{"find", "mask", "paint"}));
}

TEST_F(Edit, RemoveWithAnEmptyPromptAlsoKeepsTheOutside) {
  loupe_request* rq = request("the red car", nullptr);  // no prompt: remove
  loupe_request_set_int(rq, "grow", 0);
  loupe_request_set_int(rq, "only_masked", 0);
  loupe_result* res = nullptr;
  ASSERT_EQ(run(rq, &res, finder_, painter_), LOUPE_OK) << last_message_;
  loupe_request_free(rq);
  const auto mask = plane(res, 1, 1), edited = plane(res, 0, 3);
  size_t outside_changed = 0;
  for (size_t i = 0; i < mask.size(); ++i)
    for (int c = 0; c < 3; ++c) outside_changed += !mask[i] && edited[i * 3 + c] != image_.px[i * 3 + c];
  EXPECT_EQ(outside_changed, 0u);
  EXPECT_NE(std::string(loupe_result_json(res)).find("\"mode\":\"remove\""), std::string::npos);
  loupe_result_free(res);
}

TEST_F(Edit, NothingFoundIsAClearError) {
  loupe_request* rq = request("the red car", "a blue bicycle");
  loupe_request_set_int(rq, "max_new_tokens", 2);  // the tiny finder then writes one location and stops
  loupe_result* res = nullptr;
  EXPECT_EQ(run(rq, &res, finder_, painter_), LOUPE_ERROR_NOT_FOUND);
  EXPECT_NE(last_message_.find("no 'the red car' found in the image"), std::string::npos) << last_message_;
  loupe_request_free(rq);
}

TEST_F(Edit, CancelInEachStage) {
  for (const char* stage : {"find", "mask", "paint"}) {
    loupe_request* rq = request("the red car", "a blue bicycle");
    Stages s;
    s.stop_at = stage;
    loupe_result* res = nullptr;
    EXPECT_EQ(run(rq, &res, finder_, painter_, on_progress, &s), LOUPE_ERROR_CANCELLED) << stage << ": " << last_message_;
    ASSERT_FALSE(s.seen.empty());
    EXPECT_EQ(s.seen.back().rfind(stage, 0), 0u) << stage << " stopped at " << s.seen.back();
    loupe_request_free(rq);
  }
  // loupe_job_cancel from outside before the job runs
  loupe_request* rq = request("the red car", "a blue bicycle");
  loupe_job* job = nullptr;
  ASSERT_EQ(loupe_edit_submit(&job, rt_, finder_, painter_, rq, nullptr, nullptr), LOUPE_OK) << loupe_last_error();
  loupe_job_cancel(job);
  loupe_job_wait(job, -1);
  EXPECT_EQ(loupe_job_status(job), LOUPE_ERROR_CANCELLED);
  loupe_job_free(job);
  loupe_request_free(rq);
}

TEST_F(Edit, MaskOnlyThenTheAdjustedMaskIsPainted) {
  // paint = 0: find and mask, no painter needed
  loupe_request* rq = request("the red car", "a blue bicycle");
  loupe_request_set_int(rq, "paint", 0);
  loupe_result* res = nullptr;
  ASSERT_EQ(run(rq, &res, finder_, nullptr), LOUPE_OK) << last_message_;
  ASSERT_EQ(loupe_result_image_count(res), 1u);
  auto mask = plane(res, 0, 1);
  loupe_result_free(res);
  // adjusted by hand: a square added; given back as the mask, no finder needed and no growth
  for (int y = 2; y < 10; ++y)
    for (int x = 2; x < 10; ++x) mask[size_t(y) * image_.w + x] = 255;
  loupe_image m{image_.w, image_.h, image_.w, LOUPE_GRAY8, mask.data()};
  ASSERT_EQ(loupe_request_set_mask(rq, &m), LOUPE_OK);
  loupe_request_set_int(rq, "paint", 1);
  ASSERT_EQ(run(rq, &res, nullptr, painter_), LOUPE_OK) << last_message_;
  EXPECT_EQ(plane(res, 1, 1), mask);
  const auto edited = plane(res, 0, 3);
  size_t outside_changed = 0;
  for (size_t i = 0; i < mask.size(); ++i)
    for (int c = 0; c < 3; ++c) outside_changed += !mask[i] && edited[i * 3 + c] != image_.px[i * 3 + c];
  EXPECT_EQ(outside_changed, 0u);
  EXPECT_NE(std::string(loupe_result_json(res)).find("\"found_by\":\"mask\""), std::string::npos);
  loupe_result_free(res);
  loupe_request_free(rq);
}

TEST_F(Edit, BadArgumentsAreClearErrors) {
  loupe_request* rq = request("the red car", "a blue bicycle");
  loupe_job* job = nullptr;
  auto expect = [&](loupe_status want, loupe_status got, const char* words) {
    EXPECT_EQ(got, want) << words;
    EXPECT_NE(std::string(loupe_last_error()).find(words), std::string::npos) << loupe_last_error();
    EXPECT_EQ(job, nullptr);
  };
  expect(LOUPE_ERROR_INVALID_ARGUMENT, loupe_edit_submit(nullptr, rt_, finder_, painter_, rq, nullptr, nullptr), "out is NULL");
  expect(LOUPE_ERROR_INVALID_ARGUMENT, loupe_edit_submit(&job, nullptr, finder_, painter_, rq, nullptr, nullptr), "runtime is NULL");
  expect(LOUPE_ERROR_INVALID_ARGUMENT, loupe_edit_submit(&job, rt_, finder_, painter_, nullptr, nullptr, nullptr), "request is NULL");
  expect(LOUPE_ERROR_INVALID_ARGUMENT, loupe_edit_submit(&job, rt_, nullptr, painter_, rq, nullptr, nullptr),
         "the finder session is NULL");
  expect(LOUPE_ERROR_INVALID_ARGUMENT, loupe_edit_submit(&job, rt_, finder_, nullptr, rq, nullptr, nullptr),
         "the painter session is NULL");
  // a painter that cannot inpaint, a finder that can neither segment nor ground
  expect(LOUPE_ERROR_INVALID_ARGUMENT, loupe_edit_submit(&job, rt_, finder_, finder_, rq, nullptr, nullptr), "cannot inpaint");
  expect(LOUPE_ERROR_INVALID_ARGUMENT, loupe_edit_submit(&job, rt_, painter_, painter_, rq, nullptr, nullptr),
         "cannot segment or ground");
  // the request: no target, another task, a value out of range, through the runtime's own submit
  loupe_request* no_target = request(nullptr, "a blue bicycle");
  expect(LOUPE_ERROR_INVALID_ARGUMENT, loupe_edit_submit(&job, rt_, finder_, painter_, no_target, nullptr, nullptr), "target");
  loupe_request_free(no_target);
  loupe_request* other = nullptr;
  ASSERT_EQ(loupe_request_create(&other, "inpaint"), LOUPE_OK);
  expect(LOUPE_ERROR_INVALID_ARGUMENT, loupe_edit_submit(&job, rt_, finder_, painter_, other, nullptr, nullptr),
         "runs task 'edit', not 'inpaint'");
  loupe_request_free(other);
  loupe_request_set_int(rq, "grow", -1);
  expect(LOUPE_ERROR_INVALID_ARGUMENT, loupe_edit_submit(&job, rt_, finder_, painter_, rq, nullptr, nullptr), "'grow'");
  loupe_request_set_int(rq, "grow", 4);
  expect(LOUPE_ERROR_INVALID_ARGUMENT, loupe_runtime_submit(&job, rt_, rq, nullptr, nullptr), "loupe_edit_submit");
  // a mask of another size
  std::vector<uint8_t> small(8 * 8, 255);
  loupe_image m{8, 8, 8, LOUPE_GRAY8, small.data()};
  loupe_request_set_mask(rq, &m);
  expect(LOUPE_ERROR_INVALID_ARGUMENT, loupe_edit_submit(&job, rt_, nullptr, painter_, rq, nullptr, nullptr), "same size");
  loupe_request_free(rq);
}
