"""Drives the Loupe docker inside the real Krita (started by tests/plugins/krita/run_e2e.py under
Xvfb): opens an image, selects a soft region, inpaints through the docker's own widgets, checks the
new layer and undo, runs a vision task into a vector layer, takes screenshots, writes a JSON report
to $LOUPE_KRITA_E2E_OUT and quits. Only the test installs it."""
import faulthandler
import json
import os
import time
import traceback

from krita import Extension, Krita, Selection
from PyQt5.QtCore import QTimer
from PyQt5.QtWidgets import QApplication

OUT = os.environ.get("LOUPE_KRITA_E2E_OUT", "")
report = {"ok": False, "checks": {}, "log": []}
T0 = time.time()


def log(*a):
    report["log"].append("%6.1fs %s" % (time.time() - T0, " ".join(str(x) for x in a)))
    with open(OUT + ".log", "a", encoding="utf-8") as f:  # read by run_e2e.py when Krita hangs
        f.write(report["log"][-1] + "\n")


def check(name, ok, detail=""):
    report["checks"][name] = {"ok": bool(ok), "detail": str(detail)}
    log("check", name, "ok" if ok else "FAILED", detail)


def finish():
    report["ok"] = bool(report["checks"]) and all(c["ok"] for c in report["checks"].values())
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1)
    for d in Krita.instance().documents():
        d.setModified(False)
    os._exit(0)


def pump(until, timeout):
    """Runs Qt's event loop until until() is true (the docker's timer, the worker's events)."""
    end = time.time() + timeout
    while time.time() < end:
        QApplication.processEvents()
        if until():
            return True
        time.sleep(0.02)
    return False


def find_docker():
    for d in Krita.instance().dockers():
        if d.objectName() == "loupe_docker":
            return d
    return None


def use_model(docker, path, timeout=180):
    """Adds and chooses a model as a user does with the docker's "…" button; waits for its tasks."""
    docker.add_model(path)
    return pump(lambda: docker.tasks_model == path and docker.run_button.isEnabled(), timeout)


def choose_task(docker, wanted):
    for i in range(docker.task_box.count()):
        if docker.task_box.itemData(i) == wanted:
            docker.task_box.setCurrentIndex(i)
            return True
    return False


def run_and_wait(docker, timeout=300):
    docker.last_result = None
    docker.run_button.click()
    ok = pump(lambda: docker.running is None and not docker.cancel_button.isEnabled(), timeout)
    return ok and getattr(docker, "last_result", None) is not None


def bgra(node, w, h):
    return bytes(node.pixelData(0, 0, w, h))


