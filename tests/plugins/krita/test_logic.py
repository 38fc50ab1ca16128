#!/usr/bin/env python3
"""The Krita plug-in's logic without Krita (plugins/krita/loupe_krita: forms, prepare, pixels,
results, engine, locate), against the real library's task description and the tiny SD fixture.
Run by CTest with Debian's python3 (numpy), LOUPE_LIBRARY and LOUPE_FIXTURES_DIR set."""
import os
import sys
import time
import types
import unittest
import xml.etree.ElementTree as ET

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "plugins", "krita"))
sys.path.insert(0, os.path.join(ROOT, "samples", "python"))
import loupe  # noqa: E402
from loupe_krita import engine, forms, locate, pixels, prepare, results  # noqa: E402


def fixture(*parts):
    return os.path.join(os.environ["LOUPE_FIXTURES_DIR"], *parts)


def task(name="t", inputs=(), required=(), outputs=(), params=(), text=None, label=None):
    t = {"name": name, "label": label or name.capitalize(), "help": "", "group": "edit", "runtime": False,
         "inputs": list(inputs), "required": list(required), "outputs": list(outputs), "params": list(params)}
    if text:
        t["text"] = text
    return t


class FormsTest(unittest.TestCase):
    def test_every_described_parameter_gets_a_field(self):
        """Every task of the library's table: one field per parameter, of its type, default inside
        the range; basic fields before advanced ones (the docker has no per-task code)."""
        table = loupe.tasks()
        self.assertGreater(len(table), 5)
        for t in table:
            f = forms.form(t)
            self.assertEqual(sorted(x["name"] for x in f["fields"]), sorted(p["name"] for p in t["params"]), t["name"])
            adv = [x["advanced"] for x in f["fields"]]
            self.assertEqual(adv, sorted(adv), t["name"])
            for x, p in ((x, next(p for p in t["params"] if p["name"] == x["name"])) for x in f["fields"]):
                self.assertEqual(x["kind"], forms.KINDS[p["type"]], (t["name"], p["name"]))
                if x["kind"] in ("int", "float"):
                    self.assertLessEqual(x["min"], x["default"], (t["name"], p["name"]))
                    self.assertLessEqual(x["default"], x["max"], (t["name"], p["name"]))
                if x["kind"] == "choice":
                    self.assertIn(x["default"], x["choices"])
            self.assertEqual(f["text"], t.get("text"))
        self.assertFalse(any(t.get("runtime") for t in forms.offered(table)))

    def test_a_new_parameter_needs_no_code(self):
        t = task(params=[{"name": "wobble", "type": "float", "label": "Wobble", "help": "how much", "unit": "px",
                          "default": 0.25, "min": 0, "max": 2, "step": 0.05, "advanced": False},
                         {"name": "mode", "type": "choice", "label": "Mode", "default": "b", "choices": ["a", "b"]},
                         {"name": "on", "type": "bool", "label": "On", "default": False, "advanced": True}],
                 text={"key": "words", "label": "words", "help": ""})
        f = forms.form(t)
        self.assertEqual([x["name"] for x in f["fields"]], ["wobble", "mode", "on"])
        self.assertEqual(f["fields"][0]["decimals"], 2)
        self.assertEqual(f["fields"][0]["help"], "how much (px)")
        # Only what differs from the defaults is sent; the text goes under the task's text key.
        self.assertEqual(forms.collect(t, {"wobble": 0.25, "mode": "a", "on": True}, "hello"),
                         {"mode": "a", "on": True, "words": "hello"})
        self.assertEqual(forms.collect(t, {"wobble": 9}), {"wobble": 2.0})  # clamped to the range
        with self.assertRaises(ValueError):
            forms.collect(t, {"mode": "z"})

    def test_model_fitted_defaults_are_not_sent(self):
        with loupe.Runtime(device="cpu") as rt, rt.open_session(fixture("sd", "tiny-sd15-inpaint")) as s:
            t = s.task("inpaint")
            defaults = {x["name"]: x["default"] for x in forms.form(t)["fields"]}
            self.assertEqual(forms.collect(t, defaults, "a cat"), {t["text"]["key"]: "a cat"})

    def test_required_inputs(self):
        t = task(inputs=["image", "mask"], required=["image", "mask"], outputs=["images"], label="Repaint")
        self.assertIn("needs a selection", forms.gather(t, False)["problem"])
        self.assertIsNone(forms.gather(t, True)["problem"])
        self.assertTrue(forms.gather(t, True)["mask"])


