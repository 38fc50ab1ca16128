// loupe-cli: every task from the shell, JSON out. Uses only the C ABI (loupe.h), like any host.
//   loupe-cli info                      diagnostics JSON
//   loupe-cli inspect DIR               check a model folder without loading it
//   loupe-cli scan [DIR ...]            models on this computer (HF cache, web-UI folders, DIRs)
//   loupe-cli convert IN OUT.safetensors  pytorch_model.bin / shards -> one safetensors file
//   loupe-cli tasks [MODEL] [--json]    the tasks of the library (or of a model), from its description
//   loupe-cli help TASK [MODEL]         a task's inputs and parameters (type, default, range, help)
//   loupe-cli run --model DIR --task T [--image F] [--mask F] [--text S] [--region x0,y0,x1,y1]
//                 [--NAME VALUE | --set NAME=VALUE ...] [--out F] [--json]
//                 [--vae FILE|DIR] [--lora FILE[:WEIGHT]]   external VAE / LoRA for SD sessions
//   loupe-cli TASK ...                  the same as run --task TASK (txt2img, caption, selftest, ...)
//   loupe-cli download ID [--dest D]    the task "download", ID being its catalog_id
//   loupe-cli edit --finder DIR --painter DIR --image F --target TEXT [--prompt TEXT] [--out F]
//                                       edit by words (loupe_edit_submit): two sessions; --out F
//                                       writes the edited image to F and the mask to F-mask
// The CLI keeps no list of tasks or parameters: which tasks exist, what they take and the names,
// types, defaults and ranges of their parameters come from the library's description
// (loupe_task_*), and the library checks each request at submit; its message is what the user sees.
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "loupe/loupe.h"
#if LOUPE_HAVE_IMGCODECS
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#endif