def scenario():
    app = Krita.instance()
    win = app.activeWindow()
    win.qwindow().resize(1280, 860)
    docker = find_docker()
    check("docker_exists", docker is not None, [d.objectName() for d in app.dockers()][-8:])
    docker.show()
    doc = app.openDocument(os.environ["LOUPE_KRITA_E2E_IMAGE"])
    check("image_opened", doc is not None and doc.width() > 0, os.environ["LOUPE_KRITA_E2E_IMAGE"])
    win.addView(doc)
    app.setActiveDocument(doc)
    pump(lambda: app.activeDocument() is not None, 10)
    if doc.colorModel() != "RGBA" or doc.colorDepth() != "U8":
        doc.setColorSpace("RGBA", "U8", "sRGB-elle-V2-srgbtrc.icc")
    doc.waitForDone()
    w, h = doc.width(), doc.height()
    source = doc.activeNode()
    log("document", w, h, source.name(), source.type())

    # The model, as a user adds it with "…"; its tasks come from the SDK's description.
    check("model_opened", use_model(docker, os.environ["LOUPE_KRITA_E2E_INPAINT_MODEL"]), docker.status.text())
    names = [docker.task_box.itemData(i) for i in range(docker.task_box.count())]
    check("tasks_listed", "inpaint" in names, names)
    check("inpaint_chosen", choose_task(docker, "inpaint"))
    form = sorted(docker.widgets)
    check("form_from_description", {"steps", "seed", "negative_prompt"} <= set(form), form)
    docker.set_value("steps", 2)
    docker.set_value("seed", 7)
    docker.text.setPlainText("a red car")

    # A soft selection: a rectangle, feathered.
    x0, y0, sw, sh = w // 4, h // 4, w // 2, h // 2
    sel = Selection()
    sel.select(x0, y0, sw, sh, 255)
    sel.feather(3)
    doc.setSelection(sel)
    doc.waitForDone()
    selb = bytes(doc.selection().pixelData(0, 0, w, h))
    soft = sum(1 for v in selb if 0 < v < 255)
    check("soft_selection", soft > 0, "%d soft pixels" % soft)
    before = bgra(source, w, h)
    layers_before = [n.name() for n in source.parentNode().childNodes()]

    ok = run_and_wait(docker)
    check("inpaint_ran", ok, docker.status.text())
    if not ok:
        return
    made = docker.last_result["layers"]
    check("one_new_layer", len(made) == 1, [n.name() for n in made])
    new = made[0]
    siblings = [n.name() for n in source.parentNode().childNodes()]
    check("layer_above_source", siblings.index(new.name()) == siblings.index(source.name()) + 1, siblings)
    check("no_preview_left", not any("preview" in s.lower() for s in siblings), siblings)
    check("source_untouched", bgra(source, w, h) == before)
    after = bgra(new, w, h)
    outside_diff = inside_changed = 0
    for i in range(w * h):
        px_b, px_a = before[4 * i:4 * i + 4], after[4 * i:4 * i + 4]
        if selb[i] == 0:
            outside_diff += px_b != px_a
        else:
            inside_changed += px_b != px_a
    check("outside_selection_equals_source", outside_diff == 0, "%d pixels differ outside" % outside_diff)
    check("inside_selection_repainted", inside_changed > 0, "%d pixels changed inside" % inside_changed)

    # Undo removes the new layer, redo brings it back (Krita's own history).
    app.action("edit_undo").trigger()
    doc.waitForDone()
    pump(lambda: False, 0.3)
    undone = [n.name() for n in source.parentNode().childNodes()]
    check("undo_removes_layer", undone == layers_before, undone)
    app.action("edit_redo").trigger()
    doc.waitForDone()
    pump(lambda: False, 0.3)
    redone = [n.name() for n in source.parentNode().childNodes()]
    check("redo_restores_layer", new.name() in redone, redone)

    # Live preview and Cancel: a long run shows a temporary layer, Cancel stops it and leaves nothing.
    doc.setSelection(sel)
    doc.waitForDone()
    docker.set_value("steps", 150)
    top_before = [n.name() for n in doc.topLevelNodes()]
    docker.last_result = None
    docker.run_button.click()
    seen = pump(lambda: docker.preview is not None and docker.preview.node is not None, 120)
    top_during = [n.name() for n in doc.topLevelNodes()]
    check("live_preview_layer", seen and any("preview" in n.lower() for n in top_during), top_during)
    docker.cancel_button.click()
    stopped = pump(lambda: docker.running is None and docker.run_button.isEnabled(), 120)
    top_after = [n.name() for n in doc.topLevelNodes()]
    check("cancel_stops_and_cleans_up", stopped and docker.last_result is None and top_after == top_before
          and "Cancelled" in docker.status.text(), "%s %s" % (top_after, docker.status.text()))
    docker.set_value("steps", 2)

    # The session stays resident: a second run does not open the model again.
    resident = list(__import__("loupe_krita.docker", fromlist=["x"]).engine().resident())
    check("session_resident", any(p.endswith(os.path.basename(os.environ["LOUPE_KRITA_E2E_INPAINT_MODEL"]))
                                  for p in resident), resident)

    # A missing selection is refused in the docker with a sentence (no crash).
    doc.setSelection(Selection())
    doc.waitForDone()
    docker.run_button.click()
    pump(lambda: False, 0.3)
    check("needs_selection_message", "selection" in docker.status.text(), docker.status.text())

    # A vision task: boxes become a vector layer with labels.
    florence = os.environ.get("LOUPE_KRITA_E2E_VISION_MODEL")
    if florence:
        check("vision_model_opened", use_model(docker, florence), docker.status.text())
        check("detect_chosen", choose_task(docker, "detect"))
        doc.setActiveNode(source)
        doc.setResolution(300)  # not 72 ppi: the shapes must still land on image pixels
        doc.waitForDone()
        ok = run_and_wait(docker)
        check("detect_ran", ok, docker.status.text())
        if ok:
            res = docker.last_result
            vec = [n for n in res["layers"] if n.type() == "vectorlayer"]
            nboxes = len(res["result"].boxes)
            check("boxes_as_vector_layer", (nboxes == 0) or len(vec) == 1, "%d boxes, layers %s" % (nboxes, [n.type() for n in res["layers"]]))
            if nboxes and vec:
                # The shapes sit where the boxes are, in image pixels (the SVG's size is given in pt).
                px = doc.resolution() / 72.0  # Krita's shapes are measured in pt
                rects = [s.boundingBox() for s in vec[0].shapes() if s.type() == "KoPathShape"]
                boxes = res["result"].boxes
                want = (min(x.x0 for x in boxes), min(x.y0 for x in boxes), max(x.x1 for x in boxes), max(x.y1 for x in boxes))
                got = (min(r.left() for r in rects) * px, min(r.top() for r in rects) * px,
                       max(r.right() for r in rects) * px, max(r.bottom() for r in rects) * px)
                check("shapes_in_image_pixels", len(rects) == nboxes and all(abs(a - b) <= 3 for a, b in zip(got, want)),  # the stroke widens them,
                      "%d shapes over %s px, boxes over %s (%s ppi)" % (len(rects), ["%.1f" % v for v in got], want,
                                                                        doc.resolution()))
            check("text_in_docker", docker.output.toPlainText().strip() != "", docker.output.toPlainText()[:200])

    # Masks (a task whose outputs include masks): the selection and a transparency mask on the layer,
    # through the adapter the docker uses (no task of the fixture models outputs masks yet).
    from loupe_krita import adapter, results
    import numpy as np
    m = np.zeros((h, w), np.uint8)
    m[5:20, 10:30] = 255
    m[20, 10:30] = 100
    fake = type("R", (), {"images": [m[:, :, None]], "boxes": [], "polygons": [], "text": "", "numbers": {}})()
    ops = results.plan({"name": "find", "label": "Find", "inputs": ["image"], "outputs": ["masks"]}, fake,
                       {"rect": (0, 0, w, h), "source": None, "mask": None, "doc_size": (w, h)})
    made, _ = adapter.apply(doc, source, ops)
    doc.waitForDone()
    got = bytes(doc.selection().pixelData(0, 0, w, h)) if doc.selection() is not None else b""
    check("mask_as_selection", got == m.tobytes(), "%d of %d bytes equal" % (sum(a == b for a, b in zip(got, m.tobytes())), w * h))
    kids = [(n.name(), n.type()) for n in source.childNodes()]
    check("mask_as_transparency_mask", ("Find mask", "transparencymask") in kids, kids)

    # Screenshots of the docker and of the window (for the README), after choosing inpaint again.
    use_model(docker, os.environ["LOUPE_KRITA_E2E_INPAINT_MODEL"])
    choose_task(docker, "inpaint")
    docker.text.setPlainText("a red car")
    docker.output.clear()
    pump(lambda: False, 1.0)
    shots = os.environ.get("LOUPE_KRITA_E2E_SHOTS")
    if shots:
        os.makedirs(shots, exist_ok=True)
        docker.grab().save(os.path.join(shots, "krita-docker.png"))
        win.qwindow().grab().save(os.path.join(shots, "krita-window.png"))


class Driver(Extension):
    def setup(self):
        pass

    def createActions(self, window):
        QTimer.singleShot(1500, self.go)

    def go(self):
        # Stacks of every thread into the log if the scenario hangs (run_e2e.py prints them).
        self.trace = open(OUT + ".log", "a", encoding="utf-8")
        faulthandler.dump_traceback_later(int(os.environ.get("LOUPE_KRITA_E2E_HANG_S", "240")), file=self.trace)
        try:
            scenario()
        except Exception:
            check("no_exception", False, traceback.format_exc())
        finish()


Krita.instance().addExtension(Driver(Krita.instance()))
