// Florence-2 post-processing against the reference processor (transformers' Florence2Processor
// post_process_generation + Florence2PostProcessor), on crafted generations for every task, edge
// cases included (tests/fixtures/gen/florence2_postprocess_reference.py).
#include <gtest/gtest.h>

#include <fstream>

#include <nlohmann/json.hpp>

#include "models/florence2/processor.h"

using namespace loupe;
using namespace loupe::florence2;

namespace {

void expect_box(const Box& b, const nlohmann::json& want, const std::string& label) {
  EXPECT_NEAR(b.x0, want[0].get<double>(), 1e-3);  // whole pixels on both sides (the reference truncates)
  EXPECT_NEAR(b.y0, want[1].get<double>(), 1e-3);
  EXPECT_NEAR(b.x1, want[2].get<double>(), 1e-3);
  EXPECT_NEAR(b.y1, want[3].get<double>(), 1e-3);
  EXPECT_EQ(b.label, label);
}

void expect_points(const Polygon& p, const nlohmann::json& want, const std::string& label) {
  ASSERT_EQ(p.points.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(p.points[i], want[i].get<double>(), 1e-3) << i;
  EXPECT_EQ(p.label, label);
}

}  // namespace

TEST(Florence2PostProcess, EveryTaskGivesWhatTheReferenceProcessorGives) {
  std::ifstream f(std::string(LOUPE_FIXTURES_DIR) + "/florence2/postprocess-expected.json");
  ASSERT_TRUE(f.good());
  const auto cases = nlohmann::json::parse(f);
  ASSERT_GE(cases.size(), 14u);
  for (const auto& c : cases) {
    const std::string task = c["task"];
    SCOPED_TRACE(task + ": " + c["text"].get<std::string>());
    const TaskSpec* spec = find_task(task);
    ASSERT_NE(spec, nullptr);
    ASSERT_EQ(std::string(spec->token), c["token"].get<std::string>());
    Result r;
    parse(*spec, c["text"], c["width"], c["height"], r, c["banned"].get<BannedPhrases>());
    const auto& a = c["answer"];
    const std::string kind = spec->parse;
    if (kind == "pure_text") {
      EXPECT_EQ(r.text, a.get<std::string>());
    } else if (kind == "description_with_bboxes" || kind == "bboxes" || kind == "phrase_grounding") {
      ASSERT_EQ(r.boxes.size(), a["bboxes"].size());
      for (size_t i = 0; i < r.boxes.size(); ++i) expect_box(r.boxes[i], a["bboxes"][i], a["labels"][i]);
    } else if (kind == "polygons") {
      std::vector<std::pair<nlohmann::json, std::string>> want;
      for (size_t i = 0; i < a["polygons"].size(); ++i)
        for (const auto& poly : a["polygons"][i]) want.push_back({poly, a["labels"][i]});
      ASSERT_EQ(r.polygons.size(), want.size());
      for (size_t i = 0; i < want.size(); ++i) expect_points(r.polygons[i], want[i].first, want[i].second);
    } else if (kind == "description_with_bboxes_or_polygons") {
      ASSERT_EQ(r.boxes.size(), a["bboxes"].size());
      for (size_t i = 0; i < r.boxes.size(); ++i) expect_box(r.boxes[i], a["bboxes"][i], a["bboxes_labels"][i]);
      std::vector<std::pair<nlohmann::json, std::string>> want;
      for (size_t i = 0; i < a["polygons"].size(); ++i)
        for (const auto& poly : a["polygons"][i]) want.push_back({poly, a["polygons_labels"][i]});
      ASSERT_EQ(r.polygons.size(), want.size());
      for (size_t i = 0; i < want.size(); ++i) expect_points(r.polygons[i], want[i].first, want[i].second);
    } else if (kind == "ocr") {
      ASSERT_EQ(r.polygons.size(), a["quad_boxes"].size());
      for (size_t i = 0; i < r.polygons.size(); ++i) {
        expect_points(r.polygons[i], a["quad_boxes"][i], a["labels"][i]);
        EXPECT_EQ(r.polygons[i].kind, "quad");
      }
    } else {
      FAIL() << "unknown parse kind " << kind;
    }
  }
}
