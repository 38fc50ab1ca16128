// Concurrency through the C ABI: jobs submitted from several threads, cancel from another thread
// mid-job, and the runtime freed while jobs are queued and running.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "loupe/loupe.h"

namespace {

loupe_runtime* make_runtime() {
  loupe_runtime_options ro = LOUPE_RUNTIME_OPTIONS_INIT;
  ro.device = "cpu";
  loupe_runtime* rt = nullptr;
  EXPECT_EQ(loupe_runtime_create(&rt, &ro), LOUPE_OK) << loupe_last_error();
  return rt;
}

loupe_request* selftest(int64_t iterations) {
  loupe_request* rq = nullptr;
  EXPECT_EQ(loupe_request_create(&rq, "selftest"), LOUPE_OK);
  loupe_request_set_int(rq, "matmul_size", 64);
  loupe_request_set_int(rq, "alloc_mib", 1);
  loupe_request_set_int(rq, "iterations", iterations);
  return rq;
}

}  // namespace

TEST(AbiThreads, JobsFromSeveralThreadsAllComplete) {
  loupe_runtime* rt = make_runtime();
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 3; ++i) {
        loupe_request* rq = selftest(2);
        loupe_job* job = nullptr;
        if (loupe_runtime_submit(&job, rt, rq, nullptr, nullptr) == LOUPE_OK) {
          loupe_request_free(rq);
          loupe_job_wait(job, -1);
          loupe_result* res = nullptr;
          if (loupe_job_take_result(&res, job) == LOUPE_OK) {
            double v = 0;
            if (loupe_result_number(res, "ok", &v) == LOUPE_OK && v == 1.0) ++ok;
            loupe_result_free(res);
          }
          loupe_job_free(job);
        } else {
          loupe_request_free(rq);
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 12);
  loupe_runtime_free(rt);
}

TEST(AbiThreads, CancelFromAnotherThreadMidJob) {
  loupe_runtime* rt = make_runtime();
  loupe_request* rq = selftest(100000);
  loupe_job* job = nullptr;
  ASSERT_EQ(loupe_runtime_submit(&job, rt, rq, nullptr, nullptr), LOUPE_OK);
  // wait until it runs
  loupe_job_state state = LOUPE_JOB_QUEUED;
  float fraction = 0;
  while (state != LOUPE_JOB_DONE && (state != LOUPE_JOB_RUNNING || fraction <= 0.0f)) {
    loupe_job_poll(job, &state, &fraction);
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_EQ(state, LOUPE_JOB_RUNNING) << loupe_last_error();
  std::thread canceller([job] { loupe_job_cancel(job); });
  canceller.join();
  EXPECT_EQ(loupe_job_wait(job, 30000), LOUPE_OK);
  EXPECT_EQ(loupe_job_status(job), LOUPE_ERROR_CANCELLED);
  loupe_job_free(job);
  loupe_request_free(rq);
  // the runtime is still usable afterwards
  rq = selftest(1);
  ASSERT_EQ(loupe_runtime_submit(&job, rt, rq, nullptr, nullptr), LOUPE_OK);
  EXPECT_EQ(loupe_job_wait(job, -1), LOUPE_OK);
  EXPECT_EQ(loupe_job_status(job), LOUPE_OK);
  loupe_job_free(job);
  loupe_request_free(rq);
  loupe_runtime_free(rt);
}

TEST(AbiThreads, RuntimeFreedWhileThreadsWait) {
  loupe_runtime* rt = make_runtime();
  loupe_request* rq = selftest(100000);
  std::vector<loupe_job*> jobs(4, nullptr);
  for (auto& j : jobs) ASSERT_EQ(loupe_runtime_submit(&j, rt, rq, nullptr, nullptr), LOUPE_OK);
  std::vector<std::thread> waiters;
  std::atomic<int> cancelled{0};
  for (auto* j : jobs)
    waiters.emplace_back([j, &cancelled] {
      loupe_job_wait(j, -1);
      if (loupe_job_status(j) == LOUPE_ERROR_CANCELLED) ++cancelled;
    });
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  loupe_runtime_free(rt);
  for (auto& w : waiters) w.join();
  EXPECT_EQ(cancelled.load(), 4);
  for (auto* j : jobs) loupe_job_free(j);
  loupe_request_free(rq);
}
