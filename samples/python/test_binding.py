#!/usr/bin/env python3
"""Tests of the ctypes binding against the real library (run by CTest)."""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import loupe  # noqa: E402


class BindingTest(unittest.TestCase):
    def test_version(self):
        self.assertEqual(loupe.version().count("."), 2)

    def test_selftest_with_progress(self):
        seen = []
        with loupe.Runtime(device="cpu") as rt:
            res = rt.selftest(progress=lambda s, t, stage, _: seen.append(stage), matmul_size=64, alloc_mib=1)
            self.assertEqual(res.numbers["ok"], 1)
            self.assertEqual(res.numbers["matmul_max_abs_error"], 0)
            self.assertIn("self-test passed", res.text)
        self.assertIn("matmul", seen)

    def test_progress_returning_false_cancels(self):
        with loupe.Runtime(device="cpu") as rt:
            with self.assertRaises(loupe.LoupeError) as cm:
                rt.selftest(progress=lambda s, t, stage, _: s < 2, matmul_size=64, alloc_mib=1, iterations=100000)
            self.assertEqual(cm.exception.status_name, "CANCELLED")

    def test_errors_carry_the_sdk_message(self):
        with self.assertRaises(loupe.LoupeError) as cm:
            loupe.Runtime(device="gpu9")
        self.assertEqual(cm.exception.status_name, "INVALID_ARGUMENT")
        self.assertIn("gpu9", cm.exception.message)
        with loupe.Runtime(device="cpu") as rt:
            with self.assertRaises(loupe.LoupeError) as cm:
                rt.open_session("/no/such/model")
            self.assertEqual(cm.exception.status_name, "NOT_FOUND")
            self.assertIn("/no/such/model", str(cm.exception))
            self.assertTrue(rt.inspect("/no/such/model")["problems"])
            with self.assertRaises(loupe.LoupeError) as cm:
                rt.selftest(matmul_size=1)
            self.assertIn("matmul_size", cm.exception.message)

    def test_session_on_the_tiny_florence2(self):
        model = os.path.join(os.environ["LOUPE_FIXTURES_DIR"], "florence2", "tiny")
        pixels = (40, 30, bytes(range(256)) * (40 * 30 * 3 // 256) + bytes(40 * 30 * 3 % 256), 3)
        with loupe.Runtime(device="cpu") as rt, rt.open_session(model) as s:
            info = s.describe()
            self.assertEqual(info["family"], "florence2")
            self.assertIn("detect", info["tasks"])
            res = s.run("detect", image=pixels, max_new_tokens=10)
            self.assertEqual(res.task, "detect")
            for b in res.boxes:
                self.assertIsInstance(b.label, str)
            with self.assertRaises(loupe.LoupeError) as cm:
                s.run("ground", image=pixels)
            self.assertIn("needs a text", cm.exception.message)

    def test_inpaint_on_the_tiny_sd_model(self):
        """Inpainting through the binding: numpy in and out when numpy is there, raw bytes otherwise;
        the pixels outside the mask come back unchanged."""
        model = os.path.join(os.environ["LOUPE_FIXTURES_DIR"], "sd", "tiny-sd15-inpaint")
        w, h = 64, 48
        rgb = bytes((x * 3 + y * 5 + c * 70) % 256 for y in range(h) for x in range(w) for c in range(3))
        mask = bytes(255 if 16 <= x < 40 and 10 <= y < 30 else 0 for y in range(h) for x in range(w))
        with loupe.Runtime(device="cpu") as rt, rt.open_session(model) as s:
            steps = []
            res = s.run("inpaint", image=(w, h, rgb, 3), mask=(w, h, mask, 1), prompt="a cat", steps=3, seed=5,
                        only_masked=1, feather=2.0, progress=lambda step, total, stage, preview: steps.append(step))
            self.assertEqual(steps, [1, 2, 3])
            self.assertEqual(res.numbers["seed"], 5)
            out = res.images[0]
            data = out.tobytes() if hasattr(out, "tobytes") else out[2]
            self.assertEqual(len(data), w * h * 3)
            for y in range(h):
                for x in range(w):
                    if not (16 <= x < 40 and 10 <= y < 30):
                        i = (y * w + x) * 3
                        self.assertEqual(data[i:i + 3], rgb[i:i + 3], (x, y))
            with self.assertRaises(loupe.LoupeError) as cm:
                s.run("inpaint", image=(w, h, rgb, 3), prompt="a cat")
            self.assertIn("needs a mask", cm.exception.message)

    def test_diagnostics(self):
        with loupe.Runtime(device="cpu") as rt:
            d = rt.diagnostics()
            self.assertEqual(d["devices"][0]["type"], "cpu")
            self.assertIn("libtorch", d["build"])


if __name__ == "__main__":
    unittest.main()
