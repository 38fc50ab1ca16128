#include "core/catalog.h"

#include <algorithm>
#include <cctype>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/config.h"
#include "loupe_catalog_data.h"  // generated: kLoupeBuiltinCatalog

namespace loupe {

namespace {

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::vector<std::string> strings(const nlohmann::json& o, const char* key, const std::string& where) {
  std::vector<std::string> out;
  auto it = o.find(key);
  if (it == o.end() || it->is_null()) return out;
  if (!it->is_array()) LOUPE_THROW(BadModel, where << ": \"" << key << "\" is not a list of strings");
  for (const auto& s : *it) {
    if (!s.is_string()) LOUPE_THROW(BadModel, where << ": \"" << key << "\" holds a " << s.type_name() << ", not a string");
    out.push_back(s.get<std::string>());
  }
  return out;
}

std::string str(const nlohmann::json& o, const char* key, const std::string& where, bool required) {
  auto it = o.find(key);
  if (it == o.end() || it->is_null()) {
    if (required) LOUPE_THROW(BadModel, where << ": \"" << key << "\" is missing");
    return "";
  }
  if (!it->is_string()) LOUPE_THROW(BadModel, where << ": \"" << key << "\" is not a string");
  return it->get<std::string>();
}

bool is_hex64(const std::string& s) {
  return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char c) { return std::isxdigit(static_cast<unsigned char>(c)); });
}

}  // namespace

const Catalog& Catalog::builtin() {
  static const Catalog c = parse(kLoupeBuiltinCatalog, "the built-in catalog (resources/models/catalog.json)");
  return c;
}

Catalog Catalog::load(const std::string& path) { return from_json(io::read_json_file(path), path); }

Catalog Catalog::parse(const std::string& text, const std::string& where) {
  return from_json(io::parse_json(text, where), where);
}

Catalog Catalog::from_json(const nlohmann::json& j, const std::string& where) {
  if (!j.is_object() || !j.contains("families") || !j["families"].is_array())
    LOUPE_THROW(BadModel, where << ": no \"families\" list; hint: see resources/models/catalog.json for the format");
  Catalog c;
  for (const auto& fam : j["families"]) {
    if (!fam.is_object()) LOUPE_THROW(BadModel, where << ": an entry of \"families\" is not an object");
    const std::string fid = str(fam, "id", where + ": a family", true);
    const std::string fw = where + ": family '" + fid + "'";
    const auto tasks = strings(fam, "tasks", fw);
    const auto files = strings(fam, "files", fw);
    auto download = strings(fam, "download", fw);
    if (download.empty()) download = files;
    c.family_tasks_[fid] = tasks;
    if (!fam.contains("variants") || !fam["variants"].is_array()) LOUPE_THROW(BadModel, fw << ": no \"variants\" list");
    for (const auto& var : fam["variants"]) {
      if (!var.is_object()) LOUPE_THROW(BadModel, fw << ": a variant is not an object");
      CatalogVariant v;
      v.id = str(var, "id", fw + ": a variant", true);
      const std::string vw = where + ": variant '" + v.id + "'";
      v.name = str(var, "name", vw, false);
      v.repo = str(var, "repo", vw, true);
      v.folder = str(var, "folder", vw, false);
      if (v.folder.empty()) v.folder = v.repo.substr(v.repo.find('/') + 1);
      v.license = str(var, "license", vw, false);
      const std::string rev = str(var, "revision", vw, false);
      if (!rev.empty()) v.revision = rev;
      if (var.contains("size_bytes") && var["size_bytes"].is_number()) v.size_bytes = var["size_bytes"].get<uint64_t>();
      v.family = fid;
      v.family_name = str(fam, "name", fw, false);
      if (auto m = var.find("vram_bytes"); m != var.end() && !m->is_null()) {
        if (!m->is_object()) LOUPE_THROW(BadModel, vw << ": \"vram_bytes\" is not an object {precision: bytes}");
        for (auto it = m->begin(); it != m->end(); ++it) {
          if (!it->is_number_unsigned() && !(it->is_number() && it->get<double>() >= 0))
            LOUPE_THROW(BadModel, vw << ": vram_bytes of '" << it.key() << "' is not a number of bytes");
          v.vram_bytes[it.key()] = static_cast<uint64_t>(it->get<double>());
        }
      }
      v.tasks = tasks;
      v.files = var.contains("files") ? strings(var, "files", vw) : files;  // a variant may hold other files
      v.download = var.contains("download") ? strings(var, "download", vw) : download;
      if (auto s = var.find("sha256"); s != var.end() && !s->is_null()) {
        if (!s->is_object()) LOUPE_THROW(BadModel, vw << ": \"sha256\" is not an object {file: hex}");
        for (auto it = s->begin(); it != s->end(); ++it) {
          if (!it->is_string() || !is_hex64(it->get<std::string>()))
            LOUPE_THROW(BadModel, vw << ": sha256 of '" << it.key() << "' is not 64 hex digits");
          v.sha256[it.key()] = lower(it->get<std::string>());
        }
      }
      if (c.find(v.id)) LOUPE_THROW(BadModel, where << ": variant id '" << v.id << "' appears twice");
      c.variants_.push_back(std::move(v));
    }
  }
  return c;
}

std::vector<std::string> Catalog::family_tasks(const std::string& family) const {
  auto it = family_tasks_.find(family);
  return it == family_tasks_.end() ? std::vector<std::string>{} : it->second;
}

const CatalogVariant* Catalog::find(const std::string& id) const {
  for (const auto& v : variants_)
    if (v.id == id) return &v;
  return nullptr;
}

const CatalogVariant* Catalog::match_repo(const std::string& repo) const {
  const std::string r = lower(repo);
  for (const auto& v : variants_)
    if (lower(v.repo) == r) return &v;
  return nullptr;
}

const CatalogVariant* Catalog::match_folder(const std::string& folder_name) const {
  const std::string f = lower(folder_name);
  if (f.empty()) return nullptr;
  for (const auto& v : variants_)
    if (lower(v.folder) == f || lower(v.repo.substr(v.repo.find('/') + 1)) == f) return &v;
  return nullptr;
}

}  // namespace loupe
