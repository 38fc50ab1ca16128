// Checkpoint I/O: the safetensors reader against a corpus of malformed files, dtypes and unaligned
// data, round trips, shard indexes, torch.save archives, config parsing and state-dict binding.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>

#include "io/checkpoint.h"
#include "io/config.h"
#include "io/safetensors.h"
#include "io/state_dict.h"

namespace fs = std::filesystem;
using namespace loupe;
using namespace loupe::io;

static const std::string kFix = LOUPE_FIXTURES_DIR;

static fs::path temp_dir(const std::string& name) {
  auto d = fs::temp_directory_path() / ("loupe-test-" + name + "-" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

TEST(Safetensors, MalformedCorpusGivesBadModelNamingFileAndReason) {
  const auto expected = read_json_file(kFix + "/bad_safetensors/expected.json");
  ASSERT_GE(expected.size(), 12u);
  for (auto it = expected.begin(); it != expected.end(); ++it) {
    const std::string path = kFix + "/bad_safetensors/" + it.key();
    try {
      SafetensorsFile f(path);
      ADD_FAILURE() << it.key() << " was accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.status(), Status::BadModel) << it.key() << ": " << e.what();
      EXPECT_NE(std::string(e.what()).find(it.key()), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(it.value().get<std::string>()), std::string::npos)
          << it.key() << ": '" << e.what() << "' lacks '" << it.value().get<std::string>() << "'";
    }
  }
}

TEST(Safetensors, MissingFileIsNotFound) {
  try {
    SafetensorsFile f("/no/such/file.safetensors");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), Status::NotFound);
    EXPECT_NE(std::string(e.what()).find("/no/such/file.safetensors"), std::string::npos);
  }
}

TEST(Safetensors, EveryDtypeLoadsWithTheRightValuesAtUnalignedOffsets) {
  SafetensorsFile f(kFix + "/io/good.safetensors");
  EXPECT_EQ(f.metadata().at("format"), "pt");
  EXPECT_EQ(f.info("f32").begin, 3u);  // unaligned for 4-byte floats
  EXPECT_TRUE(f.load("u8").equal(torch::tensor({1, 2, 250}, torch::kUInt8)));
  EXPECT_TRUE(f.load("f32").equal(torch::tensor({1.5f, -2.0f, 3.25f, 1e-3f}).reshape({2, 2})));
  EXPECT_TRUE(f.load("f16").to(torch::kFloat32).equal(torch::tensor({0.5f, -4.0f})));
  EXPECT_TRUE(f.load("bf16").to(torch::kFloat32).equal(torch::tensor({1.0f, -2.0f})));
  EXPECT_TRUE(f.load("i64").equal(torch::tensor({int64_t(-7), int64_t(1) << 40})));
  EXPECT_EQ(f.load("i32").item<int32_t>(), 123456);
  EXPECT_TRUE(f.load("bool").equal(torch::tensor({true, false})));
  EXPECT_DOUBLE_EQ(f.load("f64").item<double>(), 3.141592653589793);
  EXPECT_EQ(f.load("empty").sizes(), (std::vector<int64_t>{0, 4}));
  // conversion on load
  EXPECT_EQ(f.load("f16", torch::kCPU, torch::kFloat32).scalar_type(), torch::kFloat32);
  // F8 is valid safetensors, but libtorch 1.13 cannot hold it: a clear error when loaded
  if (TORCH_VERSION_MAJOR < 2) {
    try {
      f.load("f8");
      FAIL();
    } catch (const Error& e) {
      EXPECT_EQ(e.status(), Status::Unsupported);
      EXPECT_NE(std::string(e.what()).find("F8_E4M3"), std::string::npos);
    }
  }
}

// The bytes a tensor holds.
static std::string bytes_of(const torch::Tensor& t) {
  const auto c = t.contiguous();
  return std::string(static_cast<const char*>(c.data_ptr()), static_cast<size_t>(c.numel()) * c.element_size());
}

