#include "io/hf_cache.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace fs = std::filesystem;

namespace loupe::io {

namespace {

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? std::string(v) : std::string();
}

std::string home() { return env("HOME"); }

}  // namespace

std::string hf_hub_cache_dir() {
  for (const char* v : {"HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"})
    if (!env(v).empty()) return env(v);
  if (!env("HF_HOME").empty()) return (fs::path(env("HF_HOME")) / "hub").string();
  if (!env("XDG_CACHE_HOME").empty()) return (fs::path(env("XDG_CACHE_HOME")) / "huggingface" / "hub").string();
  if (home().empty()) return "";
  return (fs::path(home()) / ".cache" / "huggingface" / "hub").string();
}

std::vector<std::string> hf_cached_snapshots(const std::string& repo_id, const std::string& cache_dir) {
  std::vector<std::string> out;
  if (cache_dir.empty()) return out;
  std::string name = "models--" + repo_id;
  for (size_t p = 0; (p = name.find('/', p)) != std::string::npos; p += 2) name.replace(p, 1, "--");
  const fs::path repo = fs::path(cache_dir) / name;
  std::error_code ec;
  if (!fs::is_directory(repo / "snapshots", ec)) return out;
  std::string main_rev;
  if (std::ifstream ref(repo / "refs" / "main"); ref) std::getline(ref, main_rev);
  std::vector<std::pair<fs::file_time_type, std::string>> others;
  for (const auto& e : fs::directory_iterator(repo / "snapshots", ec)) {
    if (!e.is_directory(ec)) continue;
    if (!main_rev.empty() && e.path().filename() == main_rev) out.insert(out.begin(), e.path().string());
    else others.emplace_back(fs::last_write_time(e.path(), ec), e.path().string());
  }
  std::sort(others.begin(), others.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  for (auto& o : others) out.push_back(std::move(o.second));
  return out;
}

std::vector<std::string> hf_all_cached_snapshots(const std::string& cache_dir) {
  std::vector<std::string> out;
  std::error_code ec;
  if (cache_dir.empty() || !fs::is_directory(cache_dir, ec)) return out;
  std::vector<std::string> repos;
  for (const auto& e : fs::directory_iterator(cache_dir, ec)) {
    const std::string n = e.path().filename().string();
    if (n.rfind("models--", 0) != 0 || !e.is_directory(ec)) continue;
    std::string id = n.substr(8);
    const size_t sep = id.find("--");
    if (sep != std::string::npos) id.replace(sep, 2, "/");
    repos.push_back(id);
  }
  std::sort(repos.begin(), repos.end());
  for (const auto& r : repos)
    for (auto& s : hf_cached_snapshots(r, cache_dir)) out.push_back(std::move(s));
  return out;
}

std::string loupe_data_dir() {
  if (!env("XDG_DATA_HOME").empty()) return (fs::path(env("XDG_DATA_HOME")) / "loupe").string();
  if (home().empty()) return "";
  return (fs::path(home()) / ".local" / "share" / "loupe").string();
}

}  // namespace loupe::io
