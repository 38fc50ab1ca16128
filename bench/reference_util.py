"""What the Python reference runs (bench/*_reference.py) measure alike, and as the C++ benchmarks do
(bench/bench_util.h): median wall time after warm-up runs, synchronised with the GPU, and peak device
memory sampled from the device's used memory every millisecond."""
import threading, time

import torch


def sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timeit(fn, warm, n):
    for _ in range(warm):
        fn()
    sync()
    ts = []
    for _ in range(n):
        t = time.perf_counter(); fn(); sync(); ts.append(time.perf_counter() - t)
    ts.sort()
    return ts[len(ts) // 2]


class Peak:
    """with Peak() as p: ...  -> p.peak, the most device memory in use meanwhile (bytes)."""

    def __enter__(self):
        self.peak, self.stop = 0, False

        def loop():
            while not self.stop:
                if torch.cuda.is_available():
                    free, total = torch.cuda.mem_get_info()
                    self.peak = max(self.peak, total - free)
                time.sleep(0.001)
        self.t = threading.Thread(target=loop)
        self.t.start()
        return self

    def __exit__(self, *a):
        self.stop = True
        self.t.join()
