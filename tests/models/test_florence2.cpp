// Florence-2: loading the tiny checkpoint (real parameter names and config layout), the KV cache
// against full recomputation, every task end to end, cancel, bad input, and the post-processing
// rules of the reference processor on crafted generations.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/runtime.h"
#include "io/config.h"
#include "io/safetensors.h"
#include "families/florence2.h"
#include "models/florence2/generate.h"
#include "models/florence2/modeling.h"
#include "models/florence2/processor.h"
#include "models/florence2/static_decoder.h"

namespace fs = std::filesystem;
using namespace loupe;
using namespace loupe::florence2;

static const std::string kTiny = std::string(LOUPE_FIXTURES_DIR) + "/florence2/tiny";

static Image test_image(int w, int h) {
  Image im;
  im.width = w;
  im.height = h;
  im.channels = 3;
  im.pixels.resize(im.bytes());
  for (size_t i = 0; i < im.pixels.size(); ++i) im.pixels[i] = static_cast<uint8_t>((i * 37) % 251);
  return im;
}

static std::shared_ptr<Model> load_tiny() {
  ModelOptions o;
  return family().load(kTiny, o);
}

TEST(Florence2, DetectsAndDescribesTheCheckpoint) {
  EXPECT_EQ(family().detect(kTiny), "florence2-d32");
  nlohmann::json report;
  report["problems"] = nlohmann::json::array();
  family().inspect(kTiny, report);
  EXPECT_TRUE(report["problems"].empty()) << report.dump();
  auto m = load_tiny();
  EXPECT_EQ(m->family(), "florence2");
  EXPECT_EQ(m->tasks().size(), 14u);
  EXPECT_GT(m->bytes(), 100000u * 4);
}

TEST(Florence2, ShapesOfFeaturesAndEncoderStates) {
  auto cfg = Config::load(kTiny);
  EXPECT_EQ(cfg.image_tokens(), 65);  // 64 px -> 16 -> 8: 8*8 + 1
  Florence2 net(cfg);
  net->eval();
  torch::NoGradGuard ng;
  auto feats = net->image_features(torch::randn({2, 3, 64, 64}));
  EXPECT_EQ(feats.sizes(), (std::vector<int64_t>{2, 65, 32}));
  auto ids = torch::full({1, 70}, 5, torch::kLong);
  ids.index_put_({0, torch::indexing::Slice(0, 65)}, cfg.image_token_id);
  auto enc = net->encode(ids, feats.index({torch::indexing::Slice(0, 1)}));
  EXPECT_EQ(enc.sizes(), (std::vector<int64_t>{1, 70, 32}));
  // a count of placeholders that differs from the features is an error, not silent garbage
  EXPECT_THROW(net->encode(ids.index({torch::indexing::Slice(), torch::indexing::Slice(1)}), feats.index({torch::indexing::Slice(0, 1)})), Error);
}

TEST(Florence2, KvCacheMatchesFullRecomputation) {
  auto cfg = Config::load(kTiny);
  Florence2 net(cfg);
  net->eval();
  torch::NoGradGuard ng;
  auto enc = torch::randn({1, 10, 32});
  auto seq = torch::tensor(std::vector<int64_t>{2, 0, 57, 300, 12, 9}, torch::kLong).unsqueeze(0);
  std::vector<KV> self_full, cross_full;
  auto full = net->decode(seq, enc, self_full, cross_full, 0);  // [1, 6, V] causal
  std::vector<KV> self_c, cross_c;
  for (int64_t t = 0; t < seq.size(1); ++t) {
    auto step = net->decode(seq.index({torch::indexing::Slice(), torch::indexing::Slice(t, t + 1)}), enc, self_c, cross_c, t);
    EXPECT_TRUE(torch::allclose(step.select(1, 0), full.select(1, t), 1e-4, 1e-5)) << "step " << t;  // fp32 tolerance
  }
}

