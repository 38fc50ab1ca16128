"""loupe-batch: one Loupe task over a whole dataset, on Dask distributed.

    loupe-batch caption --model DIR --input photos/ --output out/ --workers 2 --set max_new_tokens=64
    loupe-batch detect --model DIR --input 'shards/*.tar' --output out/ --scheduler tcp://host:8786

Inputs: a folder (searched recursively), a glob, a list file (one path per line, relative to the
list file; '#' starts a comment), .tar shards (every image member is an item), or a manifest
(.jsonl: one JSON object a line, {"image": PATH, "text": ..., "mask": PATH, "region": [x0, y0, x1,
y1], "set": {NAME: VALUE}}, for items with their own prompt, question, mask or parameters); --input
may be repeated. Each Dask worker process opens the model once and keeps the session resident (a
per-process cache, `_session`); items travel to the workers in batches. Results come back to this
process, the only writer of the output folder:

    OUTPUT/results.jsonl   one record per item: key, input, task, model, parameters, result (the SDK's
                           result JSON), images (files, relative to OUTPUT), seconds, error, worker
    OUTPUT/images/         image outputs (masks, generated images) as PNG, written before their record
    OUTPUT/summary.json    the last run's summary

Safe to interrupt and rerun: records are appended and fsync'ed one batch at a time (a torn last
line, from a crash mid-write, is cut off when the file is opened again), image files are written
to a temporary name and renamed. A rerun skips every item already recorded, keyed by input path,
task and parameters (failed items too, unless --retry-failed). An error on one item is recorded
and the run goes on. A worker that dies has its batch rerun on another by the scheduler; a batch
that keeps killing workers is split and, item by item, the culprit is recorded as failed.

Parameters given with --set are typed by the SDK's task table (loupe_tasks_json): ints, floats,
bools, choices and strings are checked before anything starts.
"""
import argparse
import glob
import hashlib
import io
import json
import math
import os
import signal
import socket
import sys
import tarfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".pgm", ".pnm", ".tif", ".tiff", ".gif")
TAR_EXTS = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
RESULTS, SUMMARY, IMAGES_DIR, LOCK = "results.jsonl", "summary.json", "images", ".loupe-batch.lock"


class UsageError(Exception):
    """A command line that cannot run (reported before anything starts, exit status 2)."""


class SessionError(RuntimeError):
    """A worker could not open the model: the same for every item, so the run stops."""


# ---------------------------------------------------------------- the binding


def import_loupe():
    """The Python binding (samples/python/loupe.py). The library: $LOUPE_LIBRARY, else libloupe.so.0
    on the loader's path, else this checkout's build/lib/libloupe.so.0."""
    import importlib
    import importlib.util

    if "loupe" in sys.modules:
        return sys.modules["loupe"]
    if importlib.util.find_spec("loupe") is None:
        sys.path.append(os.path.join(REPO, "samples", "python"))
    try:
        return importlib.import_module("loupe")
    except OSError:
        built = os.path.join(REPO, "build", "lib", "libloupe.so.0")
        if os.environ.get("LOUPE_LIBRARY") or not os.path.exists(built):
            raise
        os.environ["LOUPE_LIBRARY"] = built
        return importlib.import_module("loupe")


