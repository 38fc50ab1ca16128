// Florence-2: several images in one job. Greedy requests go through the model as one batch; every
// image's result must be what it gives alone.
#include <gtest/gtest.h>

#include <set>

#include "core/job.h"
#include "families/florence2.h"

using namespace loupe;

namespace {
Image pattern(int w, int h, int seed) {
  Image img;
  img.width = w;
  img.height = h;
  img.channels = 3;
  img.pixels.resize(img.bytes());
  for (size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = static_cast<uint8_t>((i * (7 + seed) + seed * 31) % 251);
  return img;
}
}  // namespace

TEST(Florence2Batch, ABatchGivesEachImagesOwnResult) {
  auto model = florence2::family().load(std::string(LOUPE_FIXTURES_DIR) + "/florence2/tiny", ModelOptions{});
  Job job([](const Progress&) { return true; });
  JobContext ctx(&job);
  for (const std::string task : {"region_proposal", "caption"}) {
    SCOPED_TRACE(task);
    Request batch;
    batch.task = task;
    batch.ints["num_beams"] = 1;
    batch.ints["max_new_tokens"] = 24;
    const std::vector<Image> imgs{pattern(64, 48, 1), pattern(80, 80, 2), pattern(40, 64, 3)};
    batch.images = imgs;
    const auto all = model->run(batch, ctx);
    // the random demo weights still look at the image: the rows differ, so the comparison means something
    std::set<std::string> distinct;
    for (size_t i = 0; i < imgs.size(); ++i) distinct.insert(all.strings.at("raw_" + std::to_string(i)));
    EXPECT_GT(distinct.size(), 1u);
    for (size_t i = 0; i < imgs.size(); ++i) {
      Request one = batch;
      one.images = {imgs[i]};
      const auto alone = model->run(one, ctx);
      EXPECT_EQ(all.strings.at("raw_" + std::to_string(i)), alone.strings.at("raw_0")) << i;
    }
  }
}