// Every single-byte corruption of a valid file (each byte XOR 0x5a in turn), asserted flip by flip: the
// file is refused with BadModel and a message that names it and says why, or it opens and every tensor
// reads exactly the bytes its header declares, with the original dtype, shape and offsets. What may
// open depends on where the byte is:
//   - the 8-byte header length: nothing (the JSON is cut short, or runs into the data or past the file);
//   - the header JSON: only a file with the same tensors in which one tensor is renamed or one
//     metadata string changed (every other flip breaks the JSON or a dtype, shape or offset);
//   - the data area: always, names and metadata intact; the tensor over the byte reads it flipped.
TEST(Safetensors, EverySingleByteCorruptionIsRefusedOrReadsWhatItsHeaderDeclares) {
  const std::string file = kFix + "/io/good.safetensors";
  std::ifstream in(file, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_GT(bytes.size(), 8u);
  uint64_t header_size = 0;
  for (int i = 7; i >= 0; --i) header_size = (header_size << 8) | static_cast<uint8_t>(bytes[i]);
  const size_t data_begin = 8 + header_size;
  ASSERT_LT(data_begin, bytes.size());

  // The original: its tensors, which of them this libtorch can hold (F8 needs torch >= 2.1), its metadata.
  SafetensorsFile good(file);
  const std::map<std::string, TensorInfo> want = good.tensors();
  const std::map<std::string, std::string> want_meta = good.metadata();
  ASSERT_GE(want.size(), 10u);
  ASSERT_FALSE(want_meta.empty());
  std::map<std::string, bool> loads;
  std::vector<int> owners(bytes.size() - data_begin, 0);  // tensors over each byte of the data area
  for (const auto& [name, ti] : want) {
    try {
      EXPECT_EQ(bytes_of(good.load(name)), bytes.substr(data_begin + ti.begin, ti.end - ti.begin)) << name;
      loads[name] = true;
    } catch (const Error& e) {
      ASSERT_EQ(e.status(), Status::Unsupported) << e.what();
      loads[name] = false;
    }
    for (uint64_t b = ti.begin; b < ti.end; ++b) ++owners.at(b);
  }
  // Each data byte belongs to exactly one tensor, so a flip there must show in exactly one tensor.
  for (size_t b = 0; b < owners.size(); ++b) ASSERT_EQ(owners[b], 1) << "data byte " << b;

  const auto path = fs::temp_directory_path() / ("loupe-flip-" + std::to_string(::getpid()) + ".safetensors");
  size_t refused = 0, renamed = 0, metadata_changed = 0, data_changed = 0;
  for (size_t i = 0; i < bytes.size(); ++i) {
    const bool in_length = i < 8, in_data = i >= data_begin;
    SCOPED_TRACE("byte " + std::to_string(i) + (in_length ? " (header length)" : in_data ? " (data)" : " (header)") +
                 " XOR 0x5a");
    std::string bad = bytes;
    bad[i] = static_cast<char>(bad[i] ^ 0x5a);
    {
      std::ofstream out(path, std::ios::binary | std::ios::trunc);
      out << bad;
    }
    std::unique_ptr<SafetensorsFile> f;
    try {
      f = std::make_unique<SafetensorsFile>(path.string());
    } catch (const Error& e) {
      const std::string what = e.what(), prefix = path.string() + ": ";
      EXPECT_EQ(e.status(), Status::BadModel) << what;
      EXPECT_EQ(what.rfind(prefix, 0), 0u) << "the message starts with the file: " << what;
      EXPECT_GT(what.size(), prefix.size()) << "and says why: " << what;
      EXPECT_FALSE(in_data) << "a flip in the data area made the header invalid: " << what;
      ++refused;
      continue;
    }
    EXPECT_FALSE(in_length) << "a corrupted header length was accepted";

    // The same tensors: a name not in the original is the one original name that is gone.
    const auto& got = f->tensors();
    std::vector<std::string> gone, added;
    for (const auto& kv : want)
      if (!got.count(kv.first)) gone.push_back(kv.first);
    for (const auto& kv : got)
      if (!want.count(kv.first)) added.push_back(kv.first);
    if (got.size() != want.size() || gone.size() > 1 || gone.size() != added.size()) {
      ADD_FAILURE() << "opened with " << got.size() << " tensors (" << gone.size() << " gone, " << added.size()
                    << " new) instead of the original " << want.size();
      continue;
    }
    size_t meta_lost = 0;  // original (key, value) pairs the flipped file does not have
    for (const auto& kv : want_meta) {
      const auto it = f->metadata().find(kv.first);
      meta_lost += it == f->metadata().end() || it->second != kv.second;
    }
    EXPECT_EQ(f->metadata().size(), want_meta.size());

    // Every tensor: the original dtype, shape and offsets, and exactly the bytes they declare in this file.
    for (const auto& [name, ti] : got) {
      const std::string orig = want.count(name) ? name : gone.at(0);
      const TensorInfo& w = want.at(orig);
      EXPECT_EQ(ti.dtype, w.dtype) << name;
      EXPECT_EQ(ti.shape, w.shape) << name;
      EXPECT_EQ(ti.begin, w.begin) << name;
      EXPECT_EQ(ti.end, w.end) << name;
      try {
        const auto t = f->load(name);
        EXPECT_TRUE(loads.at(orig)) << name << " loads here but not from the original";
        EXPECT_EQ(t.sizes().vec(), w.shape) << name;
        EXPECT_EQ(bytes_of(t), bad.substr(data_begin + w.begin, w.end - w.begin)) << name;
        const bool over_flip = in_data && i - data_begin >= w.begin && i - data_begin < w.end;
        EXPECT_EQ(bytes_of(t) != bytes.substr(data_begin + w.begin, w.end - w.begin), over_flip) << name;
      } catch (const Error& e) {
        EXPECT_FALSE(loads.at(orig)) << name << ": " << e.what();  // only what the original cannot load either
        EXPECT_EQ(e.status(), Status::Unsupported) << name << ": " << e.what();
      }
    }

    // What changed: one tensor's bytes (data), or one name or one metadata string (header).
    if (in_data) {
      EXPECT_TRUE(gone.empty()) << "a flip in the data area renamed " << gone.at(0);
      EXPECT_EQ(meta_lost, 0u) << "a flip in the data area changed the metadata";
      ++data_changed;
    } else if (gone.size() == 1) {
      EXPECT_EQ(meta_lost, 0u) << "renamed " << gone[0] << " and changed the metadata";
      ++renamed;
    } else {
      EXPECT_EQ(meta_lost, 1u) << "a header flip that opened changed neither a name nor one metadata string";
      ++metadata_changed;
    }
  }
  fs::remove(path);
  // Every flip was one of the four outcomes, each seen; the data area always opens.
  EXPECT_EQ(refused + renamed + metadata_changed + data_changed, bytes.size());
  EXPECT_EQ(data_changed, bytes.size() - data_begin);
  EXPECT_GT(refused, 100u);
  EXPECT_GT(renamed, 0u);
  EXPECT_GT(metadata_changed, 0u);
  std::printf("%zu flips: %zu refused, %zu renamed a tensor, %zu changed the metadata, %zu changed data\n",
              bytes.size(), refused, renamed, metadata_changed, data_changed);
}

TEST(Safetensors, SaveLoadRoundTrip) {
  auto dir = temp_dir("rt");
  auto a = torch::randn({3, 5});
  auto b = torch::arange(7, torch::kInt64);
  auto c = torch::randn({2, 2}).to(torch::kBFloat16);
  save_safetensors((dir / "x.safetensors").string(), {{"a", a}, {"b", b}, {"c", c}}, {{"k", "v"}});
  SafetensorsFile f((dir / "x.safetensors").string());
  EXPECT_TRUE(f.load("a").equal(a));
  EXPECT_TRUE(f.load("b").equal(b));
  EXPECT_TRUE(f.load("c").equal(c));
  EXPECT_EQ(f.metadata().at("k"), "v");
  fs::remove_all(dir);
}

TEST(Checkpoint, ShardedIndexAndFolderDetection) {
  auto dir = temp_dir("shard");
  auto a = torch::randn({4});
  auto b = torch::randn({2, 3});
  save_safetensors((dir / "model-00001-of-00002.safetensors").string(), {{"a", a}});
  save_safetensors((dir / "model-00002-of-00002.safetensors").string(), {{"b", b}});
  std::ofstream(dir / "model.safetensors.index.json")
      << R"({"metadata": {}, "weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}})";
  auto ck = Checkpoint::open(dir.string());
  EXPECT_TRUE(ck.load("a").equal(a));
  EXPECT_TRUE(ck.load("b").equal(b));
  EXPECT_EQ(ck.shape("b"), (std::vector<int64_t>{2, 3}));
  EXPECT_NE(ck.path_of("b").find("00002"), std::string::npos);
  // an index that points at a tensor its shard does not have
  std::ofstream(dir / "model.safetensors.index.json", std::ios::trunc)
      << R"({"weight_map": {"zz": "model-00001-of-00002.safetensors"}})";
  try {
    Checkpoint::open(dir.string());
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), Status::BadModel);
    EXPECT_NE(std::string(e.what()).find("'zz'"), std::string::npos);
  }
  fs::remove_all(dir);
  EXPECT_THROW(Checkpoint::open(dir.string()), Error);
}