def task_table(loupe):
    """The library's task table (loupe_tasks_json with no session: every task, generic defaults)."""
    own = getattr(loupe, "tasks", None)  # the binding's loupe.tasks(), where it has it
    if callable(own):
        try:
            table = own()
            return json.loads(table) if isinstance(table, (str, bytes)) else table
        except Exception:  # a different signature than expected: ask the library directly
            pass
    import ctypes as C

    f = loupe._lib.loupe_tasks_json
    f.restype, f.argtypes = C.c_int, [C.c_void_p, C.POINTER(C.c_void_p)]
    free = loupe._lib.loupe_string_free
    free.restype, free.argtypes = None, [C.c_void_p]
    p = C.c_void_p()
    if f(None, C.byref(p)) != 0:
        raise RuntimeError("loupe_tasks_json failed: %s" % loupe._last_error().decode("utf-8", "replace"))
    try:
        return json.loads(C.string_at(p).decode("utf-8"))
    finally:
        free(p)


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def typed_params(desc, sets, text=None):
    """--set key=value pairs typed by the task's description; the task's text input ("text" or
    "prompt", or --text) goes under the description's text key."""
    task = desc["name"]
    by_name = {p["name"]: p for p in desc.get("params", [])}
    text_key = (desc.get("text") or {}).get("key") or ""
    out = {}
    if text is not None:
        if not text_key:
            raise UsageError("task '%s' takes no text (--text)" % task)
        out[text_key] = text
    for kv in sets:
        if "=" not in kv:
            raise UsageError("--set takes key=value, got '%s'" % kv)
        k, v = kv.split("=", 1)
        k = k.strip()
        if k in ("text", "prompt", text_key) and text_key:
            out[text_key] = v
            continue
        p = by_name.get(k)
        if p is None:
            raise UsageError("task '%s' has no parameter '%s'; it takes: %s" % (
                task, k, ", ".join(sorted(by_name) + ([text_key] if text_key else [])) or "none"))
        t = p["type"]
        try:
            if t == "int":
                value = int(v, 0)
            elif t == "float":
                value = float(v)
                if not math.isfinite(value):
                    raise ValueError
            elif t == "bool":
                if v.strip().lower() not in _TRUE + _FALSE:
                    raise ValueError
                value = v.strip().lower() in _TRUE
            else:
                value = v
        except ValueError:
            raise UsageError("%s: '%s' is not a%s %s" % (k, v, "n" if t == "int" else "", t)) from None
        if t == "choice" and value not in p.get("choices", []):
            raise UsageError("%s: '%s' is not one of %s" % (k, v, ", ".join(p.get("choices", []))))
        if t in ("int", "float"):
            lo, hi = p.get("min"), p.get("max")
            if lo is not None and hi is not None and hi >= lo and not (lo <= value <= hi):
                raise UsageError("%s: %s is outside %g .. %g" % (k, v, lo, hi))
        out[k] = value
    return out


# ---------------------------------------------------------------- inputs


def _is_image(name):
    return name.lower().endswith(IMAGE_EXTS)


def _is_tar(name):
    return name.lower().endswith(TAR_EXTS)


def _tar_items(path):
    path = os.path.abspath(path)
    plain = path.lower().endswith(".tar")
    items = []
    with tarfile.open(path, "r:" if plain else "r:*") as tf:
        for m in tf:
            if m.isfile() and _is_image(m.name):
                it = {"id": "%s::%s" % (path, m.name), "path": path, "member": m.name}
                if plain:
                    it["offset"], it["size"] = m.offset_data, m.size
                items.append(it)
    return items


def _path_items(path, origin):
    if os.path.isdir(path):
        found = []
        for root, dirs, files in os.walk(path):
            dirs.sort()
            found += [os.path.join(root, f) for f in sorted(files) if _is_image(f)]
        return [{"id": os.path.abspath(f), "path": os.path.abspath(f)} for f in found]
    if not os.path.isfile(path):
        raise UsageError("%s: '%s' does not exist" % (origin, path))
    if _is_tar(path):
        return _tar_items(path)
    if _is_image(path):
        return [{"id": os.path.abspath(path), "path": os.path.abspath(path)}]
    return None  # a list file


MANIFEST_FIELDS = ("image", "text", "mask", "region", "set")


