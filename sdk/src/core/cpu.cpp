#include "core/cpu.h"

#include <dlfcn.h>
#include <sched.h>

#include <thread>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <sstream>

#include <ATen/Parallel.h>

namespace fs = std::filesystem;

namespace loupe::cpu {

namespace {

std::string read_first_line(const fs::path& p) {
  std::ifstream f(p);
  std::string s;
  std::getline(f, s);
  return s;
}

Info detect() {
  Info in;
  std::set<int> allowed;
#ifdef __linux__
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0)
    for (int c = 0; c < CPU_SETSIZE; ++c)
      if (CPU_ISSET(c, &set)) allowed.insert(c);
#endif
  std::ifstream f("/proc/cpuinfo");
  std::string line, flags;
  while (std::getline(f, line)) {
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string key = line.substr(0, colon);
    key.erase(key.find_last_not_of(" \t") + 1);
    const std::string value = colon + 2 <= line.size() ? line.substr(colon + 2) : "";
    if (key == "model name" && in.model.empty()) in.model = value;
    if (key == "flags" && flags.empty()) flags = value;
  }
  static const char* wanted[] = {"sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
                                 "amx_tile", "amx_bf16", "amx_int8"};
  std::istringstream fs_(flags);
  std::set<std::string> have;
  for (std::string w; fs_ >> w;) have.insert(w);
  for (const char* w : wanted)
    if (have.count(w)) in.isa.push_back(w);

  in.logical = allowed.empty() ? std::max(1u, std::thread::hardware_concurrency()) : static_cast<int>(allowed.size());
  std::set<std::pair<std::string, std::string>> cores;
  for (int c : allowed) {
    const fs::path topo = fs::path("/sys/devices/system/cpu") / ("cpu" + std::to_string(c)) / "topology";
    const std::string pkg = read_first_line(topo / "physical_package_id"), core = read_first_line(topo / "core_id");
    if (core.empty()) continue;
    cores.insert({pkg, core});
  }
  in.physical = cores.empty() ? in.logical : static_cast<int>(cores.size());
  return in;
}

// The handle of an already loaded library, or nullptr (never loads one).
void* loaded(const char* soname) { return dlopen(soname, RTLD_LAZY | RTLD_NOLOAD); }

void* find_symbol(const char* name) {
  for (const char* lib : {"libopenblas.so.0", "libblas.so.3", "libmkl_rt.so.2", "libmkl_rt.so", "libblis.so.4"}) {
    if (void* h = loaded(lib)) {
      void* s = dlsym(h, name);
      dlclose(h);
      if (s) return s;
    }
  }
  return dlsym(RTLD_DEFAULT, name);
}

}  // namespace

bool Info::has(const std::string& flag) const { return std::find(isa.begin(), isa.end(), flag) != isa.end(); }

const Info& info() {
  static const Info in = detect();
  return in;
}

Blas blas() {
  Blas b;
  void* sgemm = find_symbol("sgemm_");
  if (!sgemm) {
    b.kind = "unknown";
    return b;
  }
  Dl_info di{};
  if (dladdr(sgemm, &di) && di.dli_fname) {
    std::error_code ec;
    const auto real = fs::canonical(di.dli_fname, ec);
    b.library = ec ? di.dli_fname : real.string();
  }
  using GetConfig = char* (*)();
  if (auto get_config = reinterpret_cast<GetConfig>(find_symbol("openblas_get_config"))) {
    b.kind = "openblas";
    if (const char* c = get_config()) b.version = c;
    if (auto get_core = reinterpret_cast<GetConfig>(find_symbol("openblas_get_corename")))
      if (const char* c = get_core()) b.core = c;
  } else if (find_symbol("mkl_get_max_threads")) {
    b.kind = "mkl";
  } else if (find_symbol("bli_info_get_version_str")) {
    b.kind = "blis";
  } else if (b.library.find("openblas") != std::string::npos) {
    b.kind = "openblas";
  } else if (b.library.find("/blas/libblas") != std::string::npos || b.library.find("libblas.so") != std::string::npos) {
    b.kind = "reference";  // netlib's unoptimised Fortran BLAS (Debian's libblas3)
  } else {
    b.kind = "unknown";
  }
  return b;
}