// The fixed-shape decoder (preallocated caches, masked slots; CUDA graphs' path) against the KV-cache
// decoder, step by step, a batch of 2 with beam-style cache reordering in the middle.
TEST(Florence2, StaticDecoderMatchesTheKvCacheDecoder) {
  auto cfg = Config::load(kTiny);
  Florence2 net(cfg);
  net->eval();
  torch::NoGradGuard ng;
  torch::manual_seed(3);
  auto enc = torch::randn({2, 10, 32});
  auto seq = torch::tensor(std::vector<int64_t>{2, 0, 57, 300, 12, 9, 2, 5, 5, 1000, 31, 7}, torch::kLong).view({2, 6});
  StaticDecoder fixed(*net, enc, 8, /*use_graph=*/true);  // no graph on the CPU: eager
  EXPECT_FALSE(fixed.graphed());
  std::vector<KV> self_c, cross_c;
  auto swap = torch::tensor(std::vector<int64_t>{1, 0}, torch::kLong);
  for (int64_t t = 0; t < seq.size(1); ++t) {
    auto want = net->decode(seq.slice(1, t, t + 1), enc, self_c, cross_c, t).select(1, 0);
    auto got = fixed.step(seq.select(1, t));
    EXPECT_TRUE(torch::allclose(got, want, 1e-4, 1e-5)) << "step " << t;  // fp32 tolerance
    if (t == 2) {  // beams swap places: both decoders move their caches
      fixed.reorder(swap);
      for (auto& c : self_c) c = {c.k.index_select(0, swap), c.v.index_select(0, swap)};
    }
  }
  EXPECT_EQ(fixed.position(), 6);
  try {  // past the prepared length: an error, not a write out of bounds
    fixed.step(seq.select(1, 0));
    fixed.step(seq.select(1, 0));
    fixed.step(seq.select(1, 0));
    ADD_FAILURE() << "stepped past the prepared length";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("prepared length 8"), std::string::npos) << e.what();
  }
}

// On CUDA, decoding steps replayed from a captured graph give the same ids as eager decoding
// (greedy on a batch, and beam search with its cache reordering). Runs where a GPU is.
TEST(Florence2, CudaGraphDecodingGivesTheSameIds) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  auto cfg = Config::load(kTiny);
  Florence2 net(cfg);
  net->eval();
  net->to(torch::kCUDA);
  torch::NoGradGuard ng;
  torch::manual_seed(5);
  auto enc = torch::randn({2, 10, 32}).to(torch::kCUDA);
  StaticDecoder probe(*net, enc, 4, true);
#if LOUPE_CUDA_GRAPHS
  EXPECT_TRUE(probe.graphed());
#endif
  GenerateOptions o;
  o.max_new_tokens = 12;
  o.num_beams = 1;
  o.no_repeat_ngram_size = 3;
  const auto eager = generate_greedy_batch(*net, enc, o);
  o.cuda_graphs = true;
  EXPECT_EQ(generate_greedy_batch(*net, enc, o), eager);
  o.num_beams = 3;
  o.cuda_graphs = false;
  const auto beam = generate(*net, enc.slice(0, 0, 1), o);
  o.cuda_graphs = true;
  EXPECT_EQ(generate(*net, enc.slice(0, 0, 1), o), beam);
}

TEST(Florence2, EveryTaskRunsEndToEnd) {
  auto m = load_tiny();
  for (const auto& spec : florence2::tasks()) {
    Request r;
    r.task = spec.abi_task;
    r.images.push_back(test_image(120, 80));
    // the inputs the task's description says it takes (others are refused)
    const auto desc = loupe::tasks::get(spec.abi_task);
    if (desc.inputs & (loupe::tasks::kText | loupe::tasks::kQuestion)) r.strings[desc.text_key] = "a red car";
    if (desc.inputs & loupe::tasks::kRegion) r.region = std::array<float, 4>{10, 10, 60, 40};
    r.ints["max_new_tokens"] = 12;
    Job job({});
    JobContext ctx(&job);
    Result res = m->run(r, ctx);
    EXPECT_EQ(res.task, spec.abi_task);
    ASSERT_TRUE(res.strings.count("raw_0"));
    // at most max_new_tokens generated
    EXPECT_LE(std::count(res.strings["raw_0"].begin(), res.strings["raw_0"].end(), '<'), 12 + 1) << spec.abi_task;
  }
}

