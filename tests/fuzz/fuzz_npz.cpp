// NumPy files (io/npz over io/zip): the first byte picks a lone .npy image (parsed in memory) or
// an .npz archive (read from a file).
#include "fuzz_util.h"
#include "io/npz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  if (data[0] & 1) {
    loupe::fuzz::expect_only_loupe_errors("npy", [&] { (void)loupe::io::parse_npy(data + 1, size - 1, "input.npy").sum(); });
  } else {
    const auto path = loupe::fuzz::write_file("input.npz", data + 1, size - 1);
    loupe::fuzz::expect_only_loupe_errors("npz", [&] {
      for (auto& [name, t] : loupe::io::read_npz(path)) (void)t.sum();
    });
  }
  return 0;
}