class PixelsTest(unittest.TestCase):
    def test_bgra_round_trip(self):
        rgba = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
        bgra = pixels.rgba_to_bgra_bytes(rgba)
        self.assertEqual(bgra[:4], bytes([2, 1, 0, 3]))
        np.testing.assert_array_equal(pixels.bgra_to_rgba(bgra, 3, 2), rgba)

    def test_bounds_grow_crop(self):
        m = np.zeros((10, 20), np.uint8)
        self.assertIsNone(pixels.bounds(m))
        m[2:5, 3:9] = 40
        self.assertEqual(pixels.bounds(m), (3, 2, 9, 5))
        self.assertEqual(pixels.grow((3, 2, 9, 5), 4, 20, 10), (0, 0, 13, 9))
        self.assertEqual(pixels.crop(m, (3, 2, 9, 5)).shape, (3, 6))

    def test_blend_keeps_unselected_pixels_exactly_and_feathers(self):
        rng = np.random.default_rng(1)
        src = rng.integers(0, 256, (8, 8, 4), dtype=np.uint8)
        res = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        mask = np.zeros((8, 8), np.uint8)
        mask[2:6, 2:6] = 255
        mask[1, 1:7] = 128  # a soft edge
        out = pixels.blend(src, res, mask)
        np.testing.assert_array_equal(out[mask == 0], src[mask == 0])
        np.testing.assert_array_equal(out[mask == 255][:, :3], res[mask == 255])
        mid = (src[1, 3, :3].astype(int) * 127 + res[1, 3].astype(int) * 128 + 127) // 255
        np.testing.assert_array_equal(out[1, 3, :3], mid)
        # A result of another size (e.g. the model's processing size) is fitted to the crop.
        self.assertEqual(pixels.blend(src, np.zeros((16, 16, 3), np.uint8), mask).shape, (8, 8, 4))


class PrepareTest(unittest.TestCase):
    def setUp(self):
        self.sel = np.zeros((100, 200), np.uint8)
        self.sel[40:50, 60:90] = 255

    def test_mask_task_sends_only_the_selection_bounds(self):
        t = task(inputs=["image", "mask", "text"], required=["image", "mask"], outputs=["images"])
        p = prepare.prepare(t, 200, 100, self.sel, margin=16)
        self.assertEqual(p["rect"], (44, 24, 106, 66))
        self.assertTrue(p["send_image"] and p["send_mask"])
        self.assertEqual(p["mask"].shape, (42, 62))
        self.assertEqual(int(p["mask"].sum()), 255 * 300)
        self.assertEqual(prepare.prepare(t, 200, 100, self.sel, margin=500)["rect"], (0, 0, 200, 100))
        with self.assertRaises(prepare.NotReady):
            prepare.prepare(t, 200, 100, None)
        with self.assertRaises(prepare.NotReady):
            prepare.prepare(t, 200, 100, np.zeros((100, 200), np.uint8))

    def test_region_and_whole_image_and_placement(self):
        vision = task(inputs=["image", "region"], required=["image", "region"], outputs=["text"])
        p = prepare.prepare(vision, 200, 100, self.sel, margin=16)
        self.assertEqual((p["rect"], p["region"], p["mask"]), ((0, 0, 200, 100), (60, 40, 90, 50), None))
        detect = task(inputs=["image"], required=["image"], outputs=["boxes"])
        self.assertEqual(prepare.prepare(detect, 200, 100, None)["rect"], (0, 0, 200, 100))
        redraw = task(inputs=["image", "text"], required=["image"], outputs=["images"])
        p = prepare.prepare(redraw, 200, 100, self.sel, margin=0)
        self.assertEqual((p["rect"], p["send_mask"]), ((60, 40, 90, 50), False))
        self.assertEqual(p["mask"].shape, (10, 30))
        generate = task(inputs=["text"], outputs=["images"])
        p = prepare.prepare(generate, 200, 100, self.sel)
        self.assertEqual((p["rect"], p["send_image"]), ((60, 40, 90, 50), False))
        self.assertIsNone(prepare.prepare(generate, 200, 100, None)["rect"])