TEST(Florence2, GreedyAndBeamBothStopWithinTheLimit) {
  auto cfg = Config::load(kTiny);
  Florence2 net(cfg);
  net->eval();
  torch::NoGradGuard ng;
  auto enc = torch::randn({1, 10, 32});
  for (int beams : {1, 3}) {
    GenerateOptions o;
    o.num_beams = beams;
    o.max_new_tokens = 7;
    int steps = 0;
    o.on_step = [&](int, int) { ++steps; };
    auto ids = generate(*net, enc, o);
    EXPECT_EQ(ids.front(), cfg.text.decoder_start_token_id);
    EXPECT_LE(ids.size(), 8u);
    EXPECT_LE(steps, 7);
    // no 3-gram repeats (no_repeat_ngram_size 3)
    std::set<std::vector<int64_t>> seen;
    for (size_t i = 0; i + 3 <= ids.size(); ++i) EXPECT_TRUE(seen.insert({ids[i], ids[i + 1], ids[i + 2]}).second);
  }
}

TEST(Florence2, CancelBetweenTokens) {
  auto m = load_tiny();
  Request r;
  r.task = "caption";
  r.images.push_back(test_image(64, 64));
  r.ints["max_new_tokens"] = 50;
  Job job([](const Progress& p) { return p.step < 3; });
  JobContext ctx(&job);
  try {
    m->run(r, ctx);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), Status::Cancelled);
  }
}

