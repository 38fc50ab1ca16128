#include "core/cpu_cache.h"

#include <sys/mman.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

#include <c10/core/CPUAllocator.h>

#include "core/runtime.h"
#include "core/torch_compat.h"

#if defined(__SANITIZE_ADDRESS__)
#define LOUPE_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define LOUPE_ASAN 1
#endif
#endif

namespace loupe::cpu {

namespace {

constexpr size_t kMinBlock = size_t(1) << 20;  // smaller blocks go to libtorch's allocator
constexpr size_t kHuge = size_t(2) << 20;      // transparent huge page size on x86-64
constexpr size_t kPage = 4096;

// Size classes: 4 KiB pages up to 16 MiB, whole huge pages above. A free block serves a request
// up to 1/8 smaller than itself, so that shapes which differ a little still reuse memory.
size_t size_class(size_t n) {
  const size_t unit = n >= (size_t(16) << 20) ? kHuge : kPage;
  return (n + unit - 1) / unit * unit;
}

class BlockCache final : public c10::Allocator {
 public:
  BlockCache(c10::Allocator* base, uint64_t limit) : base_(base), base_raw_deleter_(base->raw_deleter()), limit_(limit) {}

  // Context = data pointer, so that libtorch's raw_allocate()/raw_deallocate() (used by oneDNN's
  // glue) work: the deleter tells the cache's blocks from the base allocator's by the address.
  c10::DataPtr allocate(size_t n) LOUPE_ALLOCATOR_CONST override {
    if (n < kMinBlock) return base_->allocate(n);
    void* p = const_cast<BlockCache*>(this)->take(n);
    return {p, p, &BlockCache::give_back, c10::Device(c10::DeviceType::CPU)};
  }
  c10::DeleterFnPtr raw_deleter() const override { return &BlockCache::give_back; }
  void copy_data(void* dest, const void* src, std::size_t count) const LOUPE_ALLOCATOR_COPY_DATA_OVERRIDE {
    std::memcpy(dest, src, count);
  }

  void release() {
    std::multimap<size_t, void*> free;
    {
      std::lock_guard<std::mutex> lock(mu_);
      free.swap(free_);
      cached_ = 0;
      live_peak_ = in_use_;
    }
    for (auto& [size, p] : free) munmap(p, size);
  }

  CacheStats stats() {
    std::lock_guard<std::mutex> lock(mu_);
    CacheStats s;
    s.installed = true;
    s.limit_bytes = limit_;
    s.in_use_bytes = in_use_;
    s.cached_bytes = cached_;
    s.peak_bytes = peak_;
    s.hits = hits_;
    s.misses = misses_;
    return s;
  }
  void reset_peak() {
    std::lock_guard<std::mutex> lock(mu_);
    peak_ = in_use_ + cached_;
  }

  static std::atomic<BlockCache*> instance;

 private:
  // A request is served, in this order: by a free block of its size class (up to 1/8 larger); by
  // the smallest larger free block, its tail given back to the system; by a fresh mapping, after
  // giving back as many free blocks as it takes for in-use + cached bytes to stay within the
  // highest in-use count since the last release(). So the cache never holds more memory than the
  // program's own peak: it saves the page faults, not the memory.
  void* take(size_t n) {
    const size_t want = size_class(n);
    std::vector<std::pair<void*, size_t>> unmap;  // given back outside the lock
    void* p = nullptr;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = free_.lower_bound(want);
      if (it != free_.end()) {
        const size_t size = it->first;
        p = it->second;
        free_.erase(it);
        cached_ -= size;
        size_t keep = size;
        if (size - want > want / 8) {
          unmap.emplace_back(static_cast<char*>(p) + want, size - want);
          keep = want;
        }
        in_use_ += keep;
        live_peak_ = std::max(live_peak_, in_use_);
        live_[p] = keep;
        ++hits_;
      } else {
        ++misses_;
        const uint64_t budget = std::max(live_peak_, in_use_ + want);
        while (!free_.empty() && in_use_ + cached_ + want > budget) {
          auto last = std::prev(free_.end());
          unmap.emplace_back(last->second, last->first);
          cached_ -= last->first;
          free_.erase(last);
        }
      }
    }
    for (auto& [q, size] : unmap) munmap(q, size);
    if (p) return p;
    p = map(want);
    if (!p) {  // the system is short: give the cache back and try once more
      release();
      p = map(want);
    }
    if (!p)
      TORCH_CHECK(false, "CPU block cache: not enough memory: you tried to allocate ", n, " bytes (",
                  std::strerror(errno), ")");
    std::lock_guard<std::mutex> lock(mu_);
    in_use_ += want;
    live_peak_ = std::max(live_peak_, in_use_);
    peak_ = std::max(peak_, in_use_ + cached_);
    live_[p] = want;
    return p;
  }

