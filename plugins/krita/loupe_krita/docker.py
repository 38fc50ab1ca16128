"""The Loupe docker: model, task, prompt and parameters (built from the task description), Run and
Cancel, progress with a live preview layer, results as layers, text and errors in the docker."""
import os

from krita import DockWidget, Krita
from PyQt5.QtCore import Qt, QTimer
from PyQt5.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFileDialog, QFormLayout,
                             QHBoxLayout, QLabel, QLineEdit, QPlainTextEdit, QProgressBar, QPushButton, QSpinBox,
                             QToolButton, QVBoxLayout, QWidget)

from . import adapter, forms, pixels, prepare, results

_ENGINE = None


def engine():
    """The one engine of this Krita process: its runtime and sessions outlive runs and dockers."""
    global _ENGINE
    if _ENGINE is None:
        from . import locate
        from .engine import Engine
        _ENGINE = Engine(locate.load_binding(), device=os.environ.get("LOUPE_DEVICE", "auto"))
    return _ENGINE


def _int_range(v):
    return int(max(-2 ** 31, min(2 ** 31 - 1, v)))


class LoupeDocker(DockWidget):
    def __init__(self):
        super().__init__()
        self.setObjectName("loupe_docker")
        self.setWindowTitle("Loupe")
        self.tasks, self.task, self.widgets, self.preview, self.running = [], None, {}, None, None
        self.pending_model, self.last_result, self.tasks_model = None, None, None
        self.extra_dirs = [d for d in os.environ.get("LOUPE_KRITA_MODEL_DIRS", "").split(os.pathsep) if d]
        root = QWidget(self)
        lay = QVBoxLayout(root)
        top = QFormLayout()
        row = QHBoxLayout()
        self.model = QComboBox(root, objectName="model")
        self.model.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.model.setMinimumContentsLength(14)
        row.addWidget(self.model, 1)
        self.add_folder = QToolButton(root, objectName="addModel", text="…")
        self.add_folder.setToolTip("Add a model folder or file")
        row.addWidget(self.add_folder)
        self.refresh = QToolButton(root, objectName="refresh", text="↻")
        self.refresh.setToolTip("Scan for models again")
        row.addWidget(self.refresh)
        top.addRow("Model", row)
        self.task_box = QComboBox(root, objectName="task")
        top.addRow("Task", self.task_box)
        self.help = QLabel(root, objectName="taskHelp", wordWrap=True)
        top.addRow(self.help)
        self.text_label = QLabel("Prompt", root)
        self.text = QPlainTextEdit(root, objectName="text")
        self.text.setMaximumHeight(70)
        top.addRow(self.text_label, self.text)
        lay.addLayout(top)
        self.params = QWidget(root, objectName="params")
        self.params_lay = QVBoxLayout(self.params)
        self.params_lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.params)
        opts = QFormLayout()
        self.source = QComboBox(root, objectName="source")
        self.source.addItems(["Active layer", "Visible image"])
        self.source.setToolTip("What image tasks see")
        opts.addRow("Source", self.source)
        self.margin = QSpinBox(root, objectName="margin")
        self.margin.setRange(0, 1024)
        self.margin.setValue(32)
        self.margin.setSuffix(" px")
        self.margin.setToolTip("Context sent around the selection (only the selection's bounds and this margin are sent)")
        opts.addRow("Context", self.margin)
        lay.addLayout(opts)
        buttons = QHBoxLayout()
        self.run_button = QPushButton("Run", root, objectName="run")
        self.cancel_button = QPushButton("Cancel", root, objectName="cancel", enabled=False)
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        lay.addLayout(buttons)
        self.progress = QProgressBar(root, objectName="progress")
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        lay.addWidget(self.progress)
        self.status = QLabel(root, objectName="status", wordWrap=True)
        self.status.setTextInteractionFlags(Qt.TextSelectableByMouse)
        lay.addWidget(self.status)
        self.output = QPlainTextEdit(root, objectName="output", readOnly=True)
        self.output.setPlaceholderText("Text results (captions, answers, labels) appear here")
        lay.addWidget(self.output, 1)
        self.setWidget(root)

        self.timer = QTimer(self, interval=50)
        self.timer.timeout.connect(self.poll)
        self.model.currentIndexChanged.connect(self.model_changed)
        self.task_box.currentIndexChanged.connect(self.task_changed)
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        self.refresh.clicked.connect(self.scan)
        self.add_folder.clicked.connect(self.browse)
        QTimer.singleShot(0, self.scan)

    def canvasChanged(self, canvas):
        pass

    # ---- messages
    def say(self, text, error=False):
        self.status.setStyleSheet("QLabel { color: #c0392b; }" if error else "")
        self.status.setText(text)

    def fail(self, message, remedies=()):
        text = message + "".join("\n• " + r for r in remedies)
        self.say(text, error=True)
        self.output.appendPlainText("Error: " + text)

    # ---- models
    def scan(self, choose=True):
        try:
            found, missing = engine().models(self.extra_dirs)
        except Exception as e:
            return self.fail(str(e))
        current = self.model.currentData()
        self.model.blockSignals(True)
        self.model.clear()
        for m in found:
            self.model.addItem(m["label"], m["path"])
            self.model.setItemData(self.model.count() - 1, "%s\n%s" % (m["path"], ", ".join(m["tasks"])), Qt.ToolTipRole)
        for m in missing:
            self.model.addItem(m["label"], None)
            item = self.model.model().item(self.model.count() - 1)
            item.setEnabled(False)
            item.setToolTip("Download it with loupe-cli or the Loupe editor's Models tab into the models folder "
                            "(%s)" % m["folder"])
        self.model.blockSignals(False)
        if not choose:
            return
        if not current:  # the model used last time (Krita's settings), else the first found
            current = Krita.instance().readSetting("loupe", "model", "") or None
        i = self.model.findData(current) if current else -1
        if i < 0:
            i = 0 if found else -1
        if i >= 0:
            self.model.setCurrentIndex(i)
            self.model_changed()
        elif not found:
            self.say("No model found: install one (see the catalog entries above), or add its folder with “…”", error=True)

    def add_model(self, path):
        """A model folder or file chosen by hand (or by a test): scanned, listed and chosen."""
        parent = os.path.dirname(os.path.abspath(path))
        if parent not in self.extra_dirs:
            self.extra_dirs.append(parent)
        self.scan(choose=False)
        i = self.model.findData(os.path.abspath(path))
        if i < 0:
            i = self.model.findData(path)
        if i < 0:
            self.model.addItem(os.path.basename(path), path)
            i = self.model.count() - 1
        self.model.setCurrentIndex(i)
        self.model_changed()

    def browse(self):
        path = QFileDialog.getExistingDirectory(self, "Model folder")
        if path:
            self.add_model(path)

    def model_changed(self, *_):
        path = self.model.currentData()
        if not path:
            return
        if engine().busy():  # opened when the work under way ends (poll)
            self.pending_model = path
            self.timer.start()
            return
        self.pending_model = None
        Krita.instance().writeSetting("loupe", "model", path)
        self.say("Opening %s…" % os.path.basename(path))
        self.progress.setRange(0, 0)
        self.set_running(True)
        engine().load_tasks(path)
        self.timer.start()

    # ---- tasks and forms
    def set_tasks(self, tasks):
        self.tasks = forms.offered(tasks)
        current = self.task["name"] if self.task else None
        self.task_box.blockSignals(True)
        self.task_box.clear()
        for group, items in forms.grouped(self.tasks):
            for t in items:
                self.task_box.addItem("%s: %s" % (group, t.get("label") or t["name"]) if group else t["label"], t["name"])
                self.task_box.setItemData(self.task_box.count() - 1, t.get("help", ""), Qt.ToolTipRole)
        self.task_box.blockSignals(False)
        i = self.task_box.findData(current) if current else 0
        self.task_box.setCurrentIndex(max(0, i))
        self.task_changed()

    def task_changed(self, *_):
        name = self.task_box.currentData()
        self.task = next((t for t in self.tasks if t["name"] == name), None)
        old = {k: self.value(k) for k in self.widgets}
        while self.params_lay.count():
            w = self.params_lay.takeAt(0).widget()
            if w is not None:
                w.hide()
                w.setParent(None)
                w.deleteLater()
        self.widgets = {}
        if self.task is None:
            return
        self.help.setText(self.task.get("help", ""))
        f = forms.form(self.task)
        t = f["text"]
        self.text_label.setVisible(bool(t))
        self.text.setVisible(bool(t))
        if t:
            self.text_label.setText(t.get("label", "text").capitalize())
            self.text.setToolTip(t.get("help", ""))
            self.text.setPlaceholderText(t.get("help", ""))
        basic = QWidget(self.params)
        basic_form = QFormLayout(basic)
        basic_form.setContentsMargins(0, 0, 0, 0)
        show_adv = QCheckBox("Advanced", self.params, objectName="showAdvanced")
        adv = QWidget(self.params, objectName="advanced")
        adv_form = QFormLayout(adv)
        adv_form.setContentsMargins(0, 0, 0, 0)
        adv.setVisible(False)
        show_adv.toggled.connect(adv.setVisible)
        for fld in f["fields"]:
            w = self.make_widget(fld)
            w.setObjectName("param_" + fld["name"])
            w.setToolTip(fld["help"])
            self.widgets[fld["name"]] = (fld, w)
            (adv_form if fld["advanced"] else basic_form).addRow(fld["label"], w)
            if fld["name"] in old and old[fld["name"]] is not None:
                try:
                    self.set_value(fld["name"], old[fld["name"]])
                except (TypeError, ValueError):
                    pass
        self.params_lay.addWidget(basic)
        if any(fld["advanced"] for fld in f["fields"]):
            self.params_lay.addWidget(show_adv)
            self.params_lay.addWidget(adv)
        else:
            show_adv.setParent(None)
            adv.setParent(None)

    def make_widget(self, f):
        k = f["kind"]
        if k == "int":
            w = QSpinBox(self.params)
            w.setRange(_int_range(f["min"]), _int_range(f["max"]))
            w.setSingleStep(max(1, int(f["step"])))
            w.setValue(f["default"])
            if f["unit"]:
                w.setSuffix(" " + f["unit"])
        elif k == "float":
            w = QDoubleSpinBox(self.params)
            w.setDecimals(f["decimals"])
            w.setRange(max(f["min"], -1e12), min(f["max"], 1e12))
            w.setSingleStep(f["step"])
            w.setValue(f["default"])
            if f["unit"]:
                w.setSuffix(" " + f["unit"])
        elif k == "bool":
            w = QCheckBox(self.params)
            w.setChecked(f["default"])
        elif k == "choice":
            w = QComboBox(self.params)
            w.addItems(f["choices"])
            w.setCurrentText(f["default"])
        else:
            w = QLineEdit(self.params)
            w.setText(f["default"])
        return w

    def value(self, name):
        f, w = self.widgets[name]
        if isinstance(w, (QSpinBox, QDoubleSpinBox)):
            return w.value()
        if isinstance(w, QCheckBox):
            return w.isChecked()
        if isinstance(w, QComboBox):
            return w.currentText()
        return w.text()

    def set_value(self, name, v):
        f, w = self.widgets[name]
        v = forms.coerce(f, v)
        if isinstance(w, (QSpinBox, QDoubleSpinBox)):
            w.setValue(v)
        elif isinstance(w, QCheckBox):
            w.setChecked(v)
        elif isinstance(w, QComboBox):
            w.setCurrentText(v)
        else:
            w.setText(v)

    # ---- running
    def set_running(self, on):
        self.run_button.setEnabled(not on)
        self.cancel_button.setEnabled(on)
        self.model.setEnabled(not on)
        self.task_box.setEnabled(not on)

    def run(self):
        if self.task is None or engine().busy():
            return
        doc = adapter.active_document()
        if doc is None:
            return self.fail("Open or create an image first: results go into it as layers")
        try:
            adapter.check_rgba8(doc)
            sel = adapter.selection(doc)
            plan = prepare.prepare(self.task, doc.width(), doc.height(), sel, self.margin.value())
            node = doc.activeNode() if self.source.currentIndex() == 0 else None
            source = None
            job = {"model": self.model.currentData(), "task": self.task["name"], "region": plan["region"],
                   "params": forms.collect(self.task, {k: self.value(k) for k in self.widgets},
                                           self.text.toPlainText() if self.task.get("text") else None)}
            if plan["send_image"]:
                source = adapter.read_rgba(doc, node, plan["rect"])
                job["image"] = source[:, :, :3].copy()
            if plan["send_mask"]:
                job["mask"] = plan["mask"]
        except (adapter.KritaError, prepare.NotReady, ValueError) as e:
            return self.fail(str(e))
        self.running = {"doc": doc, "node": doc.activeNode(), "plan": plan, "source": source, "job": job}
        self.preview = adapter.Preview(doc, doc.activeNode())
        self.output.clear()
        self.progress.setRange(0, 0)
        self.say("Running %s…" % (self.task.get("label") or self.task["name"]))
        self.set_running(True)
        engine().run(job)
        self.timer.start()

    def cancel(self):
        engine().cancel()
        self.say("Cancelling (at the next step)…")

    def poll(self):
        for ev in engine().poll():
            kind = ev[0]
            if kind == "tasks":
                self.set_running(False)
                if ev[1] != self.model.currentData():
                    continue  # another model was chosen meanwhile; it opens next
                self.progress.setRange(0, 1)
                self.tasks_model = ev[1]
                self.set_tasks(ev[2])
                self.say("%s: %d tasks" % (os.path.basename(ev[1]), len(self.tasks)))
            elif kind == "progress":
                _, step, total, stage, preview = ev
                self.progress.setRange(0, max(1, total))
                self.progress.setValue(step)
                self.progress.setFormat("%s %%v/%%m" % stage)
                if preview is not None and self.running is not None:
                    self.show_preview(preview)
            elif kind == "done":
                self.finish(ev[1])
            elif kind == "cancelled":
                self.end("Cancelled")
            elif kind == "error":
                self.end(None)
                self.fail(ev[1], ev[2])
        if not engine().busy() and engine()._events.empty():
            if self.pending_model:
                return self.model_changed()
            self.timer.stop()

    def show_preview(self, preview):
        rect = self.running["plan"]["rect"]
        if rect is None:
            h, w = preview.shape[:2]
            rect = (0, 0, w * 8, h * 8)
        w, h = rect[2] - rect[0], rect[3] - rect[1]
        try:
            self.preview.show(pixels.to_rgba(pixels.resize_nearest(pixels.to_rgba(preview), w, h)), rect[0], rect[1])
        except Exception as e:  # a preview must never stop the job
            self.output.appendPlainText("preview: %s" % e)

    def end(self, message):
        if self.preview is not None:
            self.preview.remove()
            self.preview = None
        self.running = None
        self.set_running(False)
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("%p%")
        if message:
            self.say(message)

    def finish(self, result):
        r = self.running
        doc = r["doc"]
        ctx = {"rect": r["plan"]["rect"], "source": r["source"], "mask": r["plan"]["mask"],
               "doc_size": (doc.width(), doc.height()), "pt_per_px": adapter.pt_per_px(doc)}
        try:
            made, texts = adapter.apply(doc, r["node"], results.plan(self.task, result, ctx), self.preview)
        except Exception as e:
            self.end(None)
            return self.fail("could not add the result: %s" % e)
        for t in texts:
            self.output.appendPlainText(t)
        self.end("Done: %s" % (", ".join(n.name() for n in made) if made else "see below"))
        self.last_result = {"result": result, "layers": made, "texts": texts}
