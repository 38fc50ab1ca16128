#include "core/tasks.h"

#include <cmath>
#include <limits>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/types.h"

namespace loupe::tasks {

const Param* Task::find(const std::string& p) const {
  for (const auto& x : params)
    if (x.name == p) return &x;
  return nullptr;
}

Param& Task::param(const std::string& p) {
  for (auto& x : params)
    if (x.name == p) return x;
  LOUPE_THROW(Internal, "task '" << name << "' has no parameter '" << p << "' in the task table");
}

const Task* find(const std::string& name) {
  for (const auto& t : table())
    if (t.name == name) return &t;
  return nullptr;
}

Task get(const std::string& name) {
  const Task* t = find(name);
  if (!t) LOUPE_THROW(Internal, "task '" << name << "' is not in the task table");
  return *t;
}

std::string names() {
  std::string s;
  for (const auto& t : table()) s += (s.empty() ? "" : ", ") + t.name;
  return s;
}

const char* type_name(ParamType t) {
  switch (t) {
    case ParamType::Int: return "int";
    case ParamType::Float: return "float";
    case ParamType::String: return "string";
    case ParamType::Bool: return "bool";
    case ParamType::Choice: return "choice";
  }
  return "?";
}

namespace {

std::string fmt(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

std::string param_list(const Task& t) {
  std::string s;
  if (!t.text_key.empty()) s = t.text_key;
  for (const auto& p : t.params) s += (s.empty() ? "" : ", ") + p.name;
  return s.empty() ? "none" : s;
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

// "text" and "prompt" both name a task's text input.
bool is_text_alias(const std::string& key) { return key == "text" || key == "prompt"; }

}  // namespace

void resolve(const Task& t, Request& r) {
  const std::string where = "task '" + t.name + "'";
  // The text input, under either name.
  if (!t.text_key.empty()) {
    const std::string other = t.text_key == "text" ? "prompt" : "text";
    if (r.strings.count(other)) {
      if (r.strings.count(t.text_key) && r.strings[t.text_key] != r.strings[other])
        LOUPE_THROW(InvalidArgument, where << ": both '" << t.text_key << "' and '" << other
                                           << "' are set, to different texts; set only '" << t.text_key << "'");
      r.strings[t.text_key] = r.strings[other];
      r.strings.erase(other);
    }
  }
  auto known = [&](const std::string& key) { return (!t.text_key.empty() && key == t.text_key) || t.find(key); };
  auto unknown = [&](const std::string& key) {
    std::ostringstream os;
    os << where << " has no parameter '" << key << "'";
    if (is_text_alias(key) && t.text_key.empty()) os << " (it takes no text)";
    os << "; its parameters: " << param_list(t);
    throw Error(Status::InvalidArgument, os.str());
  };
  for (const auto& [k, v] : r.strings) {
    if (!known(k)) unknown(k);
    const Param* p = t.find(k);
    if (!p) continue;  // the text input
    if (p->type != ParamType::String && p->type != ParamType::Choice)
      LOUPE_THROW(InvalidArgument, where << ": parameter '" << k << "' is " << (p->type == ParamType::Float ? "a number" : "an integer")
                                         << ", not the string '" << v << "' (C: loupe_request_set_"
                                         << (p->type == ParamType::Float ? "float" : "int") << ")");
  }
  for (const auto& [k, v] : r.ints)
    if (!known(k) || k == t.text_key) unknown(k);
  for (const auto& [k, v] : r.floats)
    if (!known(k) || k == t.text_key) unknown(k);

  for (const auto& p : t.params) {
    const std::string key = "parameter '" + p.name + "'";
    switch (p.type) {
      case ParamType::Int:
      case ParamType::Bool: {
        int64_t v = static_cast<int64_t>(p.def);
        if (auto f = r.floats.find(p.name); f != r.floats.end()) {
          if (f->second != std::floor(f->second))
            LOUPE_THROW(InvalidArgument, where << ": " << key << " = " << fmt(f->second) << " must be a whole number");
          v = static_cast<int64_t>(f->second);
          r.floats.erase(f);
        } else if (auto i = r.ints.find(p.name); i != r.ints.end()) {
          v = i->second;
        }
        const double lo = p.type == ParamType::Bool ? 0 : p.min, hi = p.type == ParamType::Bool ? 1 : p.max;
        if (static_cast<double>(v) < lo || static_cast<double>(v) > hi) {
          if (p.type == ParamType::Bool)
            LOUPE_THROW(InvalidArgument, where << ": " << key << " = " << v << " is a switch: 0 (off) or 1 (on)");
          LOUPE_THROW(InvalidArgument, where << ": " << key << " = " << v << " is out of range [" << fmt(lo) << ", "
                                             << fmt(hi) << "]" << (p.unit.empty() ? "" : " " + p.unit));
        }
        r.ints[p.name] = v;
        break;
      }
      case ParamType::Float: {
        double v = p.def;
        if (auto i = r.ints.find(p.name); i != r.ints.end()) {
          v = static_cast<double>(i->second);
          r.ints.erase(i);
        } else if (auto f = r.floats.find(p.name); f != r.floats.end()) {
          v = f->second;
        }
        if (!(v >= p.min && v <= p.max))
          LOUPE_THROW(InvalidArgument, where << ": " << key << " = " << fmt(v) << " is out of range [" << fmt(p.min) << ", "
                                             << fmt(p.max) << "]" << (p.unit.empty() ? "" : " " + p.unit));
        r.floats[p.name] = v;
        break;
      }
      case ParamType::String:
        if (!r.strings.count(p.name)) r.strings[p.name] = p.def_string;
        break;
      case ParamType::Choice: {
        auto it = r.strings.find(p.name);
        if (it == r.strings.end()) {
          r.strings[p.name] = p.def_string;
          break;
        }
        bool ok = false;
        for (const auto& c : p.choices) ok = ok || c == it->second;
        if (!ok)
          LOUPE_THROW(InvalidArgument, where << ": " << key << " = '" << it->second << "' is not one of: " << join(p.choices));
        break;
      }
    }
  }

  // Required inputs.
  if ((t.required & kImage) && r.images.empty())
    LOUPE_THROW(InvalidArgument, where << " needs an input image: set one with loupe_request_set_image");
  if ((t.required & kMask) && !r.mask)
    LOUPE_THROW(InvalidArgument, where << " needs a mask (GRAY8, 255 = repaint): set one with loupe_request_set_mask");
  if ((t.required & kRegion) && !r.region)
    LOUPE_THROW(InvalidArgument, where << " needs a region: set one with loupe_request_set_region");
  if ((t.required & (kText | kQuestion)) && !t.text_key.empty()) {
    auto it = r.strings.find(t.text_key);
    if (it == r.strings.end() || it->second.find_first_not_of(" \t\r\n") == std::string::npos)
      LOUPE_THROW(InvalidArgument, where << " needs " << (t.text_label.empty() ? "a text" : "a " + t.text_label)
                                         << ": set it with loupe_request_set_string(request, \"" << t.text_key << "\", ...)");
  }
  if (!t.text_key.empty() && !r.strings.count(t.text_key)) r.strings[t.text_key] = "";
  if (!(t.inputs & kMask) && r.mask)
    LOUPE_THROW(InvalidArgument, where << " takes no mask; inpainting is the task 'inpaint'");
  if (!(t.inputs & kRegion) && r.region)
    LOUPE_THROW(InvalidArgument, where << " takes no region");
}

namespace {
// A whole number of the table as int64 (the table keeps doubles; int64's ends saturate).
int64_t whole(double v) {
  if (v >= 9.2e18) return std::numeric_limits<int64_t>::max();
  if (v <= -9.2e18) return std::numeric_limits<int64_t>::min();
  return static_cast<int64_t>(v);
}
}  // namespace

nlohmann::json to_json(const Task& t) {
  using nlohmann::json;
  auto bits = [](uint32_t b, std::initializer_list<std::pair<uint32_t, const char*>> names) {
    json a = json::array();
    for (const auto& [bit, n] : names)
      if (b & bit) a.push_back(n);
    return a;
  };
  const std::initializer_list<std::pair<uint32_t, const char*>> in_names = {
      {kImage, "image"}, {kMask, "mask"}, {kText, "text"}, {kRegion, "region"}, {kQuestion, "question"}};
  json j = {{"name", t.name},
            {"label", t.label},
            {"help", t.help},
            {"group", t.group},
            {"runtime", t.runtime},
            {"inputs", bits(t.inputs, in_names)},
            {"required", bits(t.required, in_names)},
            {"outputs", bits(t.outputs, {{kTextOut, "text"},
                                         {kBoxes, "boxes"},
                                         {kPolygons, "polygons"},
                                         {kMasks, "masks"},
                                         {kImages, "images"},
                                         {kNumbers, "numbers"}})}};
  if (!t.text_key.empty()) j["text"] = {{"key", t.text_key}, {"label", t.text_label}, {"help", t.text_help}};
  json ps = json::array();
  for (const auto& p : t.params) {
    json jp = {{"name", p.name}, {"type", type_name(p.type)}, {"label", p.label}, {"help", p.help},
               {"unit", p.unit}, {"advanced", p.advanced}};
    switch (p.type) {
      case ParamType::Int: jp["default"] = whole(p.def); jp["min"] = whole(p.min); jp["max"] = whole(p.max);
        jp["step"] = whole(p.step);
        if (!p.choices.empty()) jp["choices"] = p.choices;  // suggestions (presets)
        break;
      case ParamType::Bool: jp["default"] = p.def != 0; break;
      case ParamType::Float: jp["default"] = p.def; jp["min"] = p.min; jp["max"] = p.max; jp["step"] = p.step; break;
      case ParamType::String: jp["default"] = p.def_string; break;
      case ParamType::Choice: jp["default"] = p.def_string; jp["choices"] = p.choices; break;
    }
    ps.push_back(std::move(jp));
  }
  j["params"] = std::move(ps);
  return j;
}

}  // namespace loupe::tasks
