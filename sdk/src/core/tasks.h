// What a task is: its inputs, its parameters (type, default, range or choices, unit, help) and
// its outputs. The one table of tasks is families/task_table.cpp; a session offers a subset of it,
// with defaults a model may adjust (e.g. its native image size). The runtime resolves every request
// against the session's description before it runs (defaults filled in, types, ranges and choices
// checked, unknown parameters refused), so a model reads parameters that are always there.
// No torch here: the ABI layer includes this.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace loupe {

struct Request;

namespace tasks {

// Values match loupe_param_type, loupe_input_* and loupe_output_* in loupe.h.
enum class ParamType : int { Int = 1, Float = 2, String = 3, Bool = 4, Choice = 5 };

enum Input : uint32_t { kImage = 1u, kMask = 2u, kText = 4u, kRegion = 8u, kQuestion = 16u };
enum Output : uint32_t { kTextOut = 1u, kBoxes = 2u, kPolygons = 4u, kMasks = 8u, kImages = 16u, kNumbers = 32u };

struct Param {
  std::string name;   // the request key, e.g. "steps"
  ParamType type = ParamType::Int;
  std::string label;  // for a form: "Steps"
  std::string help;   // one line
  std::string unit;   // "px", "steps", ... ("" = none)
  double def = 0;     // Int, Float, Bool (0/1)
  std::string def_string;  // String, Choice
  double min = 0, max = 0, step = 0;  // Int, Float; step 0 = any
  // Choice: the values allowed. Int: suggestions a host may offer as presets (any value in range is
  // accepted); on "width" of an image-generating task they are sizes "WIDTHxHEIGHT" that set
  // "height" too (SDXL's trained aspect ratios).
  std::vector<std::string> choices;
  bool advanced = false;              // hosts may fold it away
};

struct Task {
  std::string name;   // "caption", "txt2img", ...
  std::string label;  // "Caption"
  std::string help;   // one line
  std::string group;  // "describe", "find", "read", "generate", "edit", "runtime"
  uint32_t inputs = 0;    // Input bits the task uses
  uint32_t required = 0;  // Input bits it cannot run without
  uint32_t outputs = 0;   // Output bits
  // The text input (Input::kText or kQuestion): the request key and its label. "" = none.
  std::string text_key, text_label, text_help;
  bool runtime = false;   // run with loupe_runtime_submit, not by a session
  std::vector<Param> params;

  const Param* find(const std::string& param) const;
  Param& param(const std::string& name);  // InternalError if absent (a family adjusting its table)
};

// The one table (families/task_table.cpp): every task the library knows, with generic defaults.
const std::vector<Task>& table();
// The table's entry for a task, or nullptr.
const Task* find(const std::string& name);
// A copy of the table's entry (Internal error if unknown), for a model to adjust its defaults.
Task get(const std::string& name);
// Comma-separated names of all tasks, for error messages.
std::string names();

// Checks a request against the description of the task as the session offers it, and fills in
// every parameter's default. Errors (InvalidArgument) name the task, the key, the value and what is
// accepted: unknown parameter (with the task's parameters), wrong type, out of range, not one of
// the choices, a required input missing.
void resolve(const Task& task, Request& request);

nlohmann::json to_json(const Task& task);
const char* type_name(ParamType t);

}  // namespace tasks
}  // namespace loupe