def _manifest_items(path):
    """A manifest (.jsonl): one JSON object a line, an item each, with what is its own:
    {"image": PATH, "text": STR, "mask": PATH, "region": [x0, y0, x1, y1], "set": {NAME: VALUE}}
    (paths relative to the manifest; only "image" is needed; blank lines and '#' lines skipped).
    What a line gives replaces the command line's --text / --mask / --region / --set for that item."""
    base = os.path.dirname(os.path.abspath(path))
    items = []

    def file_field(obj, name, where):
        v = obj[name]
        if not isinstance(v, str) or not v:
            raise UsageError('%s: "%s" must be a path (a string)' % (where, name))
        full = os.path.abspath(os.path.join(base, os.path.expanduser(v)))
        if not os.path.isfile(full):
            raise UsageError('%s: %s \'%s\' does not exist' % (where, name, v))
        return full

    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            where = "%s:%d" % (path, n)
            try:
                obj = json.loads(line)
            except ValueError as e:
                raise UsageError("%s: not a JSON object (%s)" % (where, e)) from None
            if not isinstance(obj, dict) or "image" not in obj:
                raise UsageError('%s: each line is a JSON object with at least "image": a path' % where)
            unknown = sorted(set(obj) - set(MANIFEST_FIELDS))
            if unknown:
                raise UsageError("%s: unknown field(s) %s; a line may have: %s" % (
                    where, ", ".join(unknown), ", ".join(MANIFEST_FIELDS)))
            image = file_field(obj, "image", where)
            if not _is_image(image):
                raise UsageError("%s: '%s' is not an image file (%s)" % (where, obj["image"], ", ".join(IMAGE_EXTS)))
            it = {"id": image, "path": image, "where": where}
            if "text" in obj:
                if not isinstance(obj["text"], str):
                    raise UsageError('%s: "text" must be a string' % where)
                it["text"] = obj["text"]
            if "mask" in obj:
                it["mask"] = file_field(obj, "mask", where)
            if "region" in obj:
                r = obj["region"]
                if not (isinstance(r, list) and len(r) == 4 and all(
                        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in r)):
                    raise UsageError('%s: "region" must be [x0, y0, x1, y1] (numbers)' % where)
                it["region"] = [float(v) for v in r]
            if "set" in obj:
                if not isinstance(obj["set"], dict):
                    raise UsageError('%s: "set" must be an object {name: value}' % where)
                it["sets"] = ["%s=%s" % (k, ("true" if v else "false") if isinstance(v, bool) else v)
                              for k, v in sorted(obj["set"].items())]
            items.append(it)
    return items


def list_items(inputs):
    """The items of every --input, in order, each once: {"id", "path"[, "member", "offset", "size"]}
    (manifest items also "where" and what the line gives: "text", "mask", "region", "sets")."""
    items, seen = [], set()
    for spec in inputs:
        if spec.lower().endswith(".jsonl") and os.path.isfile(spec):
            found = _manifest_items(spec)
        elif any(c in spec for c in "*?[") and not os.path.exists(spec):
            matches = sorted(glob.glob(spec, recursive=True))
            if not matches:
                raise UsageError("--input '%s' matches nothing" % spec)
            found = []
            for m in matches:
                found += _path_items(m, "--input") or []
        else:
            found = _path_items(spec, "--input")
            if found is None:  # one path per line, relative to the list file
                base = os.path.dirname(os.path.abspath(spec))
                found = []
                with open(spec, encoding="utf-8") as f:
                    for n, line in enumerate(f, 1):
                        line = line.split("#", 1)[0].strip()
                        if line:
                            sub = _path_items(os.path.join(base, os.path.expanduser(line)), "%s:%d" % (spec, n))
                            if sub is None:
                                raise UsageError("%s:%d: '%s' is not an image, a folder or a .tar" % (spec, n, line))
                            found += sub
        for it in found:
            ident = json.dumps([it["id"], it.get("text"), it.get("mask"), it.get("region"), it.get("sets")])
            if ident not in seen:
                seen.add(ident)
                items.append(it)
    return items


