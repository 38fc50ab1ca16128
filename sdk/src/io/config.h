// config.json and friends: parsed with file-and-position errors, and typed getters whose errors
// name the file and the key.
#pragma once
#include <string>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/json_get.h"

namespace loupe::io {

// JSON text from `where` (a file's path, or what names the text in errors): BadModel naming it, and
// the byte position where the parser gives one, for anything the parser refuses (malformed text,
// a number too large for a double, ...).
nlohmann::json parse_json(const std::string& text, const std::string& where);

// NotFound if missing; BadModel with the byte position if malformed or not an object.
nlohmann::json read_json_file(const std::string& path);

// The typed getters (core/json_get.h), under the names config readers use.
using settings::get_in;
using settings::get_or;

}  // namespace loupe::io
