// config.json and friends: parsed with file-and-position errors, and typed getters whose errors
// name the file and the key.
#pragma once
#include <string>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace loupe::io {

// NotFound if missing; BadModel with the byte position if malformed or not an object.
nlohmann::json read_json_file(const std::string& path);

// json[key] as T, or def when absent or null; BadModel naming file and key on a wrong type.
template <class T>
T get_or(const nlohmann::json& j, const std::string& key, const T& def, const std::string& file) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return def;
  try {
    return it->get<T>();
  } catch (const nlohmann::json::exception&) {
    LOUPE_THROW(BadModel, file << ": \"" << key << "\" has the wrong type (" << it->type_name() << ": "
                               << it->dump().substr(0, 80) << ")");
  }
}

}  // namespace loupe::io
