// The model catalog (resources/models/catalog.json): which models Loupe knows, where to get them
// (a Hugging Face repo), what a folder of each must hold and what to download. The catalog is built
// into the library (the same file, embedded at build time), so discovery and downloads need no
// path; a host may read another catalog file instead (tests, an updated catalog).
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace loupe {

struct CatalogVariant {
  std::string id, name, family, family_name, repo, folder, license;
  std::string revision = "main";
  uint64_t size_bytes = 0;
  std::vector<std::string> tasks;     // the family's tasks
  std::vector<std::string> files;     // what a folder must hold; "a|b" = either
  // What a download fetches, in order: "a|b" = the first of them the repo has, "?x" = x if the repo
  // has it. A fetched *.safetensors.index.json brings its shards.
  std::vector<std::string> download;
  std::map<std::string, std::string> sha256;  // file -> lowercase hex, where the catalog knows it
  std::map<std::string, uint64_t> vram_bytes; // precision ("fp32", "fp16", "bf16") -> memory to run it
};

class Catalog {
 public:
  // The catalog built into the library.
  static const Catalog& builtin();
  // Reads a catalog file; NotFound / BadModel errors name the file and the key.
  static Catalog load(const std::string& path);
  static Catalog parse(const std::string& text, const std::string& where);

  const std::vector<CatalogVariant>& variants() const { return variants_; }
  // The tasks of a family ("florence2", "stable-diffusion"); empty if the catalog lacks it.
  std::vector<std::string> family_tasks(const std::string& family) const;
  const CatalogVariant* find(const std::string& id) const;
  // Matching found models to entries (case-insensitive): a repo id "org/name", or a folder name
  // equal to an entry's folder or to the name part of its repo. nullptr when none.
  const CatalogVariant* match_repo(const std::string& repo) const;
  const CatalogVariant* match_folder(const std::string& folder_name) const;

 private:
  static Catalog from_json(const nlohmann::json& j, const std::string& where);
  std::vector<CatalogVariant> variants_;
  std::map<std::string, std::vector<std::string>> family_tasks_;
};

}  // namespace loupe
