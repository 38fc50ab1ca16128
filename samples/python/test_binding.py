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

    def test_diagnostics(self):
        with loupe.Runtime(device="cpu") as rt:
            d = rt.diagnostics()
            self.assertEqual(d["devices"][0]["type"], "cpu")
            self.assertIn("libtorch", d["build"])


if __name__ == "__main__":
    unittest.main()