std::string better_openblas_core(const std::string& core, const Info& in) {
  // OpenBLAS picks its kernels from the processor's model; on processors it does not know (new ones,
  // virtual machines) it falls back to generic SSE kernels, several times slower, and releases
  // before 0.3.22 (Debian 12's 0.3.21) run AMD's AVX-512 processors (Zen 4) with their AVX2 "Zen"
  // kernels: measured on an EPYC, the Florence-2 reference ran 1.4x faster with SkylakeX's.
  static const char* generic[] = {"Prescott", "Core2", "Penryn", "Dunnington", "Nehalem", "Atom", "Katmai",
                                  "Coppermine", "Northwood", "Banias"};
  static const char* avx2_only[] = {"Haswell", "Zen", "Sandybridge", "Excavator", "Steamroller", "Piledriver", "Bulldozer"};
  const bool is_generic = std::find(std::begin(generic), std::end(generic), core) != std::end(generic);
  const bool is_avx2 = std::find(std::begin(avx2_only), std::end(avx2_only), core) != std::end(avx2_only);
  if (in.has("avx512f") && in.has("avx512bw") && in.has("avx512vl") && (is_generic || is_avx2)) return "SkylakeX";
  if (in.has("avx2") && in.has("fma") && is_generic) return "Haswell";
  return "";
}

int resolve_threads(int requested) {
  if (requested > 0) return requested;
  if (const char* env = std::getenv("LOUPE_NUM_THREADS")) {
    char* end = nullptr;
    const long n = std::strtol(env, &end, 10);
    if (end != env && *end == '\0' && n > 0 && n <= 4096) return static_cast<int>(n);
  }
  return std::max(1, info().physical);
}

void apply_threads(int threads) {
  if (threads < 1) return;
  if (at::get_num_threads() != threads) at::set_num_threads(threads);
  using SetThreads = void (*)(int);
  if (auto set = reinterpret_cast<SetThreads>(find_symbol("openblas_set_num_threads"))) set(threads);
}

int current_threads() { return at::get_num_threads(); }

int parallel_threads() {
  const int n = at::get_num_threads();
  std::vector<std::atomic<bool>> seen(static_cast<size_t>(std::max(n, 1)));
  at::parallel_for(0, 64 * n, 1, [&](int64_t, int64_t) {
    const int t = at::get_thread_num();
    if (t >= 0 && t < n) seen[static_cast<size_t>(t)] = true;
  });
  return static_cast<int>(std::count_if(seen.begin(), seen.end(), [](const auto& b) { return b.load(); }));
}

nlohmann::json to_json(int threads) {
  const Info& in = info();
  const Blas b = blas();
  return {{"model", in.model},
          {"logical_cores", in.logical},
          {"physical_cores", in.physical},
          {"isa", in.isa},
          {"fast_bf16", in.fast_bf16()},
          {"threads", threads},
          {"parallel_threads", parallel_threads()},
          {"blas", {{"kind", b.kind}, {"library", b.library}, {"version", b.version}, {"core", b.core}}}};
}

nlohmann::json problems(int threads) {
  auto out = nlohmann::json::array();
  const Blas b = blas();
  if (b.kind == "reference")
    out.push_back({{"id", "reference_blas"},
                   {"severity", "warning"},
                   {"message", "libtorch uses the unoptimised reference BLAS (" + b.library +
                                   "): matrix products on the CPU run about 15x slower than they could"},
                   {"remedy", "install an optimised BLAS: sudo apt-get install libopenblas0-pthread (it becomes the "
                              "libblas.so.3 alternative; check with update-alternatives --display "
                              "libblas.so.3-x86_64-linux-gnu)"}});
  if (const std::string better = b.kind == "openblas" ? better_openblas_core(b.core, info()) : ""; !better.empty())
    out.push_back({{"id", "blas_generic_kernels"},
                   {"severity", "warning"},
                   {"message", "OpenBLAS did not recognise this processor and uses its " + b.core +
                                   " kernels, although the processor has " +
                                   (better == "SkylakeX" ? "AVX-512" : "AVX2") +
                                   " (Loupe's own large products go to oneDNN and are not affected; token-by-token "
                                   "decoding is)"},
                   {"remedy", "start the program with OPENBLAS_CORETYPE=" + better + " in its environment"}});
  if (const int p = parallel_threads(); threads > 1 && p < std::min(threads, at::get_num_threads()))
    out.push_back({{"id", "serial_parallel_loops"},
                   {"severity", "warning"},
                   {"message", "Loupe's own parallel loops (attention, decoding products) run on " + std::to_string(p) +
                                   " thread(s) of " + std::to_string(threads) +
                                   ": the library was compiled without OpenMP, which libtorch's parallel_for needs"},
                   {"remedy", "rebuild Loupe with OpenMP (CMake finds it with the compiler's -fopenmp; Debian: libgomp "
                              "comes with gcc, libomp-dev with clang)"}});
  if (threads == 1 && info().logical > 1)
    out.push_back({{"id", "single_thread"},
                   {"severity", "warning"},
                   {"message", "the CPU runs one thread although " + std::to_string(info().logical) +
                                   " cores are available"},
                   {"remedy", "unset LOUPE_NUM_THREADS (or set it to the number of cores), or set the runtime's "
                              "num_threads option to 0 (all physical cores)"}});
  return out;
}

}  // namespace loupe::cpu
