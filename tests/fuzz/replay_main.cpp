// Replays files through the fuzz targets without libFuzzer, in the ordinary build: every file under
// each folder given, in name order, through one target's entry point (each fuzz_<target>.cpp is
// compiled here with LLVMFuzzerTestOneInput renamed loupe_fuzz_<target>). The CTest tests
// fuzz.<target>.replay (tests/fuzz/CMakeLists.txt) run the committed seed corpus and the
// regression inputs of crashes found and fixed:  loupe_fuzz_replay <target> <folder>...
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

using Entry = int (*)(const uint8_t*, size_t);
struct Target {
  const char* name;
  Entry run;
};

#ifdef LOUPE_FUZZ_REPLAY_ABI  // the C ABI target (linked with libloupe only)
extern "C" int loupe_fuzz_request(const uint8_t*, size_t);
static const Target kTargets[] = {{"request", loupe_fuzz_request}};
#else
#define LOUPE_FUZZ_TARGET(t) extern "C" int loupe_fuzz_##t(const uint8_t*, size_t);
LOUPE_FUZZ_TARGET(safetensors)
LOUPE_FUZZ_TARGET(torch_zip)
LOUPE_FUZZ_TARGET(npz)
LOUPE_FUZZ_TARGET(bpe_tokenizer)
LOUPE_FUZZ_TARGET(sentencepiece_json)
LOUPE_FUZZ_TARGET(prompt)
LOUPE_FUZZ_TARGET(configs)
static const Target kTargets[] = {{"safetensors", loupe_fuzz_safetensors}, {"torch_zip", loupe_fuzz_torch_zip},
                                  {"npz", loupe_fuzz_npz},                 {"bpe_tokenizer", loupe_fuzz_bpe_tokenizer},
                                  {"sentencepiece_json", loupe_fuzz_sentencepiece_json},
                                  {"prompt", loupe_fuzz_prompt},           {"configs", loupe_fuzz_configs}};
#endif

int main(int argc, char** argv) {
  namespace fs = std::filesystem;
  Entry run = nullptr;
  for (const auto& t : kTargets)
    if (argc > 1 && std::strcmp(argv[1], t.name) == 0) run = t.run;
  if (!run) {
    std::fprintf(stderr, "usage: %s <target> <folder>...; targets:", argv[0]);
    for (const auto& t : kTargets) std::fprintf(stderr, " %s", t.name);
    std::fprintf(stderr, "\n");
    return 2;
  }
  size_t n = 0;
  for (int i = 2; i < argc; ++i) {
    if (!fs::exists(argv[i])) continue;  // a target may have no regression inputs yet
    std::vector<fs::path> files;
    for (const auto& e : fs::recursive_directory_iterator(argv[i]))
      if (e.is_regular_file()) files.push_back(e.path());
    std::sort(files.begin(), files.end());
    for (const auto& f : files) {
      std::ifstream in(f, std::ios::binary);
      std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      std::printf("%s\n", f.string().c_str());
      std::fflush(stdout);
      run(bytes.data(), bytes.size());
      ++n;
    }
  }
  std::printf("%zu inputs replayed through %s\n", n, argv[1]);
  return n > 0 ? 0 : 1;
}