def item_key(item_id, task, params, own=None):
    """What makes an item done: its input, the task and the parameters (typed), and the mask and
    region when the item has its own (a manifest line)."""
    s = json.dumps([item_id, task, params] + ([own] if own else []), sort_keys=True, ensure_ascii=False)
    return hashlib.sha1(s.encode("utf-8")).hexdigest()[:20]


# ---------------------------------------------------------------- the worker side


# Kept across a reload of this module (a worker plugin that sends it again re-imports it): a resident
# session is never dropped, nor opened twice.
_STATE = globals().get("_STATE") or {"lock": threading.Lock(), "key": None, "runtime": None, "session": None,
                                     "opens": 0, "masks": {}}


def _close_session():
    s, rt = _STATE["session"], _STATE["runtime"]
    _STATE.update(session=None, runtime=None, key=None)
    if s is not None:
        s.close()
    if rt is not None:
        rt.close()


def _session(spec):
    """This process's resident session (opened on the first batch, kept for every later one)."""
    with _STATE["lock"]:
        key = (spec["model"], spec["device"], spec.get("threads"))
        if _STATE["key"] == key:
            return _STATE["session"]
        _close_session()
        if spec.get("threads"):
            os.environ["LOUPE_NUM_THREADS"] = str(spec["threads"])  # read when the runtime is created
        try:
            loupe = import_loupe()
            rt = loupe.Runtime(device=spec["device"])
            try:
                s = rt.open_session(spec["model"])
            except Exception:
                rt.close()
                raise
        except Exception as e:
            raise SessionError("%s: cannot open the model %s: %s" % (socket.gethostname(), spec["model"], e)) from None
        if _STATE["opens"] == 0:
            import atexit

            atexit.register(_close_session)
        _STATE.update(key=key, runtime=rt, session=s, opens=_STATE["opens"] + 1)
        return s


def _read_item(item):
    if item.get("member") is None:
        with open(item["path"], "rb") as f:
            return f.read()
    if item.get("offset") is not None:
        with open(item["path"], "rb") as f:
            f.seek(item["offset"])
            return f.read(item["size"])
    with tarfile.open(item["path"], "r:*") as tf:
        return tf.extractfile(item["member"]).read()


def load_image(data, mode="RGB"):
    """Encoded image bytes -> HxWx3 (or HxW for mode "L") uint8 numpy array, as PIL decodes them."""
    import numpy as np
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        im = im.convert(mode)
        return np.asarray(im, dtype=np.uint8).copy()


def _png(array):
    from PIL import Image

    a = array[:, :, 0] if array.ndim == 3 and array.shape[2] == 1 else array
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def _mask(path):
    """A mask image (grey), read once per process (the last few kept)."""
    with _STATE["lock"]:
        masks = _STATE.setdefault("masks", {})
        if path not in masks:
            try:
                with open(path, "rb") as f:
                    data = f.read()
                masks[path] = load_image(data, "L")
            except Exception as e:
                why = "not an image file PIL can read" if type(e).__name__ == "UnidentifiedImageError" else str(e)
                raise ValueError("cannot read the mask %s: %s" % (path, why)) from None
            while len(masks) > 16:
                masks.pop(next(iter(masks)))
        return masks[path]


def run_batch(spec, items):
    """Runs the task on each item with this process's resident session; one record per item (an
    item's error is its record's error). Image outputs travel back as PNG bytes (record["_png"])."""
    session = _session(spec)
    worker = "%s:%d" % (socket.gethostname(), os.getpid())
    records = []
    for it in items:
        t0 = time.perf_counter()
        params = it.get("params", spec["params"])
        mask_path, region = it.get("mask") or spec.get("mask"), it.get("region") or spec.get("region")
        rec = {"key": it["key"], "input": it["id"], "task": spec["task"], "model": spec["model"],
               "parameters": params, "result": None, "images": [], "seconds": None, "error": None,
               "worker": worker, "session_opens": _STATE["opens"]}
        if it.get("mask") or it.get("region"):
            rec["mask"], rec["region"] = it.get("mask"), it.get("region")
        try:
            mask = _mask(mask_path) if mask_path else None
            try:
                image = load_image(_read_item(it))
            except Exception as e:
                why = "not an image file PIL can read" if type(e).__name__ == "UnidentifiedImageError" else str(e)
                raise ValueError("cannot read %s: %s" % (it["id"], why)) from None
            res = session.run(spec["task"], image=image, mask=mask, region=region, **params)
            rec["result"] = res.json
            rec["_png"] = [_png(a) for a in res.images] if res.images and not isinstance(res.images[0], tuple) else []
        except Exception as e:  # recorded; the run goes on
            rec["error"] = "%s: %s" % (type(e).__name__, e)
        rec["seconds"] = round(time.perf_counter() - t0, 4)
        records.append(rec)
    return records