TEST(Checkpoint, NonZipTorchFileIsRefusedClearly) {
  // Legacy (non-zip) pickles can run code when loaded: they are refused with a hint.
  auto dir = temp_dir("bin");
  std::ofstream(dir / "pytorch_model.bin") << "not a pickle";
  try {
    Checkpoint::open(dir.string());
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), Status::BadModel);
    EXPECT_NE(std::string(e.what()).find("pytorch_model.bin"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("safetensors"), std::string::npos);
  }
  fs::remove_all(dir);
}

TEST(Checkpoint, TorchSaveArchiveIsReadWithoutRunningCode) {
  auto ck = Checkpoint::open(kFix + "/io/tiny_pytorch_model.bin");
  EXPECT_TRUE(ck.has("linear.weight"));  // the "state_dict." wrapper is removed
  EXPECT_TRUE(ck.load("linear.weight").equal(torch::arange(6, torch::kFloat32).reshape({2, 3}) / 4));
  EXPECT_TRUE(ck.load("linear.bias").equal(torch::tensor({0.5f, -0.5f})));
  EXPECT_EQ(ck.load("emb.weight").scalar_type(), torch::kFloat16);
  EXPECT_TRUE(ck.load("emb.weight").to(torch::kFloat32).equal(torch::arange(4, torch::kFloat32).reshape({2, 2})));
  EXPECT_EQ(ck.load("steps").item<int64_t>(), 7);
  // views of one storage: a transpose (strides) and a row (offset)
  const auto base = torch::arange(12, torch::kFloat32).reshape({3, 4});
  EXPECT_TRUE(ck.load("view.transposed").equal(base.t()));
  EXPECT_TRUE(ck.load("view.row").equal(base[1]));
  // a one-item dict is pickled with SETITEM, which libtorch 1.13's own unpickler rejects
  EXPECT_TRUE(Checkpoint::open(kFix + "/io/single_item.bin").load("w").equal(torch::ones({1})));
}