namespace {

// A task parameter from the command line: --NAME VALUE or --set NAME=VALUE, in command-line order.
struct ParamArg {
  std::string key, value;
  std::string origin;  // as written, for messages
};

struct Args {
  std::string command;
  std::map<std::string, std::string> opts;  // the CLI's own options (kCliOptions)
  std::vector<ParamArg> params;
  std::vector<std::string> positional;
  bool json = false, help = false, verbose = false;
};

// Options of the CLI itself; any other --NAME VALUE is a parameter of the task.
const std::set<std::string> kCliOptions = {"model",  "task",      "image",      "mask",    "region", "out",
                                           "device", "precision", "models-dir", "threads", "vae",    "lora",
                                           "finder", "painter"};

int usage(FILE* to = stderr) {
  std::fprintf(to,
               "usage: loupe-cli info | inspect DIR | scan [DIR...] | convert IN OUT.safetensors\n"
               "       loupe-cli tasks [MODEL] [--json]          tasks of the library, or of a model\n"
               "       loupe-cli help TASK [MODEL]               a task's inputs and parameters\n"
               "       loupe-cli run --model DIR --task TASK [--image F] [--mask F] [--text S | --prompt S]\n"
               "           [--region x0,y0,x1,y1] [--NAME VALUE | --set NAME=VALUE]... [--out F] [--json]\n"
               "       loupe-cli TASK [...]                      run --task TASK (e.g. txt2img, caption, selftest)\n"
               "       loupe-cli download CATALOG_ID | --repo R --files F [--dest D]\n"
               "       loupe-cli edit --finder DIR --painter DIR --image F --target TEXT [--prompt TEXT] [--out F]\n"
               "           edit by words: find TEXT (Florence-2), repaint it as --prompt (SD inpainting; no prompt =\n"
               "           remove it); --paint 0 stops after the mask (no --painter); --out F: F and F-mask\n"
               "   common: [--device auto|cpu|cuda:N] [--precision auto|fp32|fp16|bf16] [--models-dir DIR]\n"
               "           [--threads N] [--verbose]\n"
               "   Stable Diffusion sessions: [--vae FILE|DIR] [--lora FILE[:WEIGHT]]\n"
               "   Parameters (names, types, defaults, ranges) are the task's: see loupe-cli help TASK.\n");
  return 2;
}

int fail(const char* what) {
  std::fprintf(stderr, "loupe-cli: %s: %s\n", what, loupe_last_error());
  return 1;
}

bool parse(int argc, char** argv, Args& a) {
  if (argc < 2) return false;
  a.command = argv[1];
  if (a.command == "--help" || a.command == "-h") a.command = "help";
  for (int i = 2; i < argc; ++i) {
    std::string s = argv[i];
    if (s == "--json") {
      a.json = true;
    } else if (s == "--verbose") {
      a.verbose = true;
    } else if (s == "--help" || s == "-h") {
      a.help = true;
    } else if (s.rfind("--", 0) == 0 && s.size() > 2) {
      std::string name = s.substr(2), value;
      const size_t eq = name.find('=');
      if (eq != std::string::npos) {  // --NAME=VALUE
        value = name.substr(eq + 1);
        name.resize(eq);
      } else if (i + 1 < argc) {
        value = argv[++i];
      } else {
        std::fprintf(stderr, "loupe-cli: %s expects a value\n", s.c_str());
        return false;
      }
      if (name == "set") {
        const size_t kv = value.find('=');
        if (kv == std::string::npos || kv == 0) {
          std::fprintf(stderr, "loupe-cli: --set expects NAME=VALUE, got '%s'\n", value.c_str());
          return false;
        }
        a.params.push_back({value.substr(0, kv), value.substr(kv + 1), "--set " + value});
      } else if (kCliOptions.count(name)) {
        a.opts[name] = value;
      } else {
        // A task parameter; --negative-prompt is --negative_prompt.
        std::string key = name;
        for (char& c : key)
          if (c == '-') c = '_';
        a.params.push_back({key, value, "--" + name + " " + value});
      }
    } else {
      a.positional.push_back(s);
    }
  }
  return true;
}

loupe_precision parse_precision(const std::string& s) {
  if (s == "fp32") return LOUPE_PRECISION_FP32;
  if (s == "fp16") return LOUPE_PRECISION_FP16;
  if (s == "bf16") return LOUPE_PRECISION_BF16;
  return LOUPE_PRECISION_AUTO;
}

void log_to_stderr(void*, loupe_log_level level, const char* message) {
  static const char* names[] = {"debug", "info", "warning", "error"};
  std::fprintf(stderr, "[%s] %s\n", names[level], message);
}

int progress_to_stderr(void*, const loupe_progress* p) {
  std::fprintf(stderr, "\r%s %d/%d   ", p->stage, p->step, p->total);
  if (p->total > 0 && p->step >= p->total) std::fprintf(stderr, "\n");
  return 1;
}

// ------------------------------------------------------------------ the task description

struct TaskDesc {
  loupe_task_info info = LOUPE_TASK_INFO_INIT;
  std::vector<loupe_param_info> params;

