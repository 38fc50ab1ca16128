// Soak test (issue 19, item 4), benchmark-style (not a CTest: it runs minutes): N jobs through the C
// ABI only, mixing every task the tiny fixture models offer (Florence-2, Stable Diffusion 1.5,
// PaliGemma, BLIP-2, FLUX.1 schnell), with cancels from another thread, sessions closed and reopened
// along the way, under a small memory budget. It records the resident set over time and every status into JSON, and exits
// nonzero on a status the header does not document for what was done, a job that never ends, or
// resident memory that keeps growing after the warm-up (more than --max-growth-mb).
//   loupe-bench-soak [--jobs 1000] [--budget-mb 16] [--cancel-every 5] [--reopen-every 50]
//                    [--in-flight 3] [--seed 1] [--fixtures DIR] [--out bench/results/soak-cpu.json]
//                    [--max-growth-mb 256]
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "loupe/loupe.h"

namespace {

uint64_t rss_bytes() {
  std::ifstream f("/proc/self/status");
  for (std::string line; std::getline(f, line);)
    if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
  return 0;
}

const char* status_name(loupe_status s) {
  switch (s) {
    case LOUPE_OK: return "OK";
    case LOUPE_ERROR_INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case LOUPE_ERROR_NOT_FOUND: return "NOT_FOUND";
    case LOUPE_ERROR_BAD_MODEL: return "BAD_MODEL";
    case LOUPE_ERROR_UNSUPPORTED: return "UNSUPPORTED";
    case LOUPE_ERROR_OUT_OF_MEMORY: return "OUT_OF_MEMORY";
    case LOUPE_ERROR_CANCELLED: return "CANCELLED";
    case LOUPE_ERROR_TIMEOUT: return "TIMEOUT";
    case LOUPE_ERROR_INVALID_STATE: return "INVALID_STATE";
    case LOUPE_ERROR_INTERNAL: return "INTERNAL";
  }
  return "UNKNOWN";
}

struct Model {
  std::string name;  // under the fixtures folder, e.g. "sd/tiny-sd15"
  std::string path;
  loupe_session* session = nullptr;
  std::vector<size_t> tasks;  // indices (of the session's list) of the tasks run here
};

struct InFlight {
  loupe_job* job;
  std::string what;
  bool cancel_asked = false;
};

std::string arg(int argc, char** argv, const char* name, const std::string& def) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], name) == 0) return argv[i + 1];
  return def;
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (!std::strcmp(argv[i], "--help") || !std::strcmp(argv[i], "-h")) {
      std::printf("loupe-bench-soak [--jobs 1000] [--budget-mb 16] [--cancel-every 5] [--reopen-every 50]\n"
                  "                 [--in-flight 3] [--seed 1] [--fixtures DIR] [--out FILE.json] [--max-growth-mb 256]\n");
      return 0;
    }
  const int jobs = std::stoi(arg(argc, argv, "--jobs", "1000"));
  const uint64_t budget = std::stoull(arg(argc, argv, "--budget-mb", "16")) << 20;
  const int cancel_every = std::stoi(arg(argc, argv, "--cancel-every", "5"));
  const int reopen_every = std::stoi(arg(argc, argv, "--reopen-every", "50"));
  const size_t in_flight_max = std::stoul(arg(argc, argv, "--in-flight", "3"));
  const double max_growth_mb = std::stod(arg(argc, argv, "--max-growth-mb", "256"));
  const std::string fixtures = arg(argc, argv, "--fixtures", LOUPE_FIXTURES_DIR);
  const std::string out = arg(argc, argv, "--out", std::string(LOUPE_SOURCE_DIR) + "/bench/results/soak-cpu.json");
  std::mt19937 rng(std::stoul(arg(argc, argv, "--seed", "1")));

  loupe_runtime_options ro = LOUPE_RUNTIME_OPTIONS_INIT;
  ro.device = "cpu";
  ro.vram_budget_bytes = budget;
  ro.log_level = LOUPE_LOG_ERROR;
  loupe_runtime* rt = nullptr;
  if (loupe_runtime_create(&rt, &ro) != LOUPE_OK) {
    std::fprintf(stderr, "runtime: %s\n", loupe_last_error());
    return 1;
  }
  std::vector<Model> models;
  for (const char* name : {"florence2/tiny", "sd/tiny-sd15", "paligemma/tiny-pg1", "blip2/tiny-opt", "flux/pipeline/tiny-flux-schnell"})
    models.push_back({name, fixtures + "/" + name, nullptr, {}});
  std::map<std::string, int> statuses;  // "task: STATUS" -> count
  std::vector<std::string> failures;
  int opens = 0, closes = 0;
  auto open = [&](Model& m) {
    if (m.session) return true;
    const loupe_status s = loupe_session_open(&m.session, rt, m.path.c_str(), nullptr);
    ++statuses[m.name + " open: " + status_name(s)];
    if (s != LOUPE_OK) {
      failures.push_back("open " + m.path + ": " + status_name(s) + ": " + loupe_last_error());
      return false;
    }
    ++opens;
    m.tasks.clear();
    for (size_t i = 0; i < loupe_task_count(m.session); ++i) {
      loupe_task_info ti = LOUPE_TASK_INFO_INIT;
      if (loupe_task_describe(m.session, i, &ti) == LOUPE_OK && !ti.runtime) m.tasks.push_back(i);
    }
    return true;
  };

  // 64x64 RGBA image, a gradient; a mask over its middle.
  std::vector<uint8_t> pixels(64 * 64 * 4), mask(64 * 64);
  for (int y = 0; y < 64; ++y)
    for (int x = 0; x < 64; ++x) {
      uint8_t* p = &pixels[(y * 64 + x) * 4];
      p[0] = uint8_t(x * 4), p[1] = uint8_t(y * 4), p[2] = uint8_t((x + y) * 2), p[3] = 255;
      mask[y * 64 + x] = (x > 16 && x < 48 && y > 16 && y < 48) ? 255 : 0;
    }
  const loupe_image image{64, 64, 64 * 4, LOUPE_RGBA8, pixels.data()};
  const loupe_image mask_image{64, 64, 64, LOUPE_GRAY8, mask.data()};

  // Builds the request for task `index` of model m with small settings (few steps and tokens).
  auto request = [&](Model& m, size_t index, std::string* name) -> loupe_request* {
    loupe_task_info ti = LOUPE_TASK_INFO_INIT;
    loupe_task_describe(m.session, index, &ti);
    *name = ti.name;
    loupe_request* rq = nullptr;
    if (loupe_request_create(&rq, ti.name) != LOUPE_OK) return nullptr;
    if (ti.inputs & LOUPE_INPUT_IMAGE) loupe_request_set_image(rq, &image);
    if (ti.inputs & LOUPE_INPUT_MASK) loupe_request_set_mask(rq, &mask_image);
    if (ti.inputs & LOUPE_INPUT_REGION) loupe_request_set_region(rq, 8, 8, 40, 40);
    if ((ti.inputs & (LOUPE_INPUT_TEXT | LOUPE_INPUT_QUESTION)) && *ti.text_key)
      loupe_request_set_string(rq, ti.text_key, "a red car");
    for (size_t p = 0; p < ti.param_count; ++p) {
      loupe_param_info pi = LOUPE_PARAM_INFO_INIT;
      if (loupe_task_param(m.session, index, p, &pi) != LOUPE_OK) continue;
      const std::string k = pi.name;
      if (k == "steps") loupe_request_set_int(rq, "steps", std::max<int64_t>(2, int64_t(pi.min)));
      if (k == "max_new_tokens") loupe_request_set_int(rq, "max_new_tokens", std::max<int64_t>(4, int64_t(pi.min)));
      if (k == "num_beams") loupe_request_set_int(rq, "num_beams", 1);
      if (k == "seed") loupe_request_set_int(rq, "seed", int64_t(rng() % 1000));
      if ((k == "width" || k == "height") && pi.min <= 64 && pi.max >= 64) loupe_request_set_int(rq, k.c_str(), 64);
    }
    return rq;
  };

  // The canceller: another thread cancels jobs the main thread marked, after a random delay.
  std::mutex mu;
  std::condition_variable cv;
  std::deque<InFlight*> to_cancel;
  bool stop = false;
  std::thread canceller([&] {
    std::mt19937 r(7);
    std::unique_lock<std::mutex> lock(mu);
    while (true) {
      cv.wait(lock, [&] { return stop || !to_cancel.empty(); });
      if (stop && to_cancel.empty()) return;
      InFlight* f = to_cancel.front();
      to_cancel.pop_front();
      lock.unlock();
      std::this_thread::sleep_for(std::chrono::milliseconds(r() % 40));
      lock.lock();
      if (f->job) loupe_job_cancel(f->job);  // job still owned (the main thread frees under mu)
      cv.notify_all();
    }
  });

  nlohmann::json samples = nlohmann::json::array();
  const auto t0 = std::chrono::steady_clock::now();
  auto seconds = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };
  samples.push_back({{"job", 0}, {"t_s", 0.0}, {"rss_mb", rss_bytes() / 1048576.0}});
  std::deque<InFlight*> running;
  int done = 0, submitted = 0;
  auto finish = [&] {
    InFlight* f = running.front();
    running.pop_front();
    const loupe_status w = loupe_job_wait(f->job, 600000);
    loupe_status s = loupe_job_status(f->job);
    const std::string message = s == LOUPE_OK ? "" : loupe_last_error();
    if (w != LOUPE_OK) {
      failures.push_back(f->what + ": still running after 600 s");
      s = LOUPE_ERROR_TIMEOUT;
    }
    if (s == LOUPE_OK) {
      loupe_result* res = nullptr;
      if (loupe_job_take_result(&res, f->job) != LOUPE_OK || !res || !loupe_result_json(res))
        failures.push_back(f->what + ": OK without a result");
      loupe_result_free(res);
    }
    ++statuses[f->what + ": " + status_name(s)];
    const bool ok = s == LOUPE_OK || (s == LOUPE_ERROR_CANCELLED && f->cancel_asked);
    if (!ok) failures.push_back(f->what + ": " + status_name(s) + ": " + message);
    {
      std::lock_guard<std::mutex> lock(mu);
      // the canceller may still hold f in its queue: it only touches f->job under mu
      loupe_job_free(f->job);
      f->job = nullptr;
    }
    ++done;
    if (done % 10 == 0) samples.push_back({{"job", done}, {"t_s", seconds()}, {"rss_mb", rss_bytes() / 1048576.0}});
    if (done % 100 == 0) std::fprintf(stderr, "soak: %d/%d jobs, rss %.0f MB\n", done, jobs, rss_bytes() / 1048576.0);
  };
  std::vector<InFlight*> all;  // freed at the end (the canceller may still hold pointers until then)
  while (submitted < jobs) {
    Model& m = models[rng() % models.size()];
    if (submitted > 0 && reopen_every > 0 && submitted % reopen_every == 0) {
      // Close a session while jobs of it may be queued: they end CANCELLED (documented).
      Model& c = models[rng() % models.size()];
      if (c.session) {
        {
          std::lock_guard<std::mutex> lock(mu);
          for (InFlight* f : running)
            if (f->what.rfind(c.name + " ", 0) == 0) f->cancel_asked = true;
        }
        loupe_session_close(c.session);
        c.session = nullptr;
        ++closes;
      }
    }
    if (!open(m) || m.tasks.empty()) {
      if (failures.size() > 20) break;
      ++submitted;
      continue;
    }
    std::string task;
    const size_t index = m.tasks[rng() % m.tasks.size()];
    loupe_request* rq = request(m, index, &task);
    auto* f = new InFlight{nullptr, m.name + " " + task};
    all.push_back(f);
    const loupe_status s = rq ? loupe_session_submit(&f->job, m.session, rq, nullptr, nullptr) : LOUPE_ERROR_INVALID_ARGUMENT;
    loupe_request_free(rq);
    ++submitted;
    if (s != LOUPE_OK) {
      ++statuses[f->what + " (submit): " + status_name(s)];
      failures.push_back(f->what + " (submit): " + status_name(s) + ": " + loupe_last_error());
      continue;
    }
    running.push_back(f);
    if (cancel_every > 0 && rng() % cancel_every == 0) {
      std::lock_guard<std::mutex> lock(mu);
      f->cancel_asked = true;
      to_cancel.push_back(f);
      cv.notify_all();
    }
    while (running.size() >= in_flight_max) finish();
  }
  while (!running.empty()) finish();
  {
    std::lock_guard<std::mutex> lock(mu);
    stop = true;
    cv.notify_all();
  }
  canceller.join();
  for (InFlight* f : all) delete f;
  for (auto& m : models) loupe_session_close(m.session);
  loupe_runtime_free(rt);
  samples.push_back({{"job", done}, {"t_s", seconds()}, {"rss_mb", rss_bytes() / 1048576.0}});

  // Stable: the resident set after the warm-up (10% of the jobs) against the end.
  double warm = samples.front()["rss_mb"], peak = 0;
  for (const auto& s : samples) {
    if (s["job"].get<int>() <= std::max(10, jobs / 10)) warm = s["rss_mb"];
    peak = std::max(peak, s["rss_mb"].get<double>());
  }
  double end_before_free = warm;
  for (const auto& s : samples)
    if (s["job"].get<int>() == done && &s != &samples.back()) end_before_free = s["rss_mb"];
  const double growth = end_before_free - warm;
  if (growth > max_growth_mb)
    failures.push_back("resident set grew " + std::to_string(growth) + " MB after the warm-up (limit " +
                       std::to_string(max_growth_mb) + ")");
  nlohmann::json j = {{"benchmark", "soak"},
                      {"loupe_version", loupe_version()},
                      {"device", "cpu"},
                      {"hardware_threads", std::thread::hardware_concurrency()},
                      {"jobs", jobs},
                      {"done", done},
                      {"budget_mb", budget >> 20},
                      {"cancel_every", cancel_every},
                      {"reopen_every", reopen_every},
                      {"in_flight", in_flight_max},
                      {"sessions_opened", opens},
                      {"sessions_closed", closes},
                      {"seconds", seconds()},
                      {"rss_after_warmup_mb", warm},
                      {"rss_end_mb", end_before_free},
                      {"rss_peak_mb", peak},
                      {"rss_growth_mb", growth},
                      {"statuses", statuses},
                      {"failures", failures},
                      {"rss", samples}};
  std::ofstream(out) << j.dump(1) << "\n";
  std::printf("%s\n", j.dump(1).substr(0, 4000).c_str());
  for (const auto& f : failures) std::fprintf(stderr, "soak: FAILED: %s\n", f.c_str());
  return failures.empty() ? 0 : 1;
}
