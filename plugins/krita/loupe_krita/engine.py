"""The SDK side of the docker: one runtime and the open sessions, kept for the whole Krita session
(a model loads once), and the work on a Python thread; the UI thread polls events. No Krita, no Qt.

Events from poll(): ("tasks", path, [task, ...]), ("progress", step, total, stage, preview),
("done", result, job), ("error", message, remedies, job), ("cancelled", job).
"""
import os
import queue
import threading


class Engine:
    def __init__(self, binding, device="auto", models_dir=None, max_sessions=2):
        self.loupe = binding
        self.device = device
        self.models_dir = models_dir if models_dir is not None else os.environ.get("LOUPE_MODELS_DIR")
        self.max_sessions = max_sessions
        self._rt = None
        self._sessions = {}  # path -> Session, most recently used last
        self._lock = threading.Lock()  # one piece of work at a time (the runtime's queue would serialise too)
        self._events = queue.Queue()
        self._cancel = threading.Event()
        self._thread = None

    # ---- runtime and sessions (called on the worker thread, or under the lock)
    def runtime(self):
        if self._rt is None:
            self._rt = self.loupe.Runtime(device=self.device, models_dir=self.models_dir)
        return self._rt

    def session(self, path):
        s = self._sessions.pop(path, None)
        if s is None:
            s = self.runtime().open_session(path)
            while len(self._sessions) >= self.max_sessions:  # the least recently used goes
                old = next(iter(self._sessions))
                self._sessions.pop(old).close()
        self._sessions[path] = s
        return s

    def resident(self):
        return list(self._sessions)

    def close(self):
        self.cancel()
        if self._thread is not None:
            self._thread.join()
        for s in self._sessions.values():
            s.close()
        self._sessions.clear()
        if self._rt is not None:
            self._rt.close()
            self._rt = None

    # ---- models
    def models(self, extra_dirs=()):
        """Models the scan finds that run tasks, named by their catalog entry when they are one:
        [{"label", "path", "tasks", "source"}], then the catalog's models not found as
        [{"label", "path": None, "repo", "folder"}] (to show what can be installed)."""
        report = self.runtime().scan(dirs=list(extra_dirs))
        names = {}
        for c in report.get("catalog", []):
            for f in c.get("found", []):
                names[f if isinstance(f, str) else f.get("path", "")] = c.get("name", "")
        found, seen = [], set()
        for m in report.get("models", []):
            if not m.get("supported") or not m.get("tasks") or m["path"] in seen:
                continue
            seen.add(m["path"])
            name = names.get(m["path"]) or m.get("name") or os.path.basename(m["path"])
            found.append({"label": "%s (%s)" % (name, m.get("source", "")) if m.get("source") else name,
                          "path": m["path"], "tasks": m.get("tasks", []), "source": m.get("source", "")})
        missing = [{"label": "%s: not installed (%s)" % (c.get("name", c.get("id")), c.get("repo", "")), "path": None,
                    "repo": c.get("repo", ""), "folder": c.get("folder", "")}
                   for c in report.get("catalog", []) if not c.get("found")]
        return found, missing

    # ---- work off the UI thread
    def busy(self):
        return self._thread is not None and self._thread.is_alive()

    def _start(self, fn, job):
        if self.busy():
            raise RuntimeError("a job is running; cancel it or wait for it")
        self._cancel.clear()

        def work():
            with self._lock:
                try:
                    fn()
                except self.loupe.LoupeError as e:
                    if e.status_name == "CANCELLED":
                        self._events.put(("cancelled", job))
                    else:
                        self._events.put(("error", str(e), self.remedies(job.get("model")), job))
                except Exception as e:  # never lose a failure on the worker thread
                    self._events.put(("error", "%s: %s" % (type(e).__name__, e), [], job))
        self._thread = threading.Thread(target=work, name="loupe-krita", daemon=True)
        self._thread.start()

    def load_tasks(self, path):
        """Opens the model (once; it stays resident) and sends ("tasks", path, its tasks)."""
        job = {"kind": "open", "model": path}
        self._start(lambda: self._events.put(("tasks", path, self.session(path).tasks())), job)

    def run(self, job):
        """job: {"model", "task", "image", "mask", "region", "params"}; sends progress, then done."""
        def fn():
            s = self.session(job["model"])

            def progress(step, total, stage, preview):
                self._events.put(("progress", step, total, stage, preview))
                return not self._cancel.is_set()
            res = s.run(job["task"], image=job.get("image"), mask=job.get("mask"), region=job.get("region"),
                        progress=progress, **job.get("params", {}))
            if self._cancel.is_set():
                self._events.put(("cancelled", job))
            else:
                self._events.put(("done", res, job))
        self._start(fn, job)

    def cancel(self):
        """Stops the job at its next step (the SDK's cancel between steps)."""
        self._cancel.set()

    def poll(self):
        out = []
        while True:
            try:
                out.append(self._events.get_nowait())
            except queue.Empty:
                return out

    def wait(self, timeout=None):
        if self._thread is not None:
            self._thread.join(timeout)

    # ---- errors
    def remedies(self, model=None):
        """What diagnostics advise: the model's problems (loupe_model_inspect) and the runtime's."""
        out = []
        try:
            if model:
                for p in self.runtime().inspect(model).get("problems", []):
                    if p.get("remedy") and p.get("severity") != "info":
                        out.append("%s: %s" % (p.get("message", ""), p["remedy"]))
            for p in self.runtime().diagnostics().get("problems", []):
                if p.get("remedy"):
                    out.append("%s: %s" % (p.get("message", ""), p["remedy"]))
        except Exception as e:  # diagnostics must never hide the first error
            out.append("(diagnostics failed: %s)" % e)
        return out
