"""What the Python reference runs (bench/*_reference.py) measure alike, and as the C++ benchmarks do
(bench/bench_util.h): median wall time after warm-up runs, synchronised with the GPU, and peak device
memory sampled every millisecond: the device's used memory on a GPU, the process's resident set on
the CPU."""
import threading, time

import torch


def sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timeit(fn, warm, n, cpu=None):
    """Median wall seconds; cpu (a dict) gets "s", the median process CPU time of the same runs."""
    for _ in range(warm):
        fn()
    sync()
    ts, cs = [], []
    for _ in range(n):
        t, c = time.perf_counter(), time.process_time(); fn(); sync()
        ts.append(time.perf_counter() - t); cs.append(time.process_time() - c)
    ts.sort(); cs.sort()
    if cpu is not None:
        cpu["s"] = cs[len(cs) // 2]
    return ts[len(ts) // 2]


def rss_bytes(peak=False):
    """The process's resident set now (VmRSS), or its peak so far (VmHWM), in bytes."""
    key = "VmHWM:" if peak else "VmRSS:"
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
    return 0


class Peak:
    """with Peak() as p: ...  -> p.peak, the most device memory in use meanwhile (bytes)."""

    def __enter__(self):
        self.peak, self.stop = 0, False

        def loop():
            while not self.stop:
                if torch.cuda.is_available():
                    free, total = torch.cuda.mem_get_info()
                    self.peak = max(self.peak, total - free)
                else:
                    self.peak = max(self.peak, rss_bytes())
                time.sleep(0.001)
        self.t = threading.Thread(target=loop)
        self.t.start()
        return self

    def __exit__(self, *a):
        self.stop = True
        self.t.join()