  void put(void* p) {
    size_t size = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = live_.find(p);
      if (it != live_.end()) {
        size = it->second;
        live_.erase(it);
        in_use_ -= size;
        if (cached_ + size <= limit_) {
          free_.emplace(size, p);
          cached_ += size;
          return;
        }
      }
    }
    if (size) munmap(p, size);
    else if (p && base_raw_deleter_) base_raw_deleter_(p);  // a small block: the base allocator's
  }

  static void give_back(void* ptr) { instance.load()->put(ptr); }

  // 2 MiB aligned where the block is that large, so that the kernel can back it with huge pages.
  static void* map(size_t size) {
    const size_t align = size >= kHuge ? kHuge : kPage;
    const size_t span = size + align - kPage;
    void* raw = mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) return nullptr;
    const auto start = reinterpret_cast<uintptr_t>(raw);
    const uintptr_t aligned = (start + align - 1) / align * align;
    if (aligned > start) munmap(raw, aligned - start);
    const uintptr_t end = start + span, used_end = aligned + size;
    if (end > used_end) munmap(reinterpret_cast<void*>(used_end), end - used_end);
#ifdef MADV_HUGEPAGE
    if (size >= kHuge) madvise(reinterpret_cast<void*>(aligned), size, MADV_HUGEPAGE);
#endif
    return reinterpret_cast<void*>(aligned);
  }
  c10::Allocator* base_;
  const c10::DeleterFnPtr base_raw_deleter_;
  const uint64_t limit_;
  std::mutex mu_;
  std::multimap<size_t, void*> free_;
  std::unordered_map<void*, size_t> live_;
  uint64_t in_use_ = 0, cached_ = 0, peak_ = 0, live_peak_ = 0, hits_ = 0, misses_ = 0;
};

std::atomic<BlockCache*> BlockCache::instance{nullptr};
std::mutex install_mu;

uint64_t env_u64(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  char* end = nullptr;
  const unsigned long long n = std::strtoull(v, &end, 10);
  return end != v && *end == '\0' ? n : fallback;
}

}  // namespace

bool install_block_cache() {
#if LOUPE_ASAN
  return false;
#else
  std::lock_guard<std::mutex> lock(install_mu);
  if (BlockCache::instance) return true;
  const char* off = std::getenv("LOUPE_CPU_CACHE");
  if (off && (!std::strcmp(off, "0") || !std::strcmp(off, "off"))) return false;
  const uint64_t avail = device_memory(torch::Device(torch::kCPU)).first;
  const uint64_t limit = env_u64("LOUPE_CPU_CACHE_LIMIT_MB", avail / 4 >> 20) << 20;
  c10::Allocator* base = c10::GetCPUAllocator();
  auto* cache = new BlockCache(base, limit);  // never freed: tensors keep its deleter
  BlockCache::instance = cache;
  c10::SetCPUAllocator(cache, /*priority=*/1);
  if (c10::GetCPUAllocator() != cache) {  // another allocator holds a higher priority: leave it
    BlockCache::instance = nullptr;
    delete cache;
    return false;
  }
  return true;
#endif
}

void release_block_cache() {
  if (auto* c = BlockCache::instance.load()) c->release();
}

CacheStats block_cache_stats() {
  auto* c = BlockCache::instance.load();
  return c ? c->stats() : CacheStats{};
}

void reset_block_cache_peak() {
  if (auto* c = BlockCache::instance.load()) c->reset_peak();
}

nlohmann::json to_json(const CacheStats& s) {
  return {{"installed", s.installed}, {"limit_bytes", s.limit_bytes}, {"in_use_bytes", s.in_use_bytes},
          {"cached_bytes", s.cached_bytes}, {"peak_bytes", s.peak_bytes}, {"hits", s.hits}, {"misses", s.misses}};
}

}  // namespace loupe::cpu
