#!/usr/bin/env python3
"""loupe-batch (tools/loupe-batch) on local Dask clusters of 2 worker processes, with the tiny
Florence-2 fixture: every item exactly once, results equal to the binding's one item at a time, a
killed worker's batch rerun elsewhere, resume after a killed run. Run by CTest (LOUPE_LIBRARY,
LOUPE_FIXTURES_DIR); no timings are checked."""
import collections
import json
import os
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
TOOL_DIR = os.path.join(REPO, "tools", "loupe-batch")
TOOL = os.path.join(TOOL_DIR, "loupe-batch")
# On sys.path before any worker process is spawned: spawned workers inherit it.
sys.path[:0] = [TOOL_DIR, os.path.join(REPO, "samples", "python")]
os.environ["LOUPE_NUM_THREADS"] = "1"  # the reference and the workers compute alike

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

import loupe  # noqa: E402
import loupe_batch  # noqa: E402

MODEL = os.path.join(os.environ["LOUPE_FIXTURES_DIR"], "florence2", "tiny")
TASK, PARAMS = "caption", {"max_new_tokens": 6}
SETS = ["--set", "max_new_tokens=6"]
N = 12
RUN_TIMEOUT = 150


def read_records(out):
    with open(os.path.join(out, "results.jsonl"), "rb") as f:
        return [json.loads(line) for line in f.read().splitlines()]


def read_summary(out):
    with open(os.path.join(out, "summary.json")) as f:
        return json.load(f)


def cli(*args):
    return [sys.executable, TOOL, TASK, "--model", MODEL, "--quiet", "--threads", "1"] + SETS + list(args)