# ---------------------------------------------------------------- the output folder


class ResultStore:
    """OUTPUT/results.jsonl: read at start (last record of a key wins; a torn last line is cut off),
    then appended one batch at a time (one write, fsync)."""

    def __init__(self, path):
        self.path = path
        self.records = {}
        self.torn = 0
        data = b""
        if os.path.exists(path):
            with open(path, "rb") as f:
                data = f.read()
        end = data.rfind(b"\n") + 1
        if end < len(data):  # a line cut by a crash: never a record
            self.torn = 1
            with open(path, "r+b") as f:
                f.truncate(end)
                os.fsync(f.fileno())
        for line in data[:end].splitlines():
            try:
                rec = json.loads(line)
                self.records[rec["key"]] = rec
            except (ValueError, KeyError, TypeError):
                self.torn += 1
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def done(self, key, retry_failed=False):
        rec = self.records.get(key)
        return rec is not None and not (retry_failed and rec.get("error"))

    def append(self, records):
        data = b"".join(json.dumps(r, ensure_ascii=False).encode("utf-8") + b"\n" for r in records)
        view = memoryview(data)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]
        os.fsync(self.fd)
        for r in records:
            self.records[r["key"]] = r

    def close(self):
        os.close(self.fd)


def _write_atomic(path, data):
    tmp = "%s.tmp-%d" % (path, os.getpid())
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _image_name(item_id, key, i):
    stem = os.path.splitext(os.path.basename(item_id.split("::")[-1]))[0]
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)[:80] or "item"
    return "%s-%s-%d.png" % (stem, key[:10], i)


def _save_images(out_dir, rec):
    pngs = rec.pop("_png", None) or []
    if pngs:
        os.makedirs(os.path.join(out_dir, IMAGES_DIR), exist_ok=True)
    for i, data in enumerate(pngs):
        rel = os.path.join(IMAGES_DIR, _image_name(rec["input"], rec["key"], i))
        _write_atomic(os.path.join(out_dir, rel), data)
        rec["images"].append(rel)
    return rec


# ---------------------------------------------------------------- the run


