// loupe-cli: every task from the shell, JSON out. Uses only the C ABI (loupe.h), like any host.
//   loupe-cli info                      diagnostics JSON
//   loupe-cli selftest [--device D]     device self-test
//   loupe-cli inspect DIR               check a model folder without loading it
//   loupe-cli scan [DIR ...]            models on this computer (HF cache, web-UI folders, DIRs)
//   loupe-cli download ID [--dest D]    a catalog model (or --repo ORG/NAME --files a,b [--revision R])
//   loupe-cli convert IN OUT.safetensors  pytorch_model.bin / shards -> one safetensors file
//   loupe-cli run --model DIR --task T [--image F] [--mask F] [--text S] [--region x0,y0,x1,y1]
//                 [--set key=value ...] [--out F] [--json]
//   loupe-cli txt2img|img2img|inpaint --model DIR --prompt S [...] --out F   (shorthands for run)
//                 [--vae FILE|DIR] [--lora FILE[:WEIGHT]]   external VAE / LoRA for SD sessions
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "loupe/loupe.h"
#if LOUPE_HAVE_IMGCODECS
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#endif

namespace {

struct Args {
  std::string command;
  std::map<std::string, std::string> opts;
  std::vector<std::string> sets;
  std::vector<std::string> positional;
};

int usage() {
  std::fprintf(stderr,
               "usage: loupe-cli info | selftest | inspect DIR | scan [DIR...] | download CATALOG_ID|--repo R --files F [--dest D]\n"
               "       loupe-cli convert IN OUT.safetensors | run --model DIR --task TASK [--image F] [--mask F]\n"
               "       [--text S] [--prompt S] [--region x0,y0,x1,y1] [--set key=value]... [--out F] [--json]\n"
               "       [--device auto|cpu|cuda:N] [--precision auto|fp32|fp16|bf16] [--models-dir DIR] [--threads N]\n"
               "       loupe-cli txt2img|img2img|inpaint --model DIR --prompt S [--image F] [--mask F] --out F\n"
               "       [--vae FILE|DIR] [--lora FILE[:WEIGHT]]   (Stable Diffusion: external VAE, LoRA)\n");
  return 2;
}

int fail(const char* what) {
  std::fprintf(stderr, "loupe-cli: %s: %s\n", what, loupe_last_error());
  return 1;
}

bool parse(int argc, char** argv, Args& a) {
  if (argc < 2) return false;
  a.command = argv[1];
  for (int i = 2; i < argc; ++i) {
    std::string s = argv[i];
    if (s == "--json") {
      a.opts["json"] = "1";
    } else if (s.rfind("--", 0) == 0) {
      if (i + 1 >= argc) return false;
      if (s == "--set") a.sets.push_back(argv[++i]);
      else a.opts[s.substr(2)] = argv[++i];
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
      if (n > 1) {
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
  if (a.opts.count("json") || !a.opts.count("out")) std::printf("%s\n", loupe_result_json(res));
  else if (*loupe_result_text(res)) std::printf("%s\n", loupe_result_text(res));
  loupe_result_free(res);
  return rc;
}

bool apply_set(loupe_request* rq, const std::string& kv) {
  auto eq = kv.find('=');
  if (eq == std::string::npos) {
    std::fprintf(stderr, "loupe-cli: --set expects key=value, got '%s'\n", kv.c_str());
    return false;
  }
  const std::string k = kv.substr(0, eq), v = kv.substr(eq + 1);
  char* end = nullptr;
  long long iv = std::strtoll(v.c_str(), &end, 10);
  if (!v.empty() && *end == '\0') return loupe_request_set_int(rq, k.c_str(), iv) == LOUPE_OK;
  double dv = std::strtod(v.c_str(), &end);
  if (!v.empty() && *end == '\0') return loupe_request_set_float(rq, k.c_str(), dv) == LOUPE_OK;
  return loupe_request_set_string(rq, k.c_str(), v.c_str()) == LOUPE_OK;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  if (!parse(argc, argv, a)) return usage();

  loupe_runtime_options ro = LOUPE_RUNTIME_OPTIONS_INIT;
  const std::string device = a.opts.count("device") ? a.opts["device"] : "auto";
  const std::string models_dir = a.opts.count("models-dir") ? a.opts["models-dir"] : "";
  ro.device = device.c_str();
  ro.models_dir = models_dir.empty() ? nullptr : models_dir.c_str();
  ro.precision = parse_precision(a.opts.count("precision") ? a.opts["precision"] : "auto");
  ro.log_fn = a.opts.count("verbose") ? log_to_stderr : nullptr;
  ro.log_level = LOUPE_LOG_INFO;
  ro.num_threads = a.opts.count("threads") ? std::atoi(a.opts["threads"].c_str()) : 0;
  loupe_runtime* rt = nullptr;
  if (loupe_runtime_create(&rt, &ro) != LOUPE_OK) return fail("cannot create the runtime");

  int rc = 0;
  if (a.command == "info") {
    char* json = nullptr;
    if (loupe_runtime_diagnostics(rt, &json) != LOUPE_OK) rc = fail("diagnostics");
    else std::printf("%s\n", json);
    loupe_string_free(json);
  } else if (a.command == "inspect") {
    if (a.positional.empty()) return usage();
    char* json = nullptr;
    if (loupe_model_inspect(rt, a.positional[0].c_str(), &json) != LOUPE_OK) rc = fail("inspect");
    else std::printf("%s\n", json);
    loupe_string_free(json);
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
  } else if (a.command == "download") {
    loupe_request* rq = nullptr;
    loupe_job* job = nullptr;
    loupe_request_create(&rq, "download");
    if (!a.positional.empty()) loupe_request_set_string(rq, "catalog_id", a.positional[0].c_str());
    for (const char* k : {"repo", "files", "revision", "dest", "endpoint", "catalog"})
      if (a.opts.count(k)) loupe_request_set_string(rq, k, a.opts[k].c_str());
    if (loupe_runtime_submit(&job, rt, rq, progress_to_stderr, nullptr) != LOUPE_OK) rc = fail("download");
    else rc = run_job_and_print(job, a);
    loupe_request_free(rq);
  } else if (a.command == "convert") {
    if (a.positional.size() != 2) return usage();
    if (loupe_checkpoint_convert(a.positional[0].c_str(), a.positional[1].c_str()) != LOUPE_OK) rc = fail("convert");
    else std::fprintf(stderr, "wrote %s\n", a.positional[1].c_str());
  } else if (a.command == "selftest") {
    loupe_request* rq = nullptr;
    loupe_job* job = nullptr;
    loupe_request_create(&rq, "selftest");
    for (const auto& s : a.sets)
      if (!apply_set(rq, s)) rc = fail("--set");
    if (rc == 0 && loupe_runtime_submit(&job, rt, rq, progress_to_stderr, nullptr) != LOUPE_OK) rc = fail("selftest");
    loupe_request_free(rq);
    if (rc == 0) rc = run_job_and_print(job, a);
  } else if (a.command == "run" || a.command == "txt2img" || a.command == "img2img" || a.command == "inpaint") {
    std::string task = a.command == "run" ? (a.opts.count("task") ? a.opts["task"] : "") : a.command;
    if (task == "od") task = "detect";
    if (!a.opts.count("model") || task.empty()) return usage();
    loupe_session* s = nullptr;
    if (loupe_session_open(&s, rt, a.opts["model"].c_str(), nullptr) != LOUPE_OK) {
      rc = fail("cannot open the model");
    } else {
      if (a.opts.count("vae") && loupe_session_set_vae(s, a.opts["vae"].c_str()) != LOUPE_OK) rc = fail("--vae");
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
      loupe_request* rq = nullptr;
      if (rc == 0 && loupe_request_create(&rq, task.c_str()) != LOUPE_OK) rc = fail("request");
#if LOUPE_HAVE_IMGCODECS
      LoadedImage img, mask;
      if (rc == 0 && a.opts.count("image")) {
        if (!load_image(a.opts["image"], false, img)) rc = 1;
        else if (loupe_request_set_image(rq, &img.view) != LOUPE_OK) rc = fail("image");
      }
      if (rc == 0 && a.opts.count("mask")) {
        if (!load_image(a.opts["mask"], true, mask)) rc = 1;
        else if (loupe_request_set_mask(rq, &mask.view) != LOUPE_OK) rc = fail("mask");
      }
#else
      if (a.opts.count("image") || a.opts.count("mask")) {
        std::fprintf(stderr, "loupe-cli: this build has no image file support (OpenCV imgcodecs)\n");
        rc = 1;
      }
#endif
      for (const char* k : {"text", "prompt", "negative_prompt", "sampler"})
        if (rc == 0 && a.opts.count(k) && loupe_request_set_string(rq, k, a.opts[k].c_str()) != LOUPE_OK) rc = fail(k);
      if (rc == 0 && a.opts.count("region")) {
        float r[4];
        if (std::sscanf(a.opts["region"].c_str(), "%f,%f,%f,%f", &r[0], &r[1], &r[2], &r[3]) != 4) {
          std::fprintf(stderr, "loupe-cli: --region expects x0,y0,x1,y1\n");
          rc = 2;
        } else if (loupe_request_set_region(rq, r[0], r[1], r[2], r[3]) != LOUPE_OK) {
          rc = fail("region");
        }
      }
      for (const auto& kv : a.sets)
        if (rc == 0 && !apply_set(rq, kv)) rc = fail("--set");
      loupe_job* job = nullptr;
      if (rc == 0 && loupe_session_submit(&job, s, rq, progress_to_stderr, nullptr) != LOUPE_OK) rc = fail("submit");
      loupe_request_free(rq);
      if (rc == 0) rc = run_job_and_print(job, a);
      loupe_session_close(s);
    }
  } else {
    rc = usage();
  }
  loupe_runtime_free(rt);
  return rc;
}
