// The safetensors reader (io/safetensors): header length, JSON header, dtypes, shapes and data
// offsets, then every tensor loaded (small files only: the data lies in the input).
#include "fuzz_util.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = loupe::fuzz::write_file("model.safetensors", data, size);
  loupe::fuzz::expect_only_loupe_errors("safetensors", [&] {
    loupe::io::SafetensorsFile f(path);
    for (const auto& name : f.names()) {
      (void)f.info(name);
      (void)f.load(name);
      (void)f.load(name, torch::kCPU, torch::kFloat32);
    }
  });
  return 0;
}