TEST(Florence2, BadInputGivesSpecificErrors) {
  auto m = load_tiny();
  Job job({});
  JobContext ctx(&job);
  auto expect = [&](Request r, Status s, const std::string& needle) {
    try {
      m->run(r, ctx);
      ADD_FAILURE() << "accepted: " << needle;
    } catch (const Error& e) {
      EXPECT_EQ(e.status(), s) << e.what();
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  Request ground;
  ground.task = "ground";
  ground.images.push_back(test_image(64, 64));
  expect(ground, Status::InvalidArgument, "needs a caption");
  Request region;
  region.task = "region_caption";
  region.images.push_back(test_image(64, 64));
  expect(region, Status::InvalidArgument, "needs a region");
  Request tiny;
  tiny.task = "caption";
  tiny.images.push_back(test_image(4, 4));
  expect(tiny, Status::InvalidArgument, "at least 8x8");
  Request huge;
  huge.task = "caption";
  huge.images.push_back(Image{9000, 8000, 1, std::vector<uint8_t>(9000u * 8000u, 0)});
  expect(huge, Status::InvalidArgument, "over 64 Mpixel");
  Request none;
  none.task = "caption";
  expect(none, Status::InvalidArgument, "needs an input image");
  Request german;  // Florence-2 writes English only: the table's "language" is not offered
  german.task = "caption";
  german.images.push_back(test_image(32, 32));
  german.strings["language"] = "de";
  expect(german, Status::InvalidArgument, "language");
}

TEST(Florence2, ShapeMismatchNamesTheKeyAndBothShapes) {
  const auto dir = fs::temp_directory_path() / ("loupe-fl2-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  for (const auto& e : fs::directory_iterator(kTiny)) fs::copy(e.path(), dir / e.path().filename());
  {
    io::SafetensorsFile f(kTiny + "/model.safetensors");
    std::vector<std::pair<std::string, torch::Tensor>> t;
    for (const auto& n : f.names())
      t.push_back({n, n == "model.multi_modal_projector.image_projection.weight" ? torch::zeros({32, 16}) : f.load(n)});
    fs::remove(dir / "model.safetensors");
    io::save_safetensors((dir / "model.safetensors").string(), t);
  }
  try {
    family().load(dir.string(), ModelOptions{});
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), Status::BadModel);
    EXPECT_NE(std::string(e.what()).find("'model.multi_modal_projector.image_projection.weight' model [32, 32] vs file [32, 16]"),
              std::string::npos) << e.what();
  }
  fs::remove_all(dir);
}

// Issue 19: every number a config gives is range-checked when it is read; the error names the file,
// the key and the value, as BadModel (never a crash or a tensor of a negative size).
TEST(Florence2, ConfigNumbersOutOfRangeNameTheFileAndKey) {
  const auto dir = fs::temp_directory_path() / ("loupe-fl2-range-" + std::to_string(::getpid()));
  const nlohmann::json base = io::read_json_file(kTiny + "/config.json");
  struct Case {
    std::string section, key;
    nlohmann::json value;
    std::string expect;
  };
  const std::vector<Case> cases = {
      {"text_config", "encoder_layers", -5, "\"encoder_layers\" is -5"},
      {"text_config", "decoder_attention_heads", 0, "\"decoder_attention_heads\" is 0"},
      {"text_config", "vocab_size", 4294967297LL, "\"vocab_size\" is 4.29497e+09"},
      {"text_config", "d_model", 32.5, "\"d_model\" is 32.5, not a whole number"},
      {"text_config", "eos_token_id", 999999, "\"eos_token_id\" is 999999, not below vocab_size"},
      {"vision_config", "depths", nlohmann::json::array({1, -1}), "\"depths[1]\" is -1"},
      {"vision_config", "window_size", 0, "\"window_size\" is 0"},
      {"vision_config", "mlp_ratio", -2.5, "\"mlp_ratio\" is -2.5"},
  };
  for (const auto& c : cases) {
    fs::remove_all(dir);
    fs::create_directories(dir);
    for (const auto& e : fs::directory_iterator(kTiny)) fs::copy(e.path(), dir / e.path().filename());
    nlohmann::json j = base;
    j[c.section][c.key] = c.value;
    std::ofstream(dir / "config.json", std::ios::trunc) << j.dump(1);
    try {
      family().load(dir.string(), ModelOptions{});
      ADD_FAILURE() << c.key << " = " << c.value.dump() << " was accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.status(), Status::BadModel) << e.what();
      EXPECT_NE(std::string(e.what()).find(c.expect), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find((dir / "config.json").string()), std::string::npos) << e.what();
    }
  }
  fs::remove_all(dir);
}

// Post-processing: expected values follow the reference rules (bins of size/1000, centre of the bin,
// truncated to an integer; labels are the text before the first location, stripped, ASCII only).
TEST(Florence2, PostProcessingOfCraftedGenerations) {
  Result od;
  parse(*find_task("detect"), "</s><s>car<loc_100><loc_200><loc_300><loc_400>dog<loc_0><loc_0><loc_999><loc_999></s>", 1000, 500, od);
  ASSERT_EQ(od.boxes.size(), 2u);
  EXPECT_EQ(od.boxes[0].label, "car");
  EXPECT_EQ(od.boxes[0].x0, 100);  // (100 + 0.5) * 1.0 -> 100
  EXPECT_EQ(od.boxes[0].y0, 100);  // (200 + 0.5) * 0.5 -> 100.25 -> 100
  EXPECT_EQ(od.boxes[0].x1, 300);
  EXPECT_EQ(od.boxes[0].y1, 200);
  EXPECT_EQ(od.boxes[1].label, "dog");
  EXPECT_EQ(od.boxes[1].x1, 999);  // 999.5 -> 999
  EXPECT_EQ(od.boxes[1].y1, 499);  // 499.75 -> 499

  Result grounding;  // two boxes for one phrase
  parse(*find_task("ground"), "a red car<loc_10><loc_10><loc_20><loc_20><loc_30><loc_30><loc_40><loc_40>", 100, 100, grounding);
  ASSERT_EQ(grounding.boxes.size(), 2u);
  EXPECT_EQ(grounding.boxes[1].label, "a red car");
  EXPECT_EQ(grounding.boxes[1].x0, 3);  // 30.5 * 0.1 = 3.05 -> 3

  Result banned;  // phrases listed in processor_config.json are dropped from grounding
  parse(*find_task("ground"), "the image<loc_1><loc_1><loc_2><loc_2>a dog<loc_3><loc_3><loc_4><loc_4>", 100, 100, banned,
        {"the image", "it"});
  ASSERT_EQ(banned.boxes.size(), 1u);
  EXPECT_EQ(banned.boxes[0].label, "a dog");

  Result proposals;  // no phrase needed
  parse(*find_task("region_proposal"), "<loc_0><loc_0><loc_500><loc_500>", 200, 200, proposals);
  ASSERT_EQ(proposals.boxes.size(), 1u);
  EXPECT_EQ(proposals.boxes[0].x1, 100);  // 500.5 * 0.2 = 100.1 -> 100
  EXPECT_EQ(proposals.boxes[0].label, "");

  Result seg;
  parse(*find_task("segment"), "<loc_100><loc_100><loc_200><loc_100><loc_200><loc_200><loc_100><loc_200>", 1000, 1000, seg);
  ASSERT_EQ(seg.polygons.size(), 1u);
  EXPECT_EQ(seg.polygons[0].points, (std::vector<float>{100, 100, 200, 100, 200, 200, 100, 200}));

  Result multi;  // two parts of one object separated by <sep>
  parse(*find_task("segment"), "<loc_1><loc_1><loc_2><loc_2><loc_3><loc_3><sep><loc_7><loc_7><loc_8><loc_8><loc_9><loc_9>", 1000, 1000, multi);
  ASSERT_EQ(multi.polygons.size(), 2u);
  EXPECT_EQ(multi.polygons[0].group, multi.polygons[1].group);

  Result ocr;
  parse(*find_task("ocr_regions"),
        "</s>LOUPE<loc_10><loc_20><loc_30><loc_20><loc_30><loc_40><loc_10><loc_40>CAFE<loc_50><loc_20><loc_70><loc_20><loc_70><loc_40><loc_50><loc_40></s>",
        1000, 1000, ocr);
  ASSERT_EQ(ocr.polygons.size(), 2u);
  EXPECT_EQ(ocr.polygons[0].kind, "quad");
  EXPECT_EQ(ocr.polygons[0].label, "LOUPE");
  EXPECT_EQ(ocr.polygons[1].label, "CAFE");
  EXPECT_EQ(ocr.text, "LOUPE\nCAFE");

  Result caption;
  parse(*find_task("caption"), "<s> A red car parked on a street.</s>", 10, 10, caption);
  EXPECT_EQ(caption.text, "A red car parked on a street.");

  // region prompts quantise the box to bins of the image size
  const std::array<float, 4> region{25.f, 50.f, 75.f, 99.9f};
  EXPECT_EQ(build_prompt(*find_task("region_caption"), "", &region, 100, 200),
            "What does the region <loc_250><loc_250><loc_750><loc_499> describe?");
  EXPECT_EQ(build_prompt(*find_task("ground"), "  a dog ", nullptr, 10, 10), "Locate the phrases in the caption: a dog");
}

TEST(Florence2, DefaultLengthStaysWithinTheDecoderPositions) {
  auto m = load_tiny();  // 128 decoder positions, default max_new_tokens 1024
  Request r;
  r.task = "more_detailed_caption";
  r.images.push_back(test_image(64, 64));
  r.ints["num_beams"] = 1;
  r.ints["no_repeat_ngram_size"] = 0;
  Job job({});
  JobContext ctx(&job);
  EXPECT_NO_THROW(m->run(r, ctx));
}

// The original remote-code layout (pytorch_model.bin, other names, transposed image_projection)
// loads through the key map to the very same model: identical outputs for the same input.
TEST(Florence2, OriginalLayoutGivesTheSameModel) {
  const std::string orig = std::string(LOUPE_FIXTURES_DIR) + "/florence2/tiny-original";
  EXPECT_EQ(family().detect(orig), "florence2-d32");
  auto a = load_tiny();
  auto b = family().load(orig, ModelOptions{});
  Request r;
  r.task = "detect";
  r.images.push_back(test_image(96, 64));
  r.ints["max_new_tokens"] = 16;
  Job job({});
  JobContext ctx(&job);
  const Result ra = a->run(r, ctx), rb = b->run(r, ctx);
  EXPECT_EQ(ra.strings.at("raw_0"), rb.strings.at("raw_0"));
  EXPECT_EQ(ra.to_json(), rb.to_json());
}
