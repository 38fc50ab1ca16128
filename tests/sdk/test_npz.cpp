// io/npz: .npz / .npy files written by numpy itself (np.savez, np.savez_compressed, np.save) and a
// corpus of malformed ones (tests/fixtures/gen/make_paligemma_seg_npz.py; manifest.json holds what
// each good file contains and what error each bad one must give).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/npz.h"

using namespace loupe;

namespace {

const std::string kDir = std::string(LOUPE_FIXTURES_DIR) + "/paligemma/seg/npz/";

nlohmann::json manifest() {
  std::ifstream f(kDir + "manifest.json");
  EXPECT_TRUE(f.good());
  return nlohmann::json::parse(f);
}

torch::ScalarType dtype_of(const std::string& descr) {
  const std::string k = descr.substr(1);
  if (k == "f2") return torch::kFloat16;
  if (k == "f4") return torch::kFloat32;
  if (k == "f8") return torch::kFloat64;
  if (k == "i1") return torch::kInt8;
  if (k == "i2") return torch::kInt16;
  if (k == "i4") return torch::kInt32;
  if (k == "i8") return torch::kInt64;
  if (k == "u1") return torch::kUInt8;
  if (k == "b1") return torch::kBool;
  ADD_FAILURE() << "dtype " << descr;
  return torch::kFloat32;
}

void expect_array(const torch::Tensor& t, const nlohmann::json& want, const std::string& name) {
  SCOPED_TRACE(name);
  EXPECT_EQ(t.scalar_type(), dtype_of(want["descr"]));
  EXPECT_EQ(t.sizes().vec(), want["shape"].get<std::vector<int64_t>>());
  EXPECT_TRUE(t.is_contiguous());
  const auto& v = want["values"];
  ASSERT_EQ(static_cast<size_t>(t.numel()), v.size());
  const auto flat = t.reshape({-1});
  for (size_t i = 0; i < v.size(); ++i) {
    if (t.scalar_type() == torch::kBool) {
      EXPECT_EQ(flat[i].item<bool>(), v[i].get<bool>()) << i;
    } else if (t.is_floating_point()) {
      EXPECT_EQ(flat[i].item<double>(), v[i].get<double>()) << i;  // exact: the same bits
    } else {
      EXPECT_EQ(flat[i].item<int64_t>(), v[i].get<int64_t>()) << i;
    }
  }
}

}  // namespace

TEST(Npz, ReadsWhatNumpyWroteStoredAndDeflated) {
  const auto m = manifest();
  ASSERT_EQ(m["good"].size(), 4u);
  for (const std::string file : {"stored.npz", "deflated.npz", "zip64_entry.npz"}) {  // and zip64 extra fields
    SCOPED_TRACE(file);
    const auto got = io::read_npz(kDir + file);
    const auto names = m["good"][file].get<std::vector<std::string>>();
    ASSERT_EQ(got.size(), names.size());
    for (const auto& n : names) {
      ASSERT_TRUE(got.count(n)) << n;
      expect_array(got.at(n), m["arrays"][n], n);
    }
  }
}

TEST(Npz, ReadsALoneNpyInFortranOrder) {
  const auto m = manifest();
  expect_array(io::read_npy(kDir + "single.npy"), m["arrays"]["fortran"], "single.npy");
}

TEST(Npz, EveryMalformedFileGivesAClearError) {
  const auto m = manifest();
  ASSERT_GE(m["bad"].size(), 20u);
  for (auto it = m["bad"].begin(); it != m["bad"].end(); ++it) {
    const std::string file = it.key();
    const auto& want = it.value();
    SCOPED_TRACE(file);
    try {
      if (file.size() > 4 && file.substr(file.size() - 4) == ".npy")
        io::read_npy(kDir + file);
      else
        io::read_npz(kDir + file);
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      const std::string what = e.what();
      const std::string status = want["status"];
      EXPECT_EQ(e.status(), status == "BadModel" ? Status::BadModel : Status::Unsupported) << what;
      EXPECT_NE(what.find(kDir + file), std::string::npos) << what;  // names the file
      EXPECT_NE(what.find(want["message"].get<std::string>()), std::string::npos) << what;
      if (!want["entry"].is_null())  // and the entry
        EXPECT_NE(what.find("'" + want["entry"].get<std::string>() + "'"), std::string::npos) << what;
    }
  }
}

TEST(Npz, AMissingFileIsNotFound) {
  try {
    io::read_npz(kDir + "no-such.npz");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), Status::NotFound);
    EXPECT_NE(std::string(e.what()).find("no-such.npz"), std::string::npos);
  }
}

TEST(Npz, SingleByteCorruptionsAreReadOrRefusedNeverACrash) {
  const std::string tmp = (std::filesystem::temp_directory_path() /
                           ("loupe-npz-corrupt-" + std::to_string(::getpid()) + ".npz")).string();
  for (const std::string file : {"stored.npz", "deflated.npz"}) {
    std::ifstream in(kDir + file, std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    ASSERT_GT(bytes.size(), 1000u);
    size_t refused = 0, tried = 0;
    // a sample: every 29th byte of the entries, every 7th of the directory at the end
    for (size_t i = 0; i < bytes.size(); i += i + 1200 >= bytes.size() ? 7 : 29, ++tried) {
      std::string bad = bytes;
      bad[i] = static_cast<char>(bad[i] ^ 0x5a);
      std::ofstream(tmp, std::ios::binary | std::ios::trunc) << bad;
      try {
        io::read_npz(tmp);
      } catch (const Error& e) {
        ++refused;
        EXPECT_NE(std::string(e.what()).find(tmp), std::string::npos) << e.what();
      }
    }
    EXPECT_GT(refused, tried / 2) << file;  // the CRC catches every change of the data
  }
  std::filesystem::remove(tmp);
}

// Found by the fuzzer (scripts/fuzz.sh npz): a deflated entry whose header declares 2.5 GB from a
// few bytes was allocated before it was inflated. Refused now from the header, nothing allocated.
TEST(Npz, ADeclaredSizeBeyondWhatDeflateCanProduceIsRefused) {
  const std::string file = std::string(LOUPE_FIXTURES_DIR) + "/../fuzz/regressions/npz/deflate-size-beyond-ratio.npz";
  try {
    io::read_npz(file);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), Status::BadModel);
    const std::string what = e.what();
    EXPECT_NE(what.find("'x.npy'"), std::string::npos) << what;
    EXPECT_NE(what.find("more than deflate can produce"), std::string::npos) << what;
  }
}
