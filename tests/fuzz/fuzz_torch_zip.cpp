// torch.save archives (io/torch_zip over io/zip): the zip directory, entries, and the pickle
// machine reading data.pkl (state dicts only; any other global is refused).
#include "fuzz_util.h"
#include "io/torch_zip.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = loupe::fuzz::write_file("pytorch_model.bin", data, size);
  loupe::fuzz::expect_only_loupe_errors("torch_zip", [&] {
    for (auto& [name, t] : loupe::io::read_torch_zip(path)) (void)t.sum();
  });
  return 0;
}