def parse_args(argv):
    ap = argparse.ArgumentParser(
        prog="loupe-batch", description="Run one Loupe task over many images on a Dask cluster.",
        epilog="Results: OUTPUT/results.jsonl (one JSON record per item), OUTPUT/images/, OUTPUT/summary.json. "
               "Rerun the same command to continue an interrupted run.")
    ap.add_argument("task", help="a task of the library's table (caption, detect, ocr, ground, ...)")
    ap.add_argument("--model", required=True, help="the model folder (the same path on every worker)")
    ap.add_argument("--input", action="append", required=True,
                    help="a folder, a glob, a list file (one path per line), a .tar shard, or a .jsonl manifest "
                         "(per item: image, text, mask, region, set); repeatable")
    ap.add_argument("--output", required=True, help="the output folder (results.jsonl, images/)")
    where = ap.add_mutually_exclusive_group()
    where.add_argument("--scheduler", help="a running Dask scheduler, e.g. tcp://host:8786")
    where.add_argument("--workers", type=int, help="start a local cluster of N worker processes (default 1)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a task parameter, typed by the task's description; repeatable")
    ap.add_argument("--text", help="the task's text input (a prompt, a caption to ground, a question)")
    ap.add_argument("--mask", help="a mask image for tasks that take one (the same for every item)")
    ap.add_argument("--region", help="x0,y0,x1,y1 for region tasks (the same for every item)")
    ap.add_argument("--device", default="auto", help="the workers' device: auto, cpu, cuda, cuda:1 (default auto)")
    ap.add_argument("--threads", type=int,
                    help="CPU threads per worker (default: local cluster, cores / workers; else the SDK's)")
    ap.add_argument("--batch-size", type=int, default=0, help="items per batch sent to a worker (default: auto)")
    ap.add_argument("--retry-failed", action="store_true", help="run again the items whose record is an error")
    ap.add_argument("--limit", type=int, default=0, help="process at most N of the pending items, then stop")
    ap.add_argument("--dashboard", action="store_true", help="local cluster: serve Dask's dashboard (needs bokeh)")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    a = ap.parse_args(argv)
    if a.workers is not None and a.workers < 1:
        ap.error("--workers must be at least 1")
    return a


class _Run:
    def __init__(self):
        self.ok = self.failed = self.resubmitted = 0
        self.t_ready = None  # when the workers were up: the rate is measured from there
        self.workers_seen = set()
        self.opens = {}


def _summary(args, run, total, skipped, pending, t0, interrupted, fatal, nworkers, out_dir):
    processed = run.ok + run.failed
    now = time.time()
    seconds, busy = now - t0, now - (run.t_ready or now)
    s = {"task": args.task, "model": os.path.abspath(args.model), "inputs": total, "skipped_already_done": skipped,
         "pending": pending, "processed": processed, "ok": run.ok, "failed": run.failed,
         "left": total - skipped - processed, "interrupted": interrupted, "error": fatal, "seconds": round(seconds, 3),
         "startup_seconds": round(run.t_ready - t0, 3) if run.t_ready else None,
         "items_per_second": round(processed / busy, 4) if processed and busy > 0 else None, "workers": nworkers,
         "worker_processes": sorted(run.workers_seen), "batches_split_after_worker_deaths": run.resubmitted,
         "results": os.path.join(out_dir, RESULTS)}
    _write_atomic(os.path.join(out_dir, SUMMARY), (json.dumps(s, indent=1) + "\n").encode())
    return s


def _print_summary(s, retry_hint):
    state = "interrupted" if s["interrupted"] else "stopped by the error below" if s["error"] else "done"
    lines = ["loupe-batch %s: %s" % (s["task"], state),
             "  %d inputs: %d already done, %d processed this run (%d ok, %d failed), %d left" % (
                 s["inputs"], s["skipped_already_done"], s["processed"], s["ok"], s["failed"], s["left"]),
             "  %.1f s (%.1f s to start the workers), %s items/s on %d worker(s) (%d process(es) used)" % (
                 s["seconds"], s["startup_seconds"] or 0, s["items_per_second"] or 0, s["workers"],
                 len(s["worker_processes"])),
             "  results: %s" % s["results"]]
    if s["batches_split_after_worker_deaths"]:
        lines.append("  %d batch(es) rerun item by item after killing workers" % s["batches_split_after_worker_deaths"])
    if s["failed"] and retry_hint:
        lines.append("  failed items are recorded with their error; rerun with --retry-failed to try them again")
    if s["left"] and not s["error"]:
        lines.append("  rerun the same command to continue")
    print("\n".join(lines), file=sys.stderr)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv=None):
    try:
        args = parse_args(argv)
        return _main(args)
    except UsageError as e:
        print("loupe-batch: %s" % e, file=sys.stderr)
        return 2