TEST(Checkpoint, MaliciousPickleIsRefused) {
  try {
    Checkpoint::open(kFix + "/io/malicious.bin");
    FAIL() << "a pickle calling os.system was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), Status::BadModel);
    EXPECT_NE(std::string(e.what()).find("refusing to load"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("system"), std::string::npos) << e.what();
  }
}

TEST(Checkpoint, TruncatedArchiveIsBadModel) {
  auto dir = temp_dir("trunc");
  std::ifstream in(kFix + "/io/tiny_pytorch_model.bin", std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::ofstream(dir / "pytorch_model.bin", std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  try {
    Checkpoint::open(dir.string());
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), Status::BadModel);
    EXPECT_NE(std::string(e.what()).find("pytorch_model.bin"), std::string::npos) << e.what();
  }
  // Every single-byte corruption either still reads or gives a loupe::Error: never a crash.
  for (size_t i = 0; i < bytes.size(); ++i) {
    std::string bad = bytes;
    bad[i] = static_cast<char>(bad[i] ^ 0x5a);
    std::ofstream(dir / "pytorch_model.bin", std::ios::binary | std::ios::trunc) << bad;
    try {
      Checkpoint::open(dir.string());
    } catch (const Error&) {
    }
  }
  fs::remove_all(dir);
}

TEST(Config, ErrorsNameFileAndKey) {
  auto dir = temp_dir("cfg");
  std::ofstream(dir / "bad.json") << "{\"a\": 1,, }";
  std::ofstream(dir / "ok.json") << R"({"hidden_size": "large", "layers": 4})";
  std::ofstream(dir / "huge.json") << R"({"scale": 88888E8888})";  // parses, then overflows a double
  auto expect_bad_model = [&](const std::string& name, const std::string& needle) {
    try {
      read_json_file((dir / name).string());
      ADD_FAILURE() << name << " accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.status(), Status::BadModel) << e.what();
      EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_bad_model("bad.json", "byte");
  expect_bad_model("huge.json", "not valid JSON");
  EXPECT_THROW(read_json_file((dir / "none.json").string()), Error);
  auto j = read_json_file((dir / "ok.json").string());
  EXPECT_EQ(get_or<int>(j, "layers", 1, "ok.json"), 4);
  EXPECT_EQ(get_or<int>(j, "heads", 8, "ok.json"), 8);
  try {
    get_or<int>(j, "hidden_size", 1, "ok.json");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("\"hidden_size\""), std::string::npos);
  }
  fs::remove_all(dir);
}

struct Tiny : torch::nn::Module {
  torch::nn::Linear linear{nullptr};
  torch::nn::Embedding emb{nullptr};
  Tiny() {
    linear = register_module("linear", torch::nn::Linear(3, 2));
    emb = register_module("emb", torch::nn::Embedding(2, 2));
  }
};

TEST(StateDict, BindLoadsAndReportsMissingUnexpectedAndMismatched) {
  auto dir0 = temp_dir("bind0");
  save_safetensors((dir0 / "model.safetensors").string(),
                   {{"linear.weight", torch::arange(6, torch::kFloat32).reshape({2, 3}) / 4},
                    {"linear.bias", torch::tensor({0.5f, -0.5f})},
                    {"emb.weight", torch::arange(4, torch::kFloat32).reshape({2, 2}).to(torch::kFloat16)}});
  auto ck = Checkpoint::open(dir0.string());
  fs::remove_all(dir0);  // the mapping stays valid while the checkpoint lives
  Tiny m;
  BindOptions o;
  o.dtype = torch::kFloat32;
  auto r = loupe::io::bind(m, ck, o);
  EXPECT_TRUE(r.ok());
  EXPECT_TRUE(m.linear->weight.equal(torch::arange(6, torch::kFloat32).reshape({2, 3}) / 4));
  EXPECT_EQ(m.emb->weight.scalar_type(), torch::kFloat32);

  // a key map from another layout
  auto dir = temp_dir("bind");
  save_safetensors((dir / "model.safetensors").string(),
                   {{"orig.fc.weight", torch::ones({3, 2})},  // stored transposed
                    {"orig.fc.bias", torch::zeros({2})},
                    {"orig.table", torch::ones({2, 2})},
                    {"extra", torch::ones({1})}});
  auto ck2 = Checkpoint::open(dir.string());
  BindOptions o2;
  o2.keymap.prefix("linear.", "orig.fc.").regex("^emb\\.weight$", "orig.table")
      .transform("^linear\\.weight$", [](const torch::Tensor& t) { return t.t(); });
  auto r2 = loupe::io::bind(m, ck2, o2);
  EXPECT_TRUE(r2.ok());
  EXPECT_EQ(r2.unexpected, std::vector<std::string>{"extra"});

  // mismatches and missing keys: the message names keys and both shapes
  Tiny other;
  other.linear = other.replace_module("linear", torch::nn::Linear(4, 2));
  BindOptions o3;
  o3.keymap.prefix("linear.", "orig.fc.");
  try {
    loupe::io::bind(other, ck2, o3);
    FAIL();
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(e.status(), Status::BadModel);
    EXPECT_NE(msg.find("model.safetensors"), std::string::npos) << msg;
    EXPECT_NE(msg.find("'orig.fc.weight' model [2, 4] vs file [3, 2]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("missing: 'emb.weight'"), std::string::npos) << msg;
  }
  fs::remove_all(dir);
}