def fake_result(images=(), boxes=(), polygons=(), text="", numbers=None):
    return types.SimpleNamespace(images=list(images), boxes=list(boxes), polygons=list(polygons), text=text,
                                 numbers=numbers or {}, json={})


class ResultsTest(unittest.TestCase):
    def test_repaint_becomes_a_layer_over_the_source(self):
        t = task(inputs=["image", "mask"], outputs=["images", "numbers"], label="Inpaint")
        src = np.full((4, 6, 4), 10, np.uint8)
        mask = np.zeros((4, 6), np.uint8)
        mask[1:3, 2:4] = 255
        res = np.full((4, 6, 3), 200, np.uint8)
        ops = results.plan(t, fake_result([res], numbers={"seed": 5}),
                           {"rect": (10, 20, 16, 24), "source": src, "mask": mask, "doc_size": (50, 50)})
        layer = [o for o in ops if o["op"] == "paint_layer"]
        self.assertEqual(len(layer), 1)
        self.assertTrue(layer[0]["over_source"])
        self.assertEqual((layer[0]["x"], layer[0]["y"], layer[0]["name"]), (10, 20, "Inpaint"))
        np.testing.assert_array_equal(layer[0]["rgba"][mask == 0], src[mask == 0])
        self.assertTrue((layer[0]["rgba"][mask == 255][:, :3] == 200).all())
        self.assertEqual([o["text"] for o in ops if o["op"] == "text"], ["seed 5"])

    def test_generated_images_are_new_layers(self):
        t = task(inputs=["text"], outputs=["images"], label="Generate")
        ops = results.plan(t, fake_result([np.zeros((8, 8, 3), np.uint8)] * 2), {"rect": None, "doc_size": (8, 8)})
        self.assertEqual([(o["name"], o["over_source"], o["rgba"].shape) for o in ops],
                         [("Generate 1", False, (8, 8, 4)), ("Generate 2", False, (8, 8, 4))])

    def test_masks_become_a_selection_and_a_mask_layer(self):
        t = task(inputs=["image"], outputs=["masks"], label="Find")
        m = np.zeros((5, 5, 1), np.uint8)
        ops = results.plan(t, fake_result([m]), {"rect": (0, 0, 5, 5), "source": np.zeros((5, 5, 4), np.uint8),
                                                 "doc_size": (5, 5)})
        self.assertEqual([o["op"] for o in ops], ["selection", "mask_layer"])
        self.assertEqual(ops[0]["mask"].shape, (5, 5))

    def test_boxes_and_polygons_become_labelled_svg_shapes(self):
        t = task(inputs=["image"], outputs=["boxes", "polygons"], label="Detect")
        boxes = [types.SimpleNamespace(label="car <&>", x0=1, y0=2, x1=11, y1=12, score=1.0)]
        polys = [types.SimpleNamespace(label="road", points=[(0, 0), (4, 0), (4, 4)], kind=loupe.ShapeKind.POLYGON)]
        ops = results.plan(t, fake_result(boxes=boxes, polygons=polys),
                           {"rect": (100, 50, 200, 150), "doc_size": (400, 300), "pt_per_px": 0.24})
        vec = [o for o in ops if o["op"] == "vector_layer"][0]
        svg = ET.fromstring(vec["svg"])
        ns = "{http://www.w3.org/2000/svg}"
        self.assertEqual((svg.get("width"), svg.get("viewBox")), ("96pt", "0 0 400 300"))
        rect = svg.find(ns + "rect")
        self.assertEqual([float(rect.get(k)) for k in ("x", "y", "width", "height")], [101, 52, 10, 10])
        self.assertEqual(svg.find(ns + "polygon").get("points"), "100.00,50.00 104.00,50.00 104.00,54.00")
        self.assertEqual([x.text for x in svg.findall(ns + "text")], ["car <&>", "road"])
        text = [o for o in ops if o["op"] == "text"][0]["text"]
        self.assertIn("car <&>: 101, 52 – 111, 62", text)