def _main(args):
    loupe = import_loupe()
    table = {t["name"]: t for t in task_table(loupe)}
    desc = table.get(args.task)
    image_tasks = sorted(n for n, t in table.items() if "image" in t.get("required", []) and not t.get("runtime"))
    if desc is None or args.task not in image_tasks:
        raise UsageError("'%s' is not a task that runs on an image per item; these are: %s" % (
            args.task, ", ".join(image_tasks)))
    params = typed_params(desc, args.set, args.text)
    required = desc.get("required", [])
    text_key = (desc.get("text") or {}).get("key")
    needs_text = bool(text_key) and ("text" in required or "question" in required)
    region = None
    if args.region:
        try:
            region = [float(v) for v in args.region.split(",")]
            assert len(region) == 4
        except (ValueError, AssertionError):
            raise UsageError("--region takes x0,y0,x1,y1") from None
    model = os.path.abspath(args.model)
    if not os.path.exists(model):
        raise UsageError("--model: '%s' does not exist" % args.model)
    items = list_items(args.input)
    if not items:
        raise UsageError("no images found in %s" % ", ".join(args.input))
    for it in items:  # each item's own parameters (manifest lines), checked before anything starts
        where = it.get("where")
        if "text" in it or "sets" in it:
            try:
                own = typed_params(desc, it.get("sets", []), it.get("text"))
            except UsageError as e:
                raise UsageError("%s: %s" % (where, e)) from None
            it["params"] = dict(params, **own)
        if needs_text and text_key not in it.get("params", params):
            raise UsageError("%stask '%s' needs a text: --text, --set %s=... or \"text\" in a manifest line" % (
                where + ": " if where else "", args.task, text_key))
        if "mask" in required and not (it.get("mask") or args.mask):
            raise UsageError("%stask '%s' needs a mask: --mask FILE or \"mask\" in a manifest line" % (
                where + ": " if where else "", args.task))

    out_dir = os.path.abspath(args.output)
    os.makedirs(out_dir, exist_ok=True)
    import fcntl

    lock = open(os.path.join(out_dir, LOCK), "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        raise UsageError("another loupe-batch run is writing to %s" % out_dir) from None
    store = ResultStore(os.path.join(out_dir, RESULTS))
    if store.torn:
        print("loupe-batch: %s: dropped %d torn line(s) left by an interrupted write" % (store.path, store.torn),
              file=sys.stderr)
    for it in items:
        own = {k: it[k] for k in ("mask", "region") if it.get(k)}
        it["key"] = item_key(it["id"], args.task, it.get("params", params), own)
    pending = [it for it in items if not store.done(it["key"], args.retry_failed)]
    skipped = len(items) - len(pending)
    if args.limit > 0:
        pending = pending[: args.limit]
    spec = {"task": args.task, "model": model, "params": params, "device": args.device, "threads": args.threads,
            "mask": os.path.abspath(args.mask) if args.mask else None, "region": region}
    run, t0 = _Run(), time.time()
    if not pending:
        s = _summary(args, run, len(items), skipped, 0, t0, False, None, 0, out_dir)
        _print_summary(s, True)
        return 0
    # SIGTERM stops a run like Ctrl-C: what is written stays, the cluster is closed.
    signal.signal(signal.SIGTERM, _interrupt)
    return _run_on_cluster(args, spec, items, pending, skipped, store, run, t0, out_dir)


def _run_on_cluster(args, spec, items, pending, skipped, store, run, t0, out_dir):
    import logging

    from distributed import Client, LocalCluster, as_completed
    from distributed.scheduler import KilledWorker
    from tqdm import tqdm

    cluster = client = bar = None
    interrupted, fatal, nworkers = False, None, 0
    try:
        if args.scheduler:
            client = Client(args.scheduler, timeout="30s")
            # Workers started by hand may not have these modules on their path: send them (a worker
            # plugin, so that restarted workers get them too). The library and the model folder must
            # be there already (LOUPE_LIBRARY or the loader's path; the same model path).
            from distributed.diagnostics.plugin import UploadFile

            for path in (os.path.abspath(__file__), import_loupe().__file__):
                try:
                    client.register_worker_plugin(UploadFile(path), name="loupe-batch:" + os.path.basename(path))
                except Exception as e:
                    print("loupe-batch: could not send %s to the workers: %s" % (os.path.basename(path), e),
                          file=sys.stderr)
        else:
            nworkers = args.workers or 1
            if not args.threads and spec["device"] in ("auto", "cpu"):
                spec["threads"] = max(1, (os.cpu_count() or 1) // nworkers)
            env = {"LOUPE_NUM_THREADS": str(spec["threads"])} if spec["threads"] else {}
            cluster = LocalCluster(n_workers=nworkers, threads_per_worker=1, processes=True, memory_limit=0,
                                   dashboard_address=":8787" if args.dashboard else None,
                                   silence_logs=logging.ERROR, env=env)
            client = Client(cluster)
            if args.dashboard:
                print("loupe-batch: dashboard at %s" % client.dashboard_link, file=sys.stderr)
        client.wait_for_workers(1, timeout=120)
        nworkers = len(client.scheduler_info()["workers"])
        run.t_ready = time.time()
        batch = args.batch_size or max(1, min(16, math.ceil(len(pending) / (4 * nworkers))))
        batches = [pending[i:i + batch] for i in range(0, len(pending), batch)]
        token = hashlib.sha1(("%s %f %d" % (out_dir, t0, os.getpid())).encode()).hexdigest()[:8]
        window = max(4, 3 * nworkers)  # batches in flight: enough to keep every worker busy
        queue = list(reversed(batches))
        by_future = {}
        counter = [0]

        def submit(b):
            counter[0] += 1
            f = client.submit(run_batch, spec, b, key="loupe-batch-%s-%d" % (token, counter[0]), pure=False)
            by_future[f.key] = b
            return f

        ac = as_completed([submit(queue.pop()) for _ in range(min(window, len(queue)))])
        bar = tqdm(total=len(pending), unit="item", desc=args.task, disable=args.quiet, mininterval=0.5,
                   smoothing=0.1, file=sys.stderr)
        for fut in ac:
            b = by_future.pop(fut.key)
            try:
                records = fut.result()
            except KilledWorker as e:
                if len(b) > 1:  # find the item that kills workers: rerun this batch item by item
                    run.resubmitted += 1
                    for one in b:
                        ac.add(submit([one]))
                    continue
                records = [{"key": b[0]["key"], "input": b[0]["id"], "task": spec["task"], "model": spec["model"],
                            "parameters": b[0].get("params", spec["params"]), "result": None, "images": [], "seconds": None,
                            "error": "the worker process died on this item, on every try (%s)" % e, "worker": None}]
            except SessionError as e:
                fatal = str(e)
                break
            except Exception as e:  # not an item's error (those are in the records): the setup is wrong
                fatal = "%s: %s" % (type(e).__name__, e)
                break
            finally:
                fut.release()
            for r in records:
                r["batch"] = fut.key
                _save_images(out_dir, r)
            store.append(records)
            for r in records:
                run.failed += 1 if r["error"] else 0
                run.ok += 0 if r["error"] else 1
                if r.get("worker"):
                    run.workers_seen.add(r["worker"])
            bar.update(len(records))
            bar.set_postfix(failed=run.failed, workers=len(client.scheduler_info()["workers"]), refresh=False)
            if queue:
                ac.add(submit(queue.pop()))
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if bar is not None:
            bar.close()
        for c in (client, cluster):
            if c is not None:
                try:
                    c.close(timeout=10)
                except BaseException:
                    pass
        store.close()
    s = _summary(args, run, len(items), skipped, len(pending), t0, interrupted, fatal, nworkers, out_dir)
    _print_summary(s, True)
    if fatal:
        print("loupe-batch: %s" % fatal, file=sys.stderr)
        return 1
    if interrupted:
        return 130
    return 1 if run.failed else 0
