// config.json and friends: parsed with file-and-position errors, and typed getters whose errors
// name the file and the key.
#pragma once
#include <string>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/json_get.h"

namespace loupe::io {

// NotFound if missing; BadModel with the byte position if malformed or not an object.
nlohmann::json read_json_file(const std::string& path);

// The parse step and typed getters (core/json_get.h), under the names config readers use.
using settings::get_in;
using settings::parse_json;
using settings::get_or;

}  // namespace loupe::io