  const loupe_param_info* param(const std::string& name) const {
    for (const auto& p : params)
      if (name == p.name) return &p;
    return nullptr;
  }
};

// The task at index of the session's description (session NULL: the library's table).
bool describe(loupe_session* s, size_t index, TaskDesc& d) {
  d = TaskDesc{};
  if (loupe_task_describe(s, index, &d.info) != LOUPE_OK) return false;
  d.params.resize(d.info.param_count);
  for (size_t i = 0; i < d.info.param_count; ++i) {
    d.params[i] = LOUPE_PARAM_INFO_INIT;
    if (loupe_task_param(s, index, i, &d.params[i]) != LOUPE_OK) return false;
  }
  return true;
}

// A task by name; false (with the library's message in loupe_last_error) when it is not offered.
bool find_task(loupe_session* s, const std::string& name, TaskDesc& d) {
  size_t index = 0;
  return loupe_task_find(s, name.c_str(), &index) == LOUPE_OK && describe(s, index, d);
}

const char* type_name(loupe_param_type t) {
  switch (t) {
    case LOUPE_PARAM_INT: return "int";
    case LOUPE_PARAM_FLOAT: return "float";
    case LOUPE_PARAM_STRING: return "string";
    case LOUPE_PARAM_BOOL: return "bool";
    case LOUPE_PARAM_CHOICE: return "choice";
  }
  return "?";
}

// A number of the description: integers as integers, limits beyond int64 as none.
std::string number(double v, bool integer) {
  char buf[64];
  if (integer) std::snprintf(buf, sizeof buf, "%.0f", v);
  else std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

// "default 20, 1 to 150 steps, step 8"
std::string describe_value(const loupe_param_info& p) {
  std::string s;
  const bool integer = p.type == LOUPE_PARAM_INT;
  const double unbounded = 9.0e15;  // beyond what a double counts exactly: no limit worth printing
  switch (p.type) {
    case LOUPE_PARAM_INT:
    case LOUPE_PARAM_FLOAT: {
      s = "default " + number(p.default_number, integer);
      const bool lo = std::fabs(p.min) < unbounded, hi = std::fabs(p.max) < unbounded;
      if (lo && hi) s += ", " + number(p.min, integer) + " to " + number(p.max, integer);
      else if (lo) s += ", at least " + number(p.min, integer);
      else if (hi) s += ", at most " + number(p.max, integer);
      if (*p.unit) s += std::string(" ") + p.unit;
      if ((integer && p.step > 1) || (!integer && p.step > 0)) s += ", step " + number(p.step, integer);
      break;
    }
    case LOUPE_PARAM_BOOL:
      s = std::string("default ") + (p.default_number != 0 ? "1" : "0") + " (0/1, off/on)";
      break;
    case LOUPE_PARAM_STRING:
      s = std::string("default \"") + p.default_string + "\"";
      break;
    case LOUPE_PARAM_CHOICE:
      s = std::string("default ") + p.default_string + "; one of:";
      for (size_t i = 0; i < p.choice_count; ++i) s += std::string(i ? ", " : " ") + p.choices[i];
      break;
  }
  if (p.advanced) s += " (advanced)";
  return s;
}

std::string bits(uint32_t b, std::initializer_list<std::pair<uint32_t, const char*>> names) {
  std::string s;
  for (const auto& [bit, n] : names)
    if (b & bit) s += (s.empty() ? "" : ", ") + std::string(n);
  return s.empty() ? "-" : s;
}

std::string outputs_of(const loupe_task_info& t) {
  return bits(t.outputs, {{LOUPE_OUTPUT_TEXT, "text"},
                          {LOUPE_OUTPUT_BOXES, "boxes"},
                          {LOUPE_OUTPUT_POLYGONS, "polygons"},
                          {LOUPE_OUTPUT_MASKS, "masks"},
                          {LOUPE_OUTPUT_IMAGES, "images"},
                          {LOUPE_OUTPUT_NUMBERS, "numbers"}});
}

// The text input's flag: --prompt, --text or --question (the task's text_key).
std::string text_flag(const loupe_task_info& t) { return std::string("--") + t.text_key; }

// "--image F --mask F [--prompt TEXT]"
std::string inputs_synopsis(const loupe_task_info& t) {
  std::string s;
  auto add = [&](uint32_t bit, const std::string& flag) {
    if (!(t.inputs & bit)) return;
    const bool required = t.required & bit;
    s += std::string(s.empty() ? "" : " ") + (required ? "" : "[") + flag + (required ? "" : "]");
  };
  add(LOUPE_INPUT_IMAGE, "--image F");
  add(LOUPE_INPUT_MASK, "--mask F");
  add(LOUPE_INPUT_REGION, "--region x0,y0,x1,y1");
  if (*t.text_key) add(LOUPE_INPUT_TEXT | LOUPE_INPUT_QUESTION, text_flag(t) + " TEXT");
  return s;
}

void print_task_help(const TaskDesc& d, const std::string& model) {
  const loupe_task_info& t = d.info;
  std::printf("%s: %s - %s\n", t.name, t.label, t.help);
  const bool two_sessions = std::strcmp(t.name, "edit") == 0;  // loupe_edit_submit: a finder and a painter
  if (two_sessions) std::printf("usage: loupe-cli %s --finder DIR --painter DIR", t.name);
  else if (t.runtime) std::printf("usage: loupe-cli %s", t.name);
  else std::printf("usage: loupe-cli %s --model DIR", t.name);
  const std::string in = inputs_synopsis(t);
  std::printf("%s%s [--NAME VALUE | --set NAME=VALUE]...%s [--json]\n", in.empty() ? "" : " ", in.c_str(),
              t.outputs & (LOUPE_OUTPUT_IMAGES | LOUPE_OUTPUT_MASKS) ? " [--out F]" : "");
  std::printf("group: %s; outputs: %s%s\n", t.group, outputs_of(t).c_str(),
              two_sessions ? "; runs on the runtime with two models: --finder (segment or ground, e.g. Florence-2) and "
                             "--painter (inpaint, e.g. Stable Diffusion)"
              : t.runtime  ? "; runs on the runtime (no model)"
                           : "");
  std::printf("inputs:\n");
  if (t.inputs == 0) std::printf("  none\n");
  // "  --mask F                 the mask (required; grey, white = repaint)"
  auto input = [&](uint32_t bit, const std::string& flag, const std::string& what, const std::string& more,
                   const std::string& help) {
    if (!(t.inputs & bit)) return;
    std::printf("  %-24s %s (%s%s)%s%s\n", flag.c_str(), what.c_str(), t.required & bit ? "required" : "optional", more.c_str(),
                help.empty() ? "" : ": ", help.c_str());
  };
  input(LOUPE_INPUT_IMAGE, "--image F", "the image", "", "");
  input(LOUPE_INPUT_MASK, "--mask F", "the mask", "; grey, white = repaint", "");
  input(LOUPE_INPUT_REGION, "--region x0,y0,x1,y1", "a region", "; image pixels", "");
  if (*t.text_key)
    input(t.inputs & (LOUPE_INPUT_TEXT | LOUPE_INPUT_QUESTION), text_flag(t) + " TEXT", std::string("the ") + t.text_label,
          std::string("; also ") + (std::strcmp(t.text_key, "text") == 0 ? "--prompt" : "--text"), t.text_help);
  if (d.params.empty()) {
    std::printf("parameters: none\n");
  } else {
    std::printf("parameters (--NAME VALUE or --set NAME=VALUE; %s):\n",
                !model.empty() ? "defaults of this model"
                : t.runtime    ? "their defaults"
                               : "the library's generic defaults; loupe-cli help TASK MODEL for a model's");
    int width = 24;
    for (const auto& p : d.params)
      width = std::max(width, static_cast<int>(std::strlen(p.name) + std::strlen(type_name(p.type)) + 3));
    for (const auto& p : d.params) {
      const std::string head = std::string(p.name) + " (" + type_name(p.type) + ")";
      std::printf("  %-*s %s\n", width, head.c_str(), describe_value(p).c_str());
      std::printf("  %-*s %s\n", width, "", *p.help ? p.help : p.label);
    }
  }
}

void print_task_list(loupe_session* s, const std::vector<TaskDesc>& tasks) {
  // By group, the groups in the order they first appear.
  std::vector<std::string> groups;
  for (const auto& d : tasks) {
    bool seen = false;
    for (const auto& g : groups) seen = seen || g == d.info.group;
    if (!seen) groups.push_back(d.info.group);
  }
  for (const auto& g : groups) {
    std::printf("%s\n", g.c_str());
    for (const auto& d : tasks) {
      if (g != d.info.group) continue;
      std::string in = inputs_synopsis(d.info);
      if (std::strcmp(d.info.name, "edit") == 0) in = "--finder DIR --painter DIR " + in;
      else if (d.info.runtime) in = "(no model)" + std::string(in.empty() ? "" : " ") + in;
      std::printf("  %-24s %-36s %s\n", d.info.name, in.c_str(), d.info.help);
    }
  }
  std::printf("loupe-cli help TASK%s: its inputs and parameters\n", s ? " MODEL" : " [MODEL]");
}

// ------------------------------------------------------------------ parameters

bool parse_int(const std::string& v, long long& out) {
  if (v.empty()) return false;
  char* end = nullptr;
  errno = 0;
  out = std::strtoll(v.c_str(), &end, 10);
  return *end == '\0' && errno == 0;
}

bool parse_real(const std::string& v, double& out) {
  if (v.empty()) return false;
  char* end = nullptr;
  out = std::strtod(v.c_str(), &end);
  return *end == '\0';
}

// Sets one parameter on the request, typed by the task's description. A value that is not of the
// described type at all (steps=abc) is refused here, naming the type; everything else (an unknown
// key, a value out of range or not among the choices, a fraction for an integer) goes to the library,
// which refuses it at submit with its message.
bool set_param(loupe_request* rq, const TaskDesc& d, const ParamArg& a) {
  std::string key = a.key;
  // The text input under any of its names.
  // (not when the task has a parameter of that name: edit's text input is "target", "prompt" its own)
  if (*d.info.text_key && (key == "text" || key == "prompt" || key == "question") && !d.param(key)) key = d.info.text_key;
  const loupe_param_info* p = d.param(key);
  loupe_status st = LOUPE_OK;
  auto wrong = [&](const char* expected) {
    std::fprintf(stderr, "loupe-cli: %s: parameter '%s' of task '%s' takes %s (%s)\n", a.origin.c_str(), p->name, d.info.name,
                 expected, describe_value(*p).c_str());
    return false;
  };
  long long i = 0;
  double x = 0;
  if (!p) {
    // The text input, or a key the task does not have: the library says which.
    st = loupe_request_set_string(rq, key.c_str(), a.value.c_str());
  } else {
    switch (p->type) {
      case LOUPE_PARAM_INT:
        if (parse_int(a.value, i)) st = loupe_request_set_int(rq, key.c_str(), i);
        else if (parse_real(a.value, x)) st = loupe_request_set_float(rq, key.c_str(), x);
        else return wrong("an integer");
        break;
      case LOUPE_PARAM_FLOAT:
        if (!parse_real(a.value, x)) return wrong("a number");
        st = loupe_request_set_float(rq, key.c_str(), x);
        break;
      case LOUPE_PARAM_BOOL: {
        std::string v = a.value;
        for (char& c : v) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        if (v == "true" || v == "on" || v == "yes") i = 1;
        else if (v == "false" || v == "off" || v == "no") i = 0;
        else if (!parse_int(v, i)) return wrong("0 or 1 (or on/off, true/false)");
        st = loupe_request_set_int(rq, key.c_str(), i);
        break;
      }
      case LOUPE_PARAM_STRING:
      case LOUPE_PARAM_CHOICE:
        st = loupe_request_set_string(rq, key.c_str(), a.value.c_str());
        break;
    }
  }
  if (st != LOUPE_OK) {
    fail(a.origin.c_str());
    return false;
  }
  return true;
}

// ------------------------------------------------------------------ images

#if LOUPE_HAVE_IMGCODECS
struct LoadedImage {
  cv::Mat mat;
  loupe_image view{};
};

bool load_image(const std::string& path, bool gray, LoadedImage& out) {
  cv::Mat m = cv::imread(path, gray ? cv::IMREAD_GRAYSCALE : cv::IMREAD_COLOR);
  if (m.empty()) {
    std::fprintf(stderr, "loupe-cli: cannot read image '%s'\n", path.c_str());
    return false;
  }
  if (!gray) cv::cvtColor(m, m, cv::COLOR_BGR2RGB);
  out.mat = m;
  out.view = loupe_image{m.cols, m.rows, static_cast<int32_t>(m.step[0]), gray ? LOUPE_GRAY8 : LOUPE_RGB8, m.data};
  return true;
}

bool save_image(const std::string& path, const loupe_image& im) {
  const int type = im.format == LOUPE_GRAY8 ? CV_8UC1 : im.format == LOUPE_RGB8 ? CV_8UC3 : CV_8UC4;
  cv::Mat m(im.height, im.width, type, const_cast<uint8_t*>(im.data), im.stride);
  cv::Mat bgr;
  if (im.format == LOUPE_RGB8) cv::cvtColor(m, bgr, cv::COLOR_RGB2BGR);
  else if (im.format == LOUPE_RGBA8) cv::cvtColor(m, bgr, cv::COLOR_RGBA2BGRA);
  else bgr = m;
  return cv::imwrite(path, bgr);
}
#endif

int run_job_and_print(loupe_job* job, const Args& a) {
  loupe_job_wait(job, -1);
  loupe_result* res = nullptr;
  if (loupe_job_take_result(&res, job) != LOUPE_OK) {
    int rc = fail("job failed");
    loupe_job_free(job);
    return rc;
  }
  loupe_job_free(job);
  int rc = 0;
  if (a.opts.count("out")) {
    const size_t n = loupe_result_image_count(res);
#if LOUPE_HAVE_IMGCODECS
    for (size_t i = 0; i < n; ++i) {
      loupe_image im;
      loupe_result_image(res, i, &im);
      std::string path = a.opts.at("out");
      if (std::strcmp(loupe_result_task(res), "edit") == 0 && i + 1 == n && n > 1) {
        // edit: the edited image to F, the mask (the last image) to F-mask
        auto dot = path.rfind('.');
        path = path.substr(0, dot) + "-mask" + (dot == std::string::npos ? "" : path.substr(dot));
      } else if (std::strcmp(loupe_result_task(res), "edit") == 0) {
      } else if (n > 1) {
        auto dot = path.rfind('.');
        path = path.substr(0, dot) + "-" + std::to_string(i) + (dot == std::string::npos ? "" : path.substr(dot));
      }
      if (!save_image(path, im)) {
        std::fprintf(stderr, "loupe-cli: cannot write '%s'\n", path.c_str());
        rc = 1;
      } else {
        std::fprintf(stderr, "wrote %s\n", path.c_str());
      }
    }
#endif
    if (n == 0) std::fprintf(stderr, "loupe-cli: the result has no image to write to --out\n");
  }
  if (a.json || !a.opts.count("out")) std::printf("%s\n", loupe_result_json(res));
  else if (*loupe_result_text(res)) std::printf("%s\n", loupe_result_text(res));
  loupe_result_free(res);
  return rc;
}

// ------------------------------------------------------------------ commands

// Opens the model of `tasks MODEL` / `help TASK MODEL` (positional or --model).
bool open_model(loupe_runtime* rt, const std::string& model, loupe_session** s) {
  if (loupe_session_open(s, rt, model.c_str(), nullptr) != LOUPE_OK) {
    fail("cannot open the model");
    return false;
  }
  return true;
}

int cmd_tasks(loupe_runtime* rt, const Args& a) {
  const std::string model = !a.positional.empty() ? a.positional[0] : a.opts.count("model") ? a.opts.at("model") : "";
  loupe_session* s = nullptr;
  if (!model.empty() && !open_model(rt, model, &s)) return 1;
  int rc = 0;
  if (a.json) {
    char* json = nullptr;
    if (loupe_tasks_json(s, &json) != LOUPE_OK) rc = fail("tasks");
    else std::printf("%s\n", json);
    loupe_string_free(json);
  } else {
    std::vector<TaskDesc> tasks(loupe_task_count(s));
    for (size_t i = 0; i < tasks.size() && rc == 0; ++i)
      if (!describe(s, i, tasks[i])) rc = fail("tasks");
    if (rc == 0) {
      if (s) {
        loupe_session_info info = LOUPE_SESSION_INFO_INIT;
        if (loupe_session_describe(s, &info) == LOUPE_OK)
          std::printf("tasks of %s (%s, %s):\n", model.c_str(), info.family, info.variant);
      } else {
        std::printf("tasks of the library (loupe-cli tasks MODEL: those a model offers):\n");
      }
      print_task_list(s, tasks);
    }
  }
  loupe_session_close(s);
  return rc;
}

int cmd_help(loupe_runtime* rt, const std::string& task, const std::string& model) {
  loupe_session* s = nullptr;
  TaskDesc d;
  // Known at all? (checked before a model is loaded for nothing)
  if (!find_task(nullptr, task, d)) return fail("help");
  if (!model.empty()) {
    if (!open_model(rt, model, &s)) return 1;
    if (!find_task(s, task, d)) {
      int rc = fail(model.c_str());
      loupe_session_close(s);
      return rc;
    }
  }
  print_task_help(d, model);
  loupe_session_close(s);
  return 0;
}

// Runs a task: on a session (--model), or on the runtime for the runtime's tasks.
int cmd_run(loupe_runtime* rt, const std::string& task, Args& a) {
  TaskDesc d;
  if (!find_task(nullptr, task, d)) return fail("run");
  const std::string model = a.opts.count("model") ? a.opts["model"] : "";
  if (a.help) return cmd_help(rt, task, model);
  if (!d.info.runtime && model.empty()) {
    std::fprintf(stderr, "loupe-cli: task '%s' needs a model: --model DIR (loupe-cli help %s)\n", task.c_str(), task.c_str());
    return 2;
  }
  loupe_session* s = nullptr;
  loupe_session *finder = nullptr, *painter = nullptr;  // task "edit"
  const bool edit = task == "edit";
  int rc = 0;
  if (edit) {
    const std::string f = a.opts.count("finder") ? a.opts["finder"] : model, p = a.opts.count("painter") ? a.opts["painter"] : "";
    if (!f.empty() && loupe_session_open(&finder, rt, f.c_str(), nullptr) != LOUPE_OK) rc = fail("cannot open the finder (--finder)");
    if (rc == 0 && !p.empty() && loupe_session_open(&painter, rt, p.c_str(), nullptr) != LOUPE_OK)
      rc = fail("cannot open the painter (--painter)");
  } else if (!d.info.runtime) {
    if (loupe_session_open(&s, rt, model.c_str(), nullptr) != LOUPE_OK) return fail("cannot open the model");
    // The session's description: its tasks and its defaults and ranges.
    if (!find_task(s, task, d)) rc = fail(model.c_str());
    if (rc == 0 && a.opts.count("vae") && loupe_session_set_vae(s, a.opts["vae"].c_str()) != LOUPE_OK) rc = fail("--vae");
    if (rc == 0 && a.opts.count("lora")) {
      std::string file = a.opts["lora"];
      float weight = 1.0f;
      const size_t colon = file.rfind(':');
      if (colon != std::string::npos && colon + 1 < file.size()) {
        char* end = nullptr;
        const float w = std::strtof(file.c_str() + colon + 1, &end);
        if (end && *end == '\0') {
          weight = w;
          file.resize(colon);
        }
      }
      if (loupe_session_set_lora(s, file.c_str(), weight) != LOUPE_OK) rc = fail("--lora");
    }
  } else if (!model.empty()) {
    std::fprintf(stderr, "loupe-cli: task '%s' runs on the runtime; --model is not used\n", task.c_str());
  }
  loupe_request* rq = nullptr;
  if (rc == 0 && loupe_request_create(&rq, task.c_str()) != LOUPE_OK) rc = fail("request");
#if LOUPE_HAVE_IMGCODECS
  LoadedImage img, mask;
  if (rc == 0 && a.opts.count("image")) {
    if (!load_image(a.opts["image"], false, img)) rc = 1;
    else if (loupe_request_set_image(rq, &img.view) != LOUPE_OK) rc = fail("--image");
  }
  if (rc == 0 && a.opts.count("mask")) {
    if (!load_image(a.opts["mask"], true, mask)) rc = 1;
    else if (loupe_request_set_mask(rq, &mask.view) != LOUPE_OK) rc = fail("--mask");
  }
#else
  if (a.opts.count("image") || a.opts.count("mask")) {
    std::fprintf(stderr, "loupe-cli: this build has no image file support (OpenCV imgcodecs)\n");
    rc = 1;
  }
#endif
  if (rc == 0 && a.opts.count("region")) {
    float r[4];
    char tail = 0;
    if (std::sscanf(a.opts["region"].c_str(), "%f,%f,%f,%f%c", &r[0], &r[1], &r[2], &r[3], &tail) != 4) {
      std::fprintf(stderr, "loupe-cli: --region expects x0,y0,x1,y1\n");
      rc = 2;
    } else if (loupe_request_set_region(rq, r[0], r[1], r[2], r[3]) != LOUPE_OK) {
      rc = fail("--region");
    }
  }
  for (const auto& p : a.params)
    if (rc == 0 && !set_param(rq, d, p)) rc = 1;
  loupe_job* job = nullptr;
  if (rc == 0) {
    const loupe_status st = edit ? loupe_edit_submit(&job, rt, finder, painter, rq, progress_to_stderr, nullptr)
                            : s  ? loupe_session_submit(&job, s, rq, progress_to_stderr, nullptr)
                                 : loupe_runtime_submit(&job, rt, rq, progress_to_stderr, nullptr);
    if (st != LOUPE_OK) rc = fail(task.c_str());
  }
  loupe_request_free(rq);
  if (rc == 0) rc = run_job_and_print(job, a);
  loupe_session_close(s);
  loupe_session_close(finder);
  loupe_session_close(painter);
  return rc;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  if (!parse(argc, argv, a)) return usage();

  // help and tasks of the library need no runtime.
  if (a.command == "help" && (a.positional.empty() || a.help)) {
    usage(stdout);
    return 0;
  }
  const std::string model_arg = a.opts.count("model") ? a.opts["model"] : "";
  if (a.command == "help" && a.positional.size() < 2 && model_arg.empty()) return cmd_help(nullptr, a.positional[0], "");
  if (a.command == "tasks" && a.positional.empty() && model_arg.empty()) return cmd_tasks(nullptr, a);

  loupe_runtime_options ro = LOUPE_RUNTIME_OPTIONS_INIT;
  const std::string device = a.opts.count("device") ? a.opts["device"] : "auto";
  const std::string models_dir = a.opts.count("models-dir") ? a.opts["models-dir"] : "";
  ro.device = device.c_str();
  ro.models_dir = models_dir.empty() ? nullptr : models_dir.c_str();
  ro.precision = parse_precision(a.opts.count("precision") ? a.opts["precision"] : "auto");
  ro.log_fn = a.verbose ? log_to_stderr : nullptr;
  ro.log_level = LOUPE_LOG_INFO;
  ro.num_threads = a.opts.count("threads") ? std::atoi(a.opts["threads"].c_str()) : 0;
  loupe_runtime* rt = nullptr;
  if (loupe_runtime_create(&rt, &ro) != LOUPE_OK) return fail("cannot create the runtime");

  int rc = 0;
  size_t task_index = 0;
  if (a.command == "info") {
    char* json = nullptr;
    if (loupe_runtime_diagnostics(rt, &json) != LOUPE_OK) rc = fail("diagnostics");
    else std::printf("%s\n", json);
    loupe_string_free(json);
  } else if (a.command == "inspect") {
    if (a.positional.empty()) {
      rc = usage();
    } else {
      char* json = nullptr;
      if (loupe_model_inspect(rt, a.positional[0].c_str(), &json) != LOUPE_OK) rc = fail("inspect");
      else std::printf("%s\n", json);
      loupe_string_free(json);
    }
  } else if (a.command == "scan") {
    std::vector<const char*> dirs;
    for (const auto& p : a.positional) dirs.push_back(p.c_str());
    loupe_scan_options so = LOUPE_SCAN_OPTIONS_INIT;
    so.dirs = dirs.empty() ? nullptr : dirs.data();
    so.dir_count = dirs.size();
    char* json = nullptr;
    if (loupe_models_scan(rt, &so, &json) != LOUPE_OK) rc = fail("scan");
    else std::printf("%s\n", json);
    loupe_string_free(json);
  } else if (a.command == "convert") {
    if (a.positional.size() != 2) rc = usage();
    else if (loupe_checkpoint_convert(a.positional[0].c_str(), a.positional[1].c_str()) != LOUPE_OK) rc = fail("convert");
    else std::fprintf(stderr, "wrote %s\n", a.positional[1].c_str());
  } else if (a.command == "tasks") {
    rc = cmd_tasks(rt, a);
  } else if (a.command == "help") {
    rc = cmd_help(rt, a.positional[0], a.positional.size() > 1 ? a.positional[1] : model_arg);
  } else if (a.command == "run") {
    if (!a.opts.count("task")) rc = usage();
    else rc = cmd_run(rt, a.opts["task"], a);
  } else if (loupe_task_find(nullptr, a.command.c_str(), &task_index) == LOUPE_OK) {
    // A task's name as the command. The download command's argument is the catalog entry.
    if (a.command == "download" && !a.positional.empty())
      a.params.insert(a.params.begin(), {"catalog_id", a.positional[0], a.positional[0]});
    rc = cmd_run(rt, a.command, a);
  } else {
    std::fprintf(stderr, "loupe-cli: unknown command '%s' (not a command nor a task: loupe-cli tasks)\n", a.command.c_str());
    rc = usage();
  }
  loupe_runtime_free(rt);
  return rc;
}
