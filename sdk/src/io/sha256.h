// SHA-256 (FIPS 180-4), streamed: verifies downloads against the catalog or the hub's LFS sha256.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace loupe::io {

class Sha256 {
 public:
  Sha256() { reset(); }
  void reset();
  void update(const void* data, size_t n);
  // Lowercase hex of the digest; the object must be reset() before it is used again.
  std::string hex();

 private:
  void block(const uint8_t* p);
  uint32_t h_[8];
  uint8_t buf_[64];
  size_t fill_ = 0;
  uint64_t bytes_ = 0;
};

// The sha256 of a whole file (NotFound if it cannot be read).
std::string sha256_file(const std::string& path);

}  // namespace loupe::io
