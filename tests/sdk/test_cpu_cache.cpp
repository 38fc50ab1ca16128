// The CPU block cache (core/cpu_cache.h): large blocks are reused within a job and given back to the
// system after it; small blocks and the results are untouched. Each test runs in its own process
// (ctest), where the first install decides the limit.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "core/cpu_cache.h"
#include "core/runtime.h"
#include "core/torch_compat.h"

using namespace loupe;

namespace {
bool installed() { return cpu::install_block_cache(); }
}  // namespace

TEST(CpuBlockCache, ReusesAFreedLargeBlockAndGivesItBackOnRelease) {
  if (!installed()) GTEST_SKIP() << "cache not installed (LOUPE_CPU_CACHE=0 or an AddressSanitizer build)";
  cpu::release_block_cache();
  const auto before = cpu::block_cache_stats();
  void* first = nullptr;
  {
    auto a = torch::full({16 << 20}, 3.0f);  // 64 MiB
    first = a.data_ptr();
    EXPECT_EQ(a.sum().item<float>(), 3.0f * (16 << 20));
  }
  auto s = cpu::block_cache_stats();
  EXPECT_GE(s.cached_bytes, uint64_t(64) << 20);
  EXPECT_EQ(s.misses, before.misses + 1);
  {
    auto b = torch::empty({(16 << 20) - 1000});  // a little smaller: same size class
    EXPECT_EQ(b.data_ptr(), first);
    b.fill_(2.0f);
    EXPECT_EQ(b.sum().item<float>(), 2.0f * ((16 << 20) - 1000));
  }
  s = cpu::block_cache_stats();
  EXPECT_EQ(s.hits, before.hits + 1);
  cpu::release_block_cache();
  s = cpu::block_cache_stats();
  EXPECT_EQ(s.cached_bytes, 0u);
  EXPECT_EQ(s.in_use_bytes, before.in_use_bytes);
  // small blocks are libtorch's allocator's, as before
  auto small = torch::ones({1000});
  EXPECT_EQ(cpu::block_cache_stats().in_use_bytes, before.in_use_bytes);
  EXPECT_EQ(small.sum().item<float>(), 1000.0f);
}

// A smaller request takes a larger free block with its tail given back; a request no free block
// can serve first gives back free blocks, so that in-use + cached bytes never pass the highest
// in-use count: the cache holds no more memory than the program would without it.
TEST(CpuBlockCache, TrimsLargerBlocksAndNeverHoldsMoreThanThePeakInUse) {
  if (!installed()) GTEST_SKIP() << "cache not installed";
  cpu::release_block_cache();
  const auto before = cpu::block_cache_stats();
  constexpr int64_t MiB = 1 << 20;
  void* first = nullptr;
  {
    auto a = torch::empty({64 * MiB}, torch::kUInt8);
    first = a.data_ptr();
  }
  EXPECT_EQ(cpu::block_cache_stats().cached_bytes, uint64_t(64 * MiB));
  {
    auto b = torch::full({20 * MiB}, 7, torch::kUInt8);  // served by the 64 MiB block, trimmed
    EXPECT_EQ(b.data_ptr(), first);
    const auto s = cpu::block_cache_stats();
    EXPECT_EQ(s.cached_bytes, 0u);
    EXPECT_EQ(s.in_use_bytes, before.in_use_bytes + 20 * MiB);
    EXPECT_EQ(b.sum().item<int64_t>(), 7 * 20 * MiB);
  }
  cpu::release_block_cache();
  cpu::reset_block_cache_peak();
  {
    auto a = torch::empty({32 * MiB}, torch::kUInt8), b = torch::empty({32 * MiB}, torch::kUInt8);
  }
  EXPECT_EQ(cpu::block_cache_stats().cached_bytes, uint64_t(64 * MiB));
  {
    auto c = torch::ones({96 * MiB}, torch::kUInt8);  // more than any free block: they go first
    const auto s = cpu::block_cache_stats();
    EXPECT_EQ(s.cached_bytes, 0u);
    EXPECT_LE(s.peak_bytes, before.in_use_bytes + 96 * MiB);
    EXPECT_EQ(c.sum().item<int64_t>(), 96 * MiB);
  }
  cpu::release_block_cache();
}

TEST(CpuBlockCache, KeepsNoMoreThanItsLimit) {
  if (!installed()) GTEST_SKIP() << "cache not installed";
  cpu::release_block_cache();
  const auto limit = cpu::block_cache_stats().limit_bytes;
  {
    std::vector<torch::Tensor> many;
    for (int i = 0; i < 4; ++i) many.push_back(torch::empty({int64_t(limit / 4 / 4 + (1 << 20))}));  // 4 x (limit/4 + 4 MiB)
  }
  EXPECT_LE(cpu::block_cache_stats().cached_bytes, limit);
  cpu::release_block_cache();
}

TEST(CpuBlockCache, AnImpossibleBlockIsAnOutOfMemoryError) {
  if (!installed()) GTEST_SKIP() << "cache not installed";
  try {
    auto t = torch::empty({int64_t(1) << 58});  // 2^60 bytes
    FAIL() << "allocated 2^60 bytes";
  } catch (const std::exception& e) {
    EXPECT_TRUE(compat::is_out_of_memory(e)) << e.what();
  }
}

TEST(CpuBlockCache, TheRuntimeReportsItAndEmptiesItAfterEveryJob) {
  RuntimeOptions o;
  o.device = "cpu";
  auto rt = Runtime::create(o, {}, LogLevel::Info);
  const auto stats = cpu::block_cache_stats();
  const auto d = rt->diagnostics();
  ASSERT_TRUE(d["cpu"].contains("block_cache"));
  EXPECT_EQ(d["cpu"]["block_cache"]["installed"], stats.installed);
  if (!stats.installed) GTEST_SKIP() << "cache not installed";
  auto job = rt->submit(
      [](JobContext&) {
        auto a = torch::ones({16 << 20}), b = a * 2;  // 64 MiB each, freed when the work returns
        EXPECT_EQ(b.sum().item<float>(), 2.0f * (16 << 20));
        return std::unique_ptr<Result>();
      },
      {}, false);
  job->wait(-1);
  EXPECT_EQ(cpu::block_cache_stats().cached_bytes, 0u);
  EXPECT_GT(cpu::block_cache_stats().misses, stats.misses);
}
