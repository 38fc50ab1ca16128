// The JSON parse step and typed getters for JSON settings (config.json and friends, read by io/;
// tokenizer files, read by text/; decoder configs handed to nn/): errors name the file and the
// key. In core/ so that every layer uses the same ones.
#pragma once
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace loupe::settings {

// JSON text from `where` (a file's path, or what names the text in errors): BadModel naming it, and
// the byte position where the parser gives one, for anything the parser refuses (malformed text,
// a number too large for a double, ...).
inline nlohmann::json parse_json(const std::string& text, const std::string& where) {
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    LOUPE_THROW(BadModel, where << ": not valid JSON at byte " << e.byte << " (" << e.what() << ")");
  } catch (const nlohmann::json::exception& e) {  // thrown outside parse_error: e.g. a number too large for a double
    LOUPE_THROW(BadModel, where << ": not valid JSON (" << e.what() << ")");
  }
}

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

// get_or for a number (or a list of numbers) that must lie in [lo, hi]: BadModel naming the file,
// the key (with the index for a list), the value and the range otherwise. Config readers read every
// number through this, so that a damaged or hand-edited config ("encoder_layers": -5) is refused
// when it is read, not when a tensor of a negative size is made.
template <class T>
T get_in(const nlohmann::json& j, const std::string& key, const T& def, const std::string& file, double lo, double hi) {
  auto check = [&](double x, const std::string& name) {
    if (!(x >= lo && x <= hi))  // also refuses NaN
      LOUPE_THROW(BadModel, file << ": \"" << name << "\" is " << x << ", outside the range a model can have ("
                                 << lo << " to " << hi << "); hint: the config is damaged or was edited by hand");
  };
  // Checked as read (a double holds every value a config writes) before it is narrowed to T, so
  // that 4294967297 is refused, not taken as 1.
  if constexpr (std::is_arithmetic_v<T>) {
    const double x = get_or<double>(j, key, static_cast<double>(def), file);
    check(x, key);
    if (std::is_integral_v<T> && x != static_cast<double>(static_cast<int64_t>(x)))
      LOUPE_THROW(BadModel, file << ": \"" << key << "\" is " << x << ", not a whole number");
    return static_cast<T>(x);
  } else {
    using E = typename T::value_type;
    std::vector<double> d;
    for (const auto& e : def) d.push_back(static_cast<double>(e));
    d = get_or<std::vector<double>>(j, key, d, file);
    T out;
    for (size_t i = 0; i < d.size(); ++i) {
      check(d[i], key + "[" + std::to_string(i) + "]");
      out.push_back(static_cast<E>(d[i]));
    }
    return out;
  }
}

}  // namespace loupe::settings
