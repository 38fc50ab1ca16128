#!/usr/bin/env python3
"""Tests of the ctypes binding against the real library (run by CTest)."""
import ctypes as C
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import loupe  # noqa: E402


def fixture(*parts):
    return os.path.join(os.environ["LOUPE_FIXTURES_DIR"], *parts)


class BindingTest(unittest.TestCase):
    def test_version(self):
        self.assertEqual(loupe.version().count("."), 2)
        self.assertGreaterEqual(loupe._version_number(), 200)

    def test_layouts_fit_the_library(self):
        """Every struct the binding lays out is filled by its loupe_*_init with ctypes.sizeof: the
        library accepts the size, sets struct_size to it and writes the header's defaults where our
        fields say they are (a wrong field type or order shows as a wrong default)."""
        for cls in loupe._INITS:
            s = loupe._new(cls)
            self.assertEqual(s.struct_size, C.sizeof(cls), cls.__name__)
            # A layout from a newer header (larger than the library's struct) is refused, naming the function.
            bigger = C.create_string_buffer(C.sizeof(cls) + 64)
            status = loupe._INITS[cls](C.cast(bigger, C.POINTER(cls)), C.sizeof(cls) + 64)
            self.assertEqual(loupe.STATUS_NAMES[status], "INVALID_ARGUMENT", cls.__name__)
            # An older, shorter layout is filled up to its size only.
            short = C.create_string_buffer(b"\xab" * C.sizeof(cls), C.sizeof(cls))
            self.assertEqual(loupe._INITS[cls](C.cast(short, C.POINTER(cls)), 8), 0, cls.__name__)
            self.assertEqual(short.raw[8:], b"\xab" * (C.sizeof(cls) - 8), cls.__name__)
        ro = loupe._new(loupe._RuntimeOptions)
        self.assertEqual((ro.device, ro.precision, ro.vram_budget_bytes, ro.log_level, ro.num_threads), (None, 0, 0, 1, 0))
        self.assertEqual(loupe._new(loupe._Box).kind, 1)       # LOUPE_SHAPE_BOX
        self.assertEqual(loupe._new(loupe._Polygon).kind, 3)   # LOUPE_SHAPE_POLYGON
        self.assertEqual(loupe._new(loupe._ParamInfo).type, 1)  # LOUPE_PARAM_INT
        self.assertEqual(loupe._new(loupe._SessionOptions).precision, 0)

    def test_selftest_with_progress(self):
        seen = []
        with loupe.Runtime(device="cpu", threads=1) as rt:
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
            with self.assertRaises(loupe.LoupeError) as cm:
                rt.run("caption")
            self.assertIn("needs a model session", cm.exception.message)

    def test_the_library_describes_its_tasks(self):
        table = {t["name"]: t for t in loupe.tasks()}
        for name in ("caption", "detect", "ocr_regions", "txt2img", "img2img", "inpaint", "selftest", "download"):
            self.assertIn(name, table)
        self.assertTrue(table["selftest"]["runtime"])
        self.assertFalse(table["caption"]["runtime"])
        inpaint = table["inpaint"]
        self.assertEqual(inpaint["required"], ["image", "mask"])
        self.assertEqual(inpaint["text"]["key"], "prompt")
        params = {p["name"]: p for p in inpaint["params"]}
        self.assertEqual((params["steps"]["type"], params["steps"]["default"], params["steps"]["min"],
                          params["steps"]["max"]), ("int", 20, 1, 150))
        self.assertEqual(params["guidance_scale"]["type"], "float")
        self.assertEqual(params["only_masked"]["type"], "bool")
        self.assertEqual(params["negative_prompt"]["type"], "string")
        self.assertEqual(params["sampler"]["type"], "choice")
        self.assertIn("ddim", params["sampler"]["choices"])
        self.assertEqual(table["vqa"]["text"]["key"], "question")

    def test_json_and_structs_say_the_same(self):
        """loupe_tasks_json and loupe_task_describe / loupe_task_param describe the same table."""
        structs = loupe._task_structs(None)
        described = loupe.tasks()
        self.assertEqual([t["name"] for t in structs], [t["name"] for t in described])
        for s, j in zip(structs, described):
            for key in ("label", "help", "group", "runtime", "inputs", "required", "outputs"):
                self.assertEqual(s[key], j[key], (s["name"], key))
            self.assertEqual(s["text_key"], j.get("text", {}).get("key", ""), s["name"])
            self.assertEqual([p["name"] for p in s["params"]], [p["name"] for p in j["params"]], s["name"])
            for sp, jp in zip(s["params"], j["params"]):
                where = (s["name"], sp["name"])
                self.assertEqual(sp["type"], jp["type"], where)
                self.assertEqual((sp["label"], sp["help"], sp["unit"], sp["advanced"]),
                                 (jp["label"], jp["help"], jp["unit"], jp["advanced"]), where)
                if sp["type"] in ("string", "choice"):
                    self.assertEqual(sp["default_string"], jp["default"], where)
                else:
                    self.assertEqual(sp["default_number"], float(jp["default"]), where)
                if sp["type"] == "choice":
                    self.assertEqual(sp["choices"], jp["choices"], where)
                if sp["type"] in ("int", "float"):
                    self.assertEqual((sp["min"], sp["max"], sp["step"]),
                                     (float(jp["min"]), float(jp["max"]), float(jp["step"])), where)

    def test_session_on_the_tiny_florence2(self):
        pixels = (40, 30, bytes(range(256)) * (40 * 30 * 3 // 256) + bytes(40 * 30 * 3 % 256), 3)
        with loupe.Runtime(device="cpu") as rt, rt.open_session(fixture("florence2", "tiny")) as s:
            info = s.describe()
            self.assertEqual(info["family"], "florence2")
            self.assertIn("detect", info["tasks"])
            # The session's description: its tasks, with the model's limits (the tiny decoder has 128 positions).
            offered = {t["name"]: t for t in s.tasks()}
            self.assertEqual(sorted(offered), sorted(info["tasks"].split(",")))
            self.assertNotIn("txt2img", offered)
            tokens = [p for p in s.task("caption")["params"] if p["name"] == "max_new_tokens"][0]
            self.assertLess(tokens["max"], 4096)
            with self.assertRaises(loupe.LoupeError) as cm:
                s.task("txt2img")
            self.assertEqual(cm.exception.status_name, "NOT_FOUND")
            self.assertIn("it offers: caption", cm.exception.message)
            # Typed by the description: a whole float and a numeric string become the int parameters.
            res = s.run("detect", image=pixels, max_new_tokens=10.0, num_beams="1")
            self.assertEqual(res.task, "detect")
            for b in res.boxes:
                self.assertEqual(b.kind, loupe.ShapeKind.BOX)
                self.assertIsInstance(b.label, str)
            with self.assertRaises(loupe.LoupeError) as cm:
                s.run("ground", image=pixels)
            self.assertIn("needs a caption", cm.exception.message)
            with self.assertRaises(loupe.LoupeError) as cm:
                s.run("detect", image=pixels, max_new_tokens=500)
            self.assertIn("'max_new_tokens' = 500 is out of range", cm.exception.message)

    def test_boxes_and_polygons_with_their_kind(self):
        """Shapes are read with loupe_result_get_box / get_polygon, with their kind, and agree with the
        result's JSON. The tiny model's weights are random, but greedy decoding of this image writes
        boxes (dense_caption), quads (ocr_regions) and outlines (segment)."""
        w, h = 64, 48
        rgb = bytes((x * 7 + y * 3 + c * 50) % 256 for y in range(h) for x in range(w) for c in range(3))
        seen = {}
        with loupe.Runtime(device="cpu") as rt, rt.open_session(fixture("florence2", "tiny")) as s:
            for task, kind, extra in (("dense_caption", None, {}), ("ocr_regions", loupe.ShapeKind.QUAD, {}),
                                      ("segment", loupe.ShapeKind.POLYGON, {"text": "a car"})):
                res = s.run(task, image=(w, h, rgb, 3), max_new_tokens=60, num_beams=1, **extra)
                self.assertEqual(len(res.boxes), len(res.json["boxes"]), task)
                self.assertEqual(len(res.polygons), len(res.json["polygons"]), task)
                for b, jb in zip(res.boxes, res.json["boxes"]):
                    self.assertEqual(b.kind, loupe.ShapeKind.BOX)
                    self.assertEqual(b.label, jb["label"])
                    self.assertEqual([b.x0, b.y0, b.x1, b.y1], [float(v) for v in jb["box"]])
                    seen[b.kind] = seen.get(b.kind, 0) + 1
                for p, jp in zip(res.polygons, res.json["polygons"]):
                    self.assertEqual(p.kind, kind, task)
                    self.assertEqual(p.kind, jp["kind"])  # ShapeKind compares equal to the JSON's name
                    self.assertEqual([v for xy in p.points for v in xy], [float(v) for v in jp["points"]])
                    self.assertEqual(p.label, jp["label"])
                    if p.kind == loupe.ShapeKind.QUAD:
                        self.assertEqual(len(p.points), 4)
                    seen[p.kind] = seen.get(p.kind, 0) + 1
        self.assertEqual(sorted(k.value for k in seen), ["box", "polygon", "quad"], seen)

    def test_parameters_typed_by_the_description(self):
        """txt2img on the tiny SD 1.5 with every kind of parameter given loosely (strings, floats for
        ints, words for switches): the binding sets each with its described type. What it cannot
        type goes to the library, which refuses it at submit with its message."""
        with loupe.Runtime(device="cpu") as rt, rt.open_session(fixture("sd", "tiny-sd15")) as s:
            width = [p for p in s.task("txt2img")["params"] if p["name"] == "width"][0]
            self.assertEqual(width["default"], 64)  # fitted to the model (the table's generic default is 512)
            res = s.run("txt2img", prompt="a red car", steps="2", seed=9.0, guidance_scale="3.5", sampler="ddim",
                        vae_tiling="off", width=40, negative_prompt=None)
            self.assertEqual((res.numbers["seed"], res.numbers["steps"]), (9, 2))
            self.assertEqual(res.json["strings"]["sampler"], "ddim")
            self.assertEqual(len(res.images), 1)
            img = res.images[0]
            self.assertEqual(img.shape[:2] if hasattr(img, "shape") else (img[1], img[0]), (64, 40))
            for params, message in (({"stepz": 2}, "has no parameter 'stepz'; its parameters: prompt, negative_prompt, steps"),
                                    ({"steps": 1000}, "'steps' = 1000 is out of range [1, 150]"),
                                    ({"steps": "many"}, "'steps' is an integer"),
                                    ({"seed": 2.5}, "'seed' = 2.5 must be a whole number"),
                                    ({"sampler": "plms"}, "'sampler' = 'plms' is not one of"),
                                    ({"vae_tiling": 2}, "'vae_tiling' = 2 is a switch"),
                                    ({"clip_skip": 5}, "'clip_skip' = 5 is out of range [1, 3]")):
                with self.assertRaises(loupe.LoupeError) as cm:
                    s.run("txt2img", prompt="a car", **params)
                self.assertEqual(cm.exception.status_name, "INVALID_ARGUMENT", params)
                self.assertIn(message, cm.exception.message, params)

    def test_inpaint_on_the_tiny_sd_model(self):
        """Inpainting through the binding: numpy in and out when numpy is there, raw bytes otherwise;
        the pixels outside the mask come back unchanged."""
        w, h = 64, 48
        rgb = bytes((x * 3 + y * 5 + c * 70) % 256 for y in range(h) for x in range(w) for c in range(3))
        mask = bytes(255 if 16 <= x < 40 and 10 <= y < 30 else 0 for y in range(h) for x in range(w))
        with loupe.Runtime(device="cpu") as rt, rt.open_session(fixture("sd", "tiny-sd15-inpaint")) as s:
            steps, previews = [], []
            res = s.run("inpaint", image=(w, h, rgb, 3), mask=(w, h, mask, 1), prompt="a cat", steps=3, seed=5,
                        only_masked=True, feather=2,
                        progress=lambda step, total, stage, preview: steps.append(step) or previews.append(preview))
            self.assertEqual(steps, [1, 2, 3])
            # The live preview (RGB8) comes as the results do: numpy HxWx3, or (width, height, bytes, 3).
            shapes = [(p.shape[1], p.shape[0], p.shape[2]) if hasattr(p, "shape") else (p[0], p[1], p[3])
                      for p in previews if p is not None]
            self.assertTrue(shapes, "no preview came with the progress")
            self.assertTrue(all(c == 3 and pw > 0 and ph > 0 for pw, ph, c in shapes), shapes)
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

    def test_diagnostics_and_scan(self):
        with loupe.Runtime(device="cpu") as rt:
            d = rt.diagnostics()
            self.assertEqual(d["devices"][0]["type"], "cpu")
            self.assertIn("libtorch", d["build"])
            found = rt.scan([fixture("sd")], skip_default_locations=True)
            self.assertTrue(any(m["path"].endswith("tiny-sd15") for m in found["models"]), found["models"])


if __name__ == "__main__":
    unittest.main()