class EngineTest(unittest.TestCase):
    def wait_for(self, eng, kinds, timeout=120):
        got, end = [], time.time() + timeout
        while time.time() < end:
            for ev in eng.poll():
                got.append(ev)
                if ev[0] in kinds:
                    return got
            time.sleep(0.01)
        self.fail("no %s event in %d s: %s" % (kinds, timeout, [e[0] for e in got]))

    def test_runs_off_the_calling_thread_with_progress_preview_and_a_resident_session(self):
        eng = engine.Engine(loupe, device="cpu")
        try:
            path = fixture("sd", "tiny-sd15-inpaint")
            eng.load_tasks(path)
            ev = self.wait_for(eng, {"tasks"})[-1]
            self.assertEqual([t["name"] for t in ev[2]], ["txt2img", "img2img", "inpaint"])
            session = eng._sessions[path]
            w, h = 32, 24
            img = np.full((h, w, 3), 90, np.uint8)
            mask = np.zeros((h, w), np.uint8)
            mask[8:16, 8:24] = 255
            eng.run({"model": path, "task": "inpaint", "image": img, "mask": mask,
                     "params": {"prompt": "a cat", "steps": 2, "seed": 3}})
            self.assertTrue(eng.busy() or not eng._events.empty())
            evs = self.wait_for(eng, {"done", "error"})
            self.assertEqual(evs[-1][0], "done", evs[-1])
            progress = [e for e in evs if e[0] == "progress"]
            self.assertEqual([e[1] for e in progress if e[3] == progress[-1][3]][-1], 2)
            self.assertTrue(any(e[4] is not None and e[4].shape[2] == 3 for e in progress))
            self.assertEqual(evs[-1][1].images[0].shape, (h, w, 3))
            self.assertIs(eng._sessions[path], session)  # not opened again
            self.assertEqual(eng.resident(), [path])
            # Cancel stops the job at its next step.
            eng.run({"model": path, "task": "inpaint", "image": img, "mask": mask,
                     "params": {"prompt": "a cat", "steps": 150, "seed": 3}})
            self.wait_for(eng, {"progress"})
            eng.cancel()
            self.assertEqual(self.wait_for(eng, {"done", "cancelled", "error"})[-1][0], "cancelled")
        finally:
            eng.close()

    def test_errors_come_with_the_sdk_message(self):
        eng = engine.Engine(loupe, device="cpu")
        try:
            eng.load_tasks("/no/such/model")
            ev = self.wait_for(eng, {"error", "tasks"})[-1]
            self.assertEqual(ev[0], "error")
            self.assertIn("'/no/such/model' does not exist", ev[1])
            self.assertIsInstance(ev[2], list)
        finally:
            eng.close()

    def test_models_from_the_scan(self):
        eng = engine.Engine(loupe, device="cpu")
        try:
            found, missing = eng.models([fixture("sd")])
            paths = [m["path"] for m in found]
            self.assertTrue(any(p.endswith("tiny-sd15-inpaint") for p in paths), paths)
            self.assertTrue(all(m["tasks"] for m in found))
            self.assertTrue(all(m["path"] is None and m["repo"] for m in missing))
        finally:
            eng.close()


class LocateTest(unittest.TestCase):
    def test_environment_then_install_file(self):
        cfg = {"library": "/opt/loupe/libloupe.so.0", "binding_dir": "/opt/loupe/python"}
        self.assertEqual(locate.resolve({}, cfg), ("/opt/loupe/libloupe.so.0", "/opt/loupe/python"))
        self.assertEqual(locate.resolve({"LOUPE_LIBRARY": "/x.so", "LOUPE_PYTHON_DIR": "/y"}, cfg), ("/x.so", "/y"))
        lib, _ = locate.resolve({}, {})
        self.assertIsNone(lib)


if __name__ == "__main__":
    unittest.main()
