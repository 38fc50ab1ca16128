// A cache for the CPU's large tensor blocks, what CUDA's caching allocator is to the GPU.
//
// Why: a diffusion model's activations on the CPU are blocks of 100-500 MB that live for one layer.
// glibc serves each from a fresh mmap and unmaps it on free, so every layer's output is faulted in
// page by page and zeroed by the kernel again: measured on SD 1.5's VAE decode at 512 px, a third
// of the time. The cache keeps freed blocks of 1 MiB and more (2 MiB aligned, transparent huge
// pages asked for) and hands them out again: to blocks of the same size class, or trimmed to a
// smaller block; small blocks go to libtorch's own allocator as before.
//
// Bounds: the cache never holds more than the program's own peak: before it maps a new block it
// gives back free blocks until the blocks in use plus the free ones stay within the highest
// in-use count since the last release() (SD 1.5's VAE decode at 512 px: peak RSS 1.49 GB, against
// 1.62 GB with libtorch's own allocator; bench/results/cpu-sd15-vae-memory.json). The cached (free)
// bytes also never exceed a limit (default: a quarter of the memory available when it is
// installed; LOUPE_CPU_CACHE_LIMIT_MB overrides), and the runtime gives everything back
// to the system after every job and every model load (release()), so memory held between jobs is
// what it was without the cache. The allocator is process-wide (libtorch has one CPU allocator):
// installed by the first runtime on the CPU, never removed (tensors hold its deleter). LOUPE_CPU_CACHE=0
// leaves libtorch's allocator alone; builds with AddressSanitizer never install it (ASan must see
// every block).
#pragma once
#include <cstdint>

#include <nlohmann/json.hpp>

namespace loupe::cpu {

struct CacheStats {
  bool installed = false;
  uint64_t limit_bytes = 0;      // cached (free) bytes kept at most
  uint64_t in_use_bytes = 0;     // blocks handed out now
  uint64_t cached_bytes = 0;     // free blocks kept now
  uint64_t peak_bytes = 0;       // highest in_use + cached since the last reset_peak()
  uint64_t hits = 0, misses = 0; // allocations served from the cache / from the system
};

// Installs the cache as libtorch's CPU allocator (once per process; later calls do nothing).
// Returns whether it is installed.
bool install_block_cache();
// Gives every cached block back to the system (blocks in use are untouched).
void release_block_cache();
CacheStats block_cache_stats();
void reset_block_cache_peak();
nlohmann::json to_json(const CacheStats& s);

}  // namespace loupe::cpu