def run_cli(*args):
    p = subprocess.run(cli(*args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=RUN_TIMEOUT)
    return p.returncode, p.stdout


def wait_for_records(out, n, proc, timeout=RUN_TIMEOUT):
    path = os.path.join(out, "results.jsonl")
    end = time.time() + timeout
    while time.time() < end:
        if os.path.exists(path):
            with open(path, "rb") as f:
                if f.read().count(b"\n") >= n:
                    return
        if proc.poll() is not None:
            raise AssertionError("loupe-batch ended (status %s) before %d records" % (proc.returncode, n))
        time.sleep(0.05)
    raise AssertionError("no %d records after %d s" % (n, timeout))


class BatchTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="loupe-batch-test-")
        cls.dir = cls.tmp.name
        cls.images = os.path.join(cls.dir, "images")
        os.makedirs(cls.images)
        rng = np.random.RandomState(7)
        cls.names = []
        for i in range(N):
            w, h = rng.randint(24, 96), rng.randint(24, 96)
            name = "img%02d.png" % i
            Image.fromarray((rng.rand(h, w, 3) * 255).astype(np.uint8)).save(os.path.join(cls.images, name))
            cls.names.append(name)
        # The reference: the same task, one item at a time, through the binding.
        cls.reference = {}
        with loupe.Runtime(device="cpu") as rt, rt.open_session(MODEL) as s:
            for name in cls.names:
                with Image.open(os.path.join(cls.images, name)) as im:
                    pixels = np.asarray(im.convert("RGB"))
                cls.reference[name] = s.run(TASK, image=pixels, **PARAMS).json

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def check_complete(self, records, expected_inputs, name_of):
        """Every expected input exactly once, each result equal to the reference."""
        counts = collections.Counter(r["input"] for r in records)
        self.assertEqual(sorted(counts), sorted(expected_inputs))
        self.assertEqual([k for k, c in counts.items() if c != 1], [], "items recorded more than once")
        self.assertEqual(len({r["key"] for r in records}), len(records))
        for r in records:
            self.assertIsNone(r["error"], r["input"])
            self.assertEqual(r["task"], TASK)
            self.assertEqual(r["parameters"], PARAMS)
            self.assertEqual(r["result"], self.reference[name_of(r["input"])], r["input"])
            self.assertEqual(r["session_opens"], 1, "a worker opened the model more than once")

    def test_image_outputs_go_to_files_named_in_the_record(self):
        # (no tiny model of this suite returns images quickly: the writer is tested on its own)
        out = os.path.join(self.dir, "out-images")
        mask = (np.arange(30 * 20).reshape(30, 20, 1) % 256).astype(np.uint8)
        rgb = np.random.RandomState(3).randint(0, 256, (16, 24, 3)).astype(np.uint8)
        rec = {"key": "0123456789abcdef", "input": "/x/shard.tar::a/b c.jpg", "images": [],
               "_png": [loupe_batch._png(mask), loupe_batch._png(rgb)]}
        loupe_batch._save_images(out, rec)
        self.assertNotIn("_png", rec)
        self.assertEqual(rec["images"], ["images/b_c-0123456789-0.png", "images/b_c-0123456789-1.png"])
        for rel, expected in zip(rec["images"], (mask[:, :, 0], rgb)):
            with Image.open(os.path.join(out, rel)) as im:
                np.testing.assert_array_equal(np.asarray(im), expected)
        self.assertEqual(sorted(os.listdir(os.path.join(out, "images"))), [os.path.basename(r) for r in rec["images"]])

    def test_parameters_are_typed_by_the_task_table(self):
        rc, out = run_cli("--input", self.images, "--output", os.path.join(self.dir, "refused"),
                          "--set", "num_beams=1.5")
        self.assertEqual(rc, 2, out)
        self.assertIn("num_beams: '1.5' is not an int", out)
        rc, out = run_cli("--input", self.images, "--output", os.path.join(self.dir, "refused"), "--set", "nosuch=1")
        self.assertEqual(rc, 2, out)
        self.assertIn("has no parameter 'nosuch'", out)
        self.assertIn("max_new_tokens", out)
        self.assertFalse(os.path.exists(os.path.join(self.dir, "refused", "results.jsonl")))

    def test_two_local_workers_process_every_item_once_and_record_failures(self):
        folder = os.path.join(self.dir, "with-a-bad-file")
        os.makedirs(folder)
        for name in self.names:
            os.symlink(os.path.join(self.images, name), os.path.join(folder, name))
        with open(os.path.join(folder, "broken.png"), "wb") as f:
            f.write(b"\x89PNG not really")
        out = os.path.join(self.dir, "out-local")
        rc, log = run_cli("--input", folder, "--output", out, "--workers", "2")
        self.assertEqual(rc, 1, log)  # one item failed: recorded, the run went on
        records = read_records(out)
        bad = [r for r in records if r["input"].endswith("broken.png")]
        self.assertEqual(len(bad), 1)
        self.assertIsNone(bad[0]["result"])
        self.assertIn("broken.png", bad[0]["error"])
        good = [r for r in records if r is not bad[0]]
        self.check_complete(good, [os.path.join(folder, n) for n in self.names], os.path.basename)
        s = read_summary(out)
        self.assertEqual((s["processed"], s["ok"], s["failed"], s["left"]), (N + 1, N, 1, 0))
        self.assertEqual(s["workers"], 2)
        self.assertEqual(len({r["worker"] for r in records}), 2, "both workers should have had batches")
        self.assertIn("12 ok, 1 failed", log)
        # A rerun skips everything (failed items too, unless --retry-failed).
        rc, log = run_cli("--input", folder, "--output", out, "--workers", "2")
        self.assertEqual(rc, 0, log)
        self.assertEqual(read_summary(out)["skipped_already_done"], N + 1)
        self.assertEqual(len(read_records(out)), N + 1)

    def test_a_killed_workers_batch_is_rerun_on_another(self):
        from distributed import Client, LocalCluster

        # .tar shards as the input (two of 6 images), a cluster started apart (--scheduler).
        shards = []
        for k in range(2):
            path = os.path.join(self.dir, "shard-%d.tar" % k)
            with tarfile.open(path, "w") as tf:
                for name in self.names[6 * k:6 * k + 6]:
                    tf.add(os.path.join(self.images, name), arcname="photos/" + name)
            shards.append(path)
        out = os.path.join(self.dir, "out-killed")
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, memory_limit=0,
                          dashboard_address=None, env={"LOUPE_NUM_THREADS": "1"}) as cluster, Client(cluster) as client:
            pids = client.run(os.getpid)
            proc = subprocess.Popen(cli("--input", os.path.join(self.dir, "shard-*.tar"), "--output", out,
                                        "--scheduler", cluster.scheduler_address, "--batch-size", "2"),
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            try:
                wait_for_records(out, 2, proc)
                victim, in_flight = None, []
                end = time.time() + 30
                while victim is None and time.time() < end:
                    for addr, keys in client.processing().items():
                        if keys and addr in pids:
                            victim, in_flight = addr, [k for k in keys if str(k).startswith("loupe-batch-")]
                            break
                    time.sleep(0.02)
                self.assertIsNotNone(victim, "no worker was busy")
                os.kill(pids[victim], signal.SIGKILL)
                # A batch may finish on the victim between the look at processing() and the kill;
                # its result, already sent, still arrives. What arrives within a second of the kill
                # is all a dead worker can deliver: nothing of it may come later.
                time.sleep(1.0)
                with open(os.path.join(out, "results.jsonl"), "rb") as f:
                    lines = f.read().split(b"\n")[:-1]  # complete lines only
                delivered = {(r["batch"], r["worker"]) for r in map(json.loads, lines)}
                log, _ = proc.communicate(timeout=RUN_TIMEOUT)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        self.assertEqual(proc.returncode, 0, log)
        records = read_records(out)
        expected = ["%s::photos/%s" % (shards[i // 6], n) for i, n in enumerate(self.names)]
        self.check_complete(records, expected, lambda i: i.rsplit("/", 1)[-1])
        killed = "%s:%d" % (socket.gethostname(), pids[victim])
        rerun = [r for r in records if r["batch"] in in_flight]
        self.assertTrue(rerun, "the batches in flight on the killed worker are in the results")
        for r in rerun:
            if r["worker"] == killed:  # only if it had finished there before the kill
                self.assertIn((r["batch"], killed), delivered, "a batch of the killed worker came back from it after it died")

    def test_resume_after_a_killed_run_redoes_nothing(self):
        listing = os.path.join(self.dir, "list.txt")
        with open(listing, "w") as f:
            f.write("# the images, relative to this file\n")
            f.writelines("images/%s\n" % n for n in self.names)
        out = os.path.join(self.dir, "out-resume")
        args = ("--input", listing, "--output", out, "--workers", "2", "--batch-size", "1")
        proc = subprocess.Popen(cli(*args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            wait_for_records(out, 4, proc)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)  # the client and its workers, as in a power cut
            proc.wait()
        path = os.path.join(out, "results.jsonl")
        with open(path, "rb") as f:
            before = f.read()
        before = before[: before.rfind(b"\n") + 1]
        done_before = {json.loads(line)["input"] for line in before.splitlines()}
        self.assertGreaterEqual(len(done_before), 4)
        self.assertLess(len(done_before), N, "the run was killed too late to test resuming")
        with open(path, "ab") as f:
            f.write(b'{"key": "torn by a crash mid-wri')  # a torn last line is dropped, never read
        rc, log = run_cli(*args)
        self.assertEqual(rc, 0, log)
        self.assertIn("dropped 1 torn line", log)
        with open(path, "rb") as f:
            after = f.read()
        self.assertTrue(after.startswith(before), "records written before the kill were changed")
        records = read_records(out)
        self.check_complete(records, [os.path.join(self.images, n) for n in self.names], os.path.basename)
        redone = [r["input"] for r in records[len(done_before):] if r["input"] in done_before]
        self.assertEqual(redone, [])
        s = read_summary(out)
        self.assertEqual(s["skipped_already_done"], len(done_before))
        self.assertEqual(s["processed"], N - len(done_before))

    def test_a_manifest_gives_each_item_its_own_text_and_parameters(self):
        d = os.path.join(self.dir, "manifest")
        os.makedirs(d)
        manifest = os.path.join(d, "items.jsonl")

        def rel(i):
            return os.path.relpath(os.path.join(self.images, self.names[i]), d)

        lines = [{"image": rel(0), "text": "a red square"},
                 {"image": rel(1), "text": "two birds", "set": {"max_new_tokens": 4}},
                 {"image": rel(0), "text": "a tree"},  # the same image with another text: an item of its own
                 {"image": rel(2)}]  # the command line's --text
        with open(manifest, "w") as f:
            f.write("# per-item grounding\n\n")
            f.writelines(json.dumps(line) + "\n" for line in lines)
        out = os.path.join(self.dir, "out-manifest")
        cmd = [sys.executable, TOOL, "ground", "--model", MODEL, "--quiet", "--threads", "1", "--set",
               "max_new_tokens=6", "--text", "a cat", "--input", manifest, "--output", out, "--workers", "2"]
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=RUN_TIMEOUT)
        self.assertEqual(p.returncode, 0, p.stdout)
        records = read_records(out)
        self.assertEqual(len(records), 4)
        by_item = {(r["input"], r["parameters"]["text"]): r for r in records}
        expected = [(0, "a red square", 6), (1, "two birds", 4), (0, "a tree", 6), (2, "a cat", 6)]
        with loupe.Runtime(device="cpu") as rt, rt.open_session(MODEL) as s:
            for i, text, n in expected:
                path = os.path.join(self.images, self.names[i])
                with Image.open(path) as im:
                    pixels = np.asarray(im.convert("RGB"))
                r = by_item[(path, text)]
                self.assertIsNone(r["error"])
                self.assertEqual(r["parameters"], {"text": text, "max_new_tokens": n})
                self.assertEqual(r["result"], s.run("ground", image=pixels, text=text, max_new_tokens=n).json)
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=RUN_TIMEOUT)
        self.assertEqual(p.returncode, 0, p.stdout)
        self.assertEqual(read_summary(out)["skipped_already_done"], 4)
        self.assertEqual(len(read_records(out)), 4)

    def test_a_bad_manifest_line_is_named_before_anything_starts(self):
        d = os.path.join(self.dir, "bad-manifest")
        os.makedirs(d)
        image = os.path.relpath(os.path.join(self.images, self.names[0]), d)
        cases = [({"image": image, "set": {"num_beams": 1.5}}, "num_beams: '1.5' is not an int"),
                 ({"image": image, "mask": "nope.png"}, "mask 'nope.png' does not exist"),
                 ({"image": image, "region": [1, 2, 3]}, '"region" must be [x0, y0, x1, y1]'),
                 ({"image": image, "colour": "red"}, "unknown field(s) colour"),
                 ({"text": "no image"}, '"image": a path'),
                 ({"image": image}, "task 'ground' needs a text")]
        for n, (line, message) in enumerate(cases):
            manifest = os.path.join(d, "items%d.jsonl" % n)
            with open(manifest, "w") as f:
                f.write(json.dumps({"image": image, "text": "fine"}) + "\n" + json.dumps(line) + "\n")
            out = os.path.join(d, "out%d" % n)
            p = subprocess.run([sys.executable, TOOL, "ground", "--model", MODEL, "--quiet", "--input", manifest,
                                "--output", out], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               timeout=RUN_TIMEOUT)
            self.assertEqual(p.returncode, 2, p.stdout)
            self.assertIn("items%d.jsonl:2: " % n, p.stdout)
            self.assertIn(message, p.stdout)
            self.assertFalse(os.path.exists(os.path.join(out, "results.jsonl")))
        with open(manifest, "w") as f:  # the parsed form of a good line with a region
            f.write(json.dumps({"image": image, "region": [1, 2.5, 30, 40], "set": {"do_sample": True}}) + "\n")
        items = loupe_batch._manifest_items(manifest)
        self.assertEqual(items[0]["region"], [1.0, 2.5, 30.0, 40.0])
        self.assertEqual(items[0]["sets"], ["do_sample=true"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
