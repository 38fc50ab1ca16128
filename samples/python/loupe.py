"""Loupe for Python, over the C ABI with ctypes (no compiled extension).

    import loupe
    with loupe.Runtime(device="auto") as rt:
        print(rt.selftest().text)
        with rt.open_session("models/Florence-2-large") as s:
            res = s.run("detect", image=pixels)          # numpy HxWx3/4 uint8, or (w, h, bytes, channels)
            for box in res.boxes: print(box.label, box.x0, box.y0, box.x1, box.y1)
            print([t["name"] for t in s.tasks()])        # the tasks it offers, with their parameters

Tasks and parameters are the library's: loupe.tasks() (the whole table, generic defaults) and
Session.tasks() (what a model offers, defaults fitted to it) return its description as dicts
(loupe_tasks_json). run() sets each parameter with the setter its described type needs; the
library checks the request at submit (unknown key, type, range, choices, required inputs).
Errors raise loupe.LoupeError carrying the status and loupe_last_error()'s message.
The library is found through $LOUPE_LIBRARY, else libloupe.so.0 on the loader's path.
"""
import ctypes as C
import enum
import json
import os
import threading

try:
    import numpy as _np
except ImportError:  # numpy is optional: images then travel as (width, height, bytes, channels)
    _np = None

__all__ = ["LoupeError", "Runtime", "Session", "Result", "Box", "Polygon", "ShapeKind", "version", "tasks",
           "PARAM_TYPES", "INPUTS", "OUTPUTS"]

_lib = C.CDLL(os.environ.get("LOUPE_LIBRARY", "libloupe.so.0"))

STATUS_NAMES = {0: "OK", -1: "INVALID_ARGUMENT", -2: "NOT_FOUND", -3: "BAD_MODEL", -4: "UNSUPPORTED",
                -5: "OUT_OF_MEMORY", -6: "CANCELLED", -7: "TIMEOUT", -8: "INVALID_STATE", -9: "INTERNAL"}
RGBA8, RGB8, GRAY8 = 1, 2, 3
PRECISIONS = {"auto": 0, "fp32": 1, "fp16": 2, "bf16": 3}
# loupe_param_type, LOUPE_INPUT_* and LOUPE_OUTPUT_* (the JSON description uses the names).
PARAM_TYPES = {1: "int", 2: "float", 3: "string", 4: "bool", 5: "choice"}
INPUTS = {0x1: "image", 0x2: "mask", 0x4: "text", 0x8: "region", 0x10: "question"}
OUTPUTS = {0x1: "text", 0x2: "boxes", 0x4: "polygons", 0x8: "masks", 0x10: "images", 0x20: "numbers"}

_NEEDS = 200  # 0.2.0: the init functions, the task description, loupe_result_get_box/get_polygon
_lib.loupe_version_number.restype = C.c_uint32
if _lib.loupe_version_number() < _NEEDS:
    raise ImportError("this binding needs libloupe 0.2 or newer; %s is %s"
                      % (os.environ.get("LOUPE_LIBRARY", "libloupe.so.0"),
                         C.cast(_lib.loupe_version(), C.c_char_p).value.decode()))


class LoupeError(Exception):
    """A failed Loupe call: .status (int), .status_name, and the SDK's message."""

    def __init__(self, status, message):
        super().__init__("%s: %s" % (STATUS_NAMES.get(status, status), message))
        self.status = status
        self.status_name = STATUS_NAMES.get(status, str(status))
        self.message = message


class ShapeKind(str, enum.Enum):
    """What a box or polygon is (loupe_shape_kind); compares equal to the result JSON's "kind"."""
    BOX = "box"          # LOUPE_SHAPE_BOX: an axis-aligned box
    QUAD = "quad"        # LOUPE_SHAPE_QUAD: four corners, clockwise from top-left (OCR lines)
    POLYGON = "polygon"  # LOUPE_SHAPE_POLYGON: an outline (segmentation)


_SHAPE_KINDS = {1: ShapeKind.BOX, 2: ShapeKind.QUAD, 3: ShapeKind.POLYGON}


# ---------------------------------------------------------------- C layouts (loupe.h)
# Structs starting with struct_size are filled with their defaults by the library's loupe_*_init
# (never by hand here); _check_layouts() below makes sure each layout fits the library loaded.

class _Image(C.Structure):
    _fields_ = [("width", C.c_int32), ("height", C.c_int32), ("stride", C.c_int32), ("format", C.c_int),
                ("data", C.c_void_p)]


class _RuntimeOptions(C.Structure):
    _fields_ = [("struct_size", C.c_uint32), ("device", C.c_char_p), ("precision", C.c_int),
                ("vram_budget_bytes", C.c_uint64), ("models_dir", C.c_char_p), ("log_fn", C.c_void_p),
                ("log_user", C.c_void_p), ("log_level", C.c_int), ("num_threads", C.c_int32)]


class _SessionOptions(C.Structure):
    _fields_ = [("struct_size", C.c_uint32), ("device", C.c_char_p), ("precision", C.c_int)]


class _SessionInfo(C.Structure):
    _fields_ = [("struct_size", C.c_uint32), ("family", C.c_char_p), ("variant", C.c_char_p), ("tasks", C.c_char_p),
                ("device", C.c_char_p), ("dtype", C.c_char_p), ("path", C.c_char_p), ("bytes", C.c_uint64),
                ("resident", C.c_int32)]


class _ScanOptions(C.Structure):
    _fields_ = [("struct_size", C.c_uint32), ("dirs", C.POINTER(C.c_char_p)), ("dir_count", C.c_size_t),
                ("skip_default_locations", C.c_int32), ("catalog_path", C.c_char_p), ("models_dir", C.c_char_p)]


class _TaskInfo(C.Structure):
    _fields_ = [("struct_size", C.c_uint32), ("name", C.c_char_p), ("label", C.c_char_p), ("help", C.c_char_p),
                ("group", C.c_char_p), ("inputs", C.c_uint32), ("required", C.c_uint32), ("outputs", C.c_uint32),
                ("text_key", C.c_char_p), ("text_label", C.c_char_p), ("text_help", C.c_char_p),
                ("runtime", C.c_int32), ("param_count", C.c_size_t)]


class _ParamInfo(C.Structure):
    _fields_ = [("struct_size", C.c_uint32), ("name", C.c_char_p), ("type", C.c_int), ("label", C.c_char_p),
                ("help", C.c_char_p), ("unit", C.c_char_p), ("default_number", C.c_double),
                ("default_string", C.c_char_p), ("min", C.c_double), ("max", C.c_double), ("step", C.c_double),
                ("choice_count", C.c_size_t), ("choices", C.POINTER(C.c_char_p)), ("advanced", C.c_int32)]


class _Progress(C.Structure):
    _fields_ = [("struct_size", C.c_uint32), ("step", C.c_int32), ("total", C.c_int32), ("stage", C.c_char_p),
                ("preview", C.POINTER(_Image))]


class _Box(C.Structure):
    _fields_ = [("struct_size", C.c_uint32), ("kind", C.c_int), ("x0", C.c_float), ("y0", C.c_float),
                ("x1", C.c_float), ("y1", C.c_float), ("score", C.c_float), ("label", C.c_char_p)]


class _Polygon(C.Structure):
    _fields_ = [("struct_size", C.c_uint32), ("kind", C.c_int), ("points", C.POINTER(C.c_float)),
                ("point_count", C.c_size_t), ("label", C.c_char_p), ("group", C.c_int32)]


_PROGRESS_FN = C.CFUNCTYPE(C.c_int, C.c_void_p, C.POINTER(_Progress))
_LOG_FN = C.CFUNCTYPE(None, C.c_void_p, C.c_int, C.c_char_p)
_P = C.c_void_p


def _fn(name, restype, *argtypes):
    f = getattr(_lib, name)
    f.restype = restype
    f.argtypes = list(argtypes)
    return f


_version = _fn("loupe_version", C.c_char_p)
_version_number = _fn("loupe_version_number", C.c_uint32)
_last_error = _fn("loupe_last_error", C.c_char_p)
_string_free = _fn("loupe_string_free", None, _P)
_runtime_create = _fn("loupe_runtime_create", C.c_int, C.POINTER(_P), C.POINTER(_RuntimeOptions))
_runtime_free = _fn("loupe_runtime_free", None, _P)
_runtime_device = _fn("loupe_runtime_device", C.c_char_p, _P)
_runtime_diagnostics = _fn("loupe_runtime_diagnostics", C.c_int, _P, C.POINTER(_P))
_model_inspect = _fn("loupe_model_inspect", C.c_int, _P, C.c_char_p, C.POINTER(_P))
_models_scan = _fn("loupe_models_scan", C.c_int, _P, C.POINTER(_ScanOptions), C.POINTER(_P))
_session_open = _fn("loupe_session_open", C.c_int, C.POINTER(_P), _P, C.c_char_p, C.POINTER(_SessionOptions))
_session_close = _fn("loupe_session_close", None, _P)
_session_describe = _fn("loupe_session_describe", C.c_int, _P, C.POINTER(_SessionInfo))
_task_count = _fn("loupe_task_count", C.c_size_t, _P)
_task_describe = _fn("loupe_task_describe", C.c_int, _P, C.c_size_t, C.POINTER(_TaskInfo))
_task_find = _fn("loupe_task_find", C.c_int, _P, C.c_char_p, C.POINTER(C.c_size_t))
_task_param = _fn("loupe_task_param", C.c_int, _P, C.c_size_t, C.c_size_t, C.POINTER(_ParamInfo))
_tasks_json = _fn("loupe_tasks_json", C.c_int, _P, C.POINTER(_P))
_request_create = _fn("loupe_request_create", C.c_int, C.POINTER(_P), C.c_char_p)
_request_free = _fn("loupe_request_free", None, _P)
_request_set_image = _fn("loupe_request_set_image", C.c_int, _P, C.POINTER(_Image))
_request_add_image = _fn("loupe_request_add_image", C.c_int, _P, C.POINTER(_Image))
_request_set_mask = _fn("loupe_request_set_mask", C.c_int, _P, C.POINTER(_Image))
_request_set_string = _fn("loupe_request_set_string", C.c_int, _P, C.c_char_p, C.c_char_p)
_request_set_int = _fn("loupe_request_set_int", C.c_int, _P, C.c_char_p, C.c_int64)
_request_set_float = _fn("loupe_request_set_float", C.c_int, _P, C.c_char_p, C.c_double)
_request_set_region = _fn("loupe_request_set_region", C.c_int, _P, C.c_float, C.c_float, C.c_float, C.c_float)
_session_submit = _fn("loupe_session_submit", C.c_int, C.POINTER(_P), _P, _P, _PROGRESS_FN, _P)
_runtime_submit = _fn("loupe_runtime_submit", C.c_int, C.POINTER(_P), _P, _P, _PROGRESS_FN, _P)
_job_wait = _fn("loupe_job_wait", C.c_int, _P, C.c_int64)
_job_cancel = _fn("loupe_job_cancel", C.c_int, _P)
_job_take_result = _fn("loupe_job_take_result", C.c_int, C.POINTER(_P), _P)
_job_free = _fn("loupe_job_free", None, _P)
_result_free = _fn("loupe_result_free", None, _P)
_result_json = _fn("loupe_result_json", C.c_char_p, _P)
_result_text = _fn("loupe_result_text", C.c_char_p, _P)
_result_task = _fn("loupe_result_task", C.c_char_p, _P)
_result_box_count = _fn("loupe_result_box_count", C.c_size_t, _P)
_result_get_box = _fn("loupe_result_get_box", C.c_int, _P, C.c_size_t, C.POINTER(_Box))
_result_polygon_count = _fn("loupe_result_polygon_count", C.c_size_t, _P)
_result_get_polygon = _fn("loupe_result_get_polygon", C.c_int, _P, C.c_size_t, C.POINTER(_Polygon))
_result_image_count = _fn("loupe_result_image_count", C.c_size_t, _P)
_result_image = _fn("loupe_result_image", C.c_int, _P, C.c_size_t, C.POINTER(_Image))

# Each struct with its loupe_*_init.
_INITS = {cls: _fn(name, C.c_int, C.POINTER(cls), C.c_uint32) for cls, name in [
    (_RuntimeOptions, "loupe_runtime_options_init"), (_SessionOptions, "loupe_session_options_init"),
    (_SessionInfo, "loupe_session_info_init"), (_ScanOptions, "loupe_scan_options_init"),
    (_TaskInfo, "loupe_task_info_init"), (_ParamInfo, "loupe_param_info_init"), (_Box, "loupe_box_init"),
    (_Polygon, "loupe_polygon_init")]}


def _check(status):
    if status != 0:
        raise LoupeError(status, _last_error().decode("utf-8", "replace"))


def _new(cls):
    """A struct filled with the library's defaults by its loupe_*_init (struct_size = our layout's size)."""
    s = cls()
    _check(_INITS[cls](C.byref(s), C.sizeof(cls)))
    return s


def _check_layouts():
    """Every layout above must be one the library accepts: loupe_*_init refuses a struct_size larger
    than its own struct (a layout from a newer header) or too small, and sets struct_size to ours."""
    for cls in _INITS:
        try:
            s = _new(cls)
        except LoupeError as e:
            raise ImportError("loupe.py's layout of %s (%d bytes) does not fit libloupe %s: %s"
                              % (cls.__name__, C.sizeof(cls), _version().decode(), e.message)) from None
        if s.struct_size != C.sizeof(cls):
            raise ImportError("loupe_*_init for %s set struct_size %d, expected %d"
                              % (cls.__name__, s.struct_size, C.sizeof(cls)))


_check_layouts()


def _take_string(p):
    try:
        return C.string_at(p).decode("utf-8")
    finally:
        _string_free(p)


def _s(b):
    return b.decode("utf-8") if b is not None else ""


def version():
    return _version().decode()


def _tasks_of(handle):
    p = _P()
    _check(_tasks_json(handle, C.byref(p)))
    return json.loads(_take_string(p))


def tasks():
    """The library's task table (also the runtime tasks "selftest" and "download"), generic defaults:
    [{name, label, help, group, runtime, inputs, required, outputs, text: {key, label, help},
      params: [{name, type ("int", "float", "string", "bool", "choice"), label, help, unit, advanced,
                default, min, max, step, choices}]}]."""
    return _tasks_of(None)


def _task_structs(handle):
    """The same description through loupe_task_describe / loupe_task_param (the C structs)."""
    out = []
    for i in range(_task_count(handle)):
        t = _new(_TaskInfo)
        _check(_task_describe(handle, i, C.byref(t)))
        params = []
        for j in range(t.param_count):
            p = _new(_ParamInfo)
            _check(_task_param(handle, i, j, C.byref(p)))
            params.append({"name": _s(p.name), "type": PARAM_TYPES[p.type], "label": _s(p.label), "help": _s(p.help),
                           "unit": _s(p.unit), "default_number": p.default_number,
                           "default_string": _s(p.default_string), "min": p.min, "max": p.max, "step": p.step,
                           "choices": [_s(p.choices[k]) for k in range(p.choice_count)],
                           "advanced": bool(p.advanced)})
        out.append({"name": _s(t.name), "label": _s(t.label), "help": _s(t.help), "group": _s(t.group),
                    "inputs": [n for b, n in INPUTS.items() if t.inputs & b],
                    "required": [n for b, n in INPUTS.items() if t.required & b],
                    "outputs": [n for b, n in OUTPUTS.items() if t.outputs & b],
                    "text_key": _s(t.text_key), "runtime": bool(t.runtime), "params": params})
    return out


class _TaskTable:
    """A description (library or session) by task name, read once."""

    def __init__(self, handle):
        self._handle = handle
        self._by_name = None

    def get(self, name):
        if self._by_name is None:
            self._by_name = {t["name"]: t for t in _tasks_of(self._handle)}
        return self._by_name.get(name)


_library_tasks = _TaskTable(None)


class Box:
    """A box of a result: kind (ShapeKind.BOX), x0, y0, x1, y1 (image pixels), score, label."""

    def __init__(self, b):
        self.kind = _SHAPE_KINDS.get(b.kind, b.kind)
        self.x0, self.y0, self.x1, self.y1, self.score = b.x0, b.y0, b.x1, b.y1, b.score
        self.label = _s(b.label)

    def __repr__(self):
        return "Box(%r, %.1f, %.1f, %.1f, %.1f, score=%.3f)" % (self.label, self.x0, self.y0, self.x1, self.y1, self.score)


class Polygon:
    """A polygon of a result: kind (ShapeKind.QUAD for OCR lines, ShapeKind.POLYGON for outlines),
    points [(x, y), ...], label, group (the polygons of one object share it)."""

    def __init__(self, p):
        self.kind = _SHAPE_KINDS.get(p.kind, p.kind)
        pts = [p.points[i] for i in range(2 * p.point_count)]
        self.points = list(zip(pts[0::2], pts[1::2]))
        self.label = _s(p.label)
        self.group = p.group

    def __repr__(self):
        return "Polygon(%s, %r, %d points, group=%d)" % (self.kind.value if isinstance(self.kind, ShapeKind) else self.kind,
                                                         self.label, len(self.points), self.group)


class Result:
    """Everything a job produced, copied out of the SDK (the C result is freed at once)."""

    def __init__(self, handle):
        self.task = _result_task(handle).decode()
        self.text = _result_text(handle).decode("utf-8")
        self.json = json.loads(_result_json(handle).decode("utf-8"))
        self.numbers = self.json.get("numbers", {})
        self.boxes, self.polygons, self.images = [], [], []
        for i in range(_result_box_count(handle)):
            b = _new(_Box)
            _check(_result_get_box(handle, i, C.byref(b)))
            self.boxes.append(Box(b))
        for i in range(_result_polygon_count(handle)):
            p = _new(_Polygon)
            _check(_result_get_polygon(handle, i, C.byref(p)))
            self.polygons.append(Polygon(p))
        for i in range(_result_image_count(handle)):
            im = _Image()
            _check(_result_image(handle, i, C.byref(im)))
            self.images.append(_copy_image(im))


def _copy_image(im):
    """A copy of a loupe_image: numpy HxWxC uint8 (C = 1 for GRAY8 masks, 3, 4), or without numpy
    (width, height, bytes, channels), the form the inputs accept."""
    raw = C.string_at(im.data, im.stride * im.height)
    ch = {RGBA8: 4, RGB8: 3, GRAY8: 1}[im.format]
    if _np is not None:
        arr = _np.frombuffer(raw, dtype=_np.uint8).reshape(im.height, im.stride)[:, : im.width * ch]
        return arr.reshape(im.height, im.width, ch).copy()
    rows = [raw[y * im.stride: y * im.stride + im.width * ch] for y in range(im.height)]
    return (im.width, im.height, b"".join(rows), ch)


def _image_struct(image, keep):
    """numpy HxW (gray), HxWx3 or HxWx4 uint8, or (width, height, bytes, channels)."""
    if _np is not None and isinstance(image, _np.ndarray):
        a = _np.ascontiguousarray(image, dtype=_np.uint8)
        ch = 1 if a.ndim == 2 else a.shape[2]
        fmt = {1: GRAY8, 3: RGB8, 4: RGBA8}.get(ch)
        if fmt is None:
            raise LoupeError(-1, "image arrays must be HxW, HxWx3 or HxWx4 uint8, got shape %r" % (a.shape,))
        keep.append(a)
        return _Image(a.shape[1], a.shape[0], a.strides[0], fmt, a.ctypes.data)
    w, h, data, ch = image
    buf = C.create_string_buffer(bytes(data), len(data))
    keep.append(buf)
    return _Image(w, h, w * ch, {1: GRAY8, 3: RGB8, 4: RGBA8}[ch], C.cast(buf, C.c_void_p))


class Runtime:
    def __init__(self, device="auto", precision="auto", vram_budget_bytes=0, models_dir=None, log=None, threads=0):
        self._log_cb = _LOG_FN(lambda user, level, msg: log(level, msg.decode("utf-8"))) if log else None
        o = _new(_RuntimeOptions)  # the library's defaults, then what was asked for
        o.device = device.encode()
        o.precision = PRECISIONS[precision]
        o.vram_budget_bytes = vram_budget_bytes
        o.models_dir = models_dir.encode() if models_dir else None
        o.log_fn = C.cast(self._log_cb, C.c_void_p) if log else None
        o.num_threads = threads
        self._h = _P()
        _check(_runtime_create(C.byref(self._h), C.byref(o)))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self._h:
            _runtime_free(self._h)
            self._h = _P()

    @property
    def device(self):
        return _runtime_device(self._h).decode()

    def diagnostics(self):
        p = _P()
        _check(_runtime_diagnostics(self._h, C.byref(p)))
        return json.loads(_take_string(p))

    def inspect(self, path):
        p = _P()
        _check(_model_inspect(self._h, path.encode(), C.byref(p)))
        return json.loads(_take_string(p))

    def scan(self, dirs=(), skip_default_locations=False, catalog_path=None, models_dir=None):
        """Models on this computer (loupe_models_scan): {roots, models, catalog}; the catalog's entries
        are judged against models_dir (default: the runtime's)."""
        o = _new(_ScanOptions)
        arr = (C.c_char_p * max(1, len(dirs)))(*[d.encode() for d in dirs])
        o.dirs = arr if dirs else None
        o.dir_count = len(dirs)
        o.skip_default_locations = 1 if skip_default_locations else 0
        o.catalog_path = catalog_path.encode() if catalog_path else None
        o.models_dir = models_dir.encode() if models_dir else None
        p = _P()
        _check(_models_scan(self._h, C.byref(o), C.byref(p)))
        return json.loads(_take_string(p))

    def open_session(self, path, device=None, precision="auto"):
        return Session(self, path, device=device, precision=precision)

    def run(self, task, progress=None, **params):
        """A runtime task of the table ("selftest", "download"), parameters as the table describes them."""
        return _run(lambda out, rq, cb: _runtime_submit(out, self._h, rq, cb, None), _library_tasks, task,
                    progress, params)

    def selftest(self, progress=None, **params):
        return self.run("selftest", progress, **params)


class Session:
    def __init__(self, runtime, path, device=None, precision="auto"):
        self._rt = runtime
        self._h = _P()
        o = _new(_SessionOptions)
        o.device = device.encode() if device else None
        o.precision = PRECISIONS[precision]
        _check(_session_open(C.byref(self._h), runtime._h, path.encode(), C.byref(o)))
        self._tasks = _TaskTable(self._h)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self._h:
            _session_close(self._h)
            self._h = _P()

    def describe(self):
        info = _new(_SessionInfo)
        _check(_session_describe(self._h, C.byref(info)))
        return {k: (getattr(info, k).decode() if isinstance(getattr(info, k), bytes) else getattr(info, k))
                for k, _ in _SessionInfo._fields_ if k != "struct_size"}

    def tasks(self):
        """The tasks this model offers, with defaults and ranges fitted to it (see loupe.tasks())."""
        return _tasks_of(self._h)

    def task(self, name):
        """One task's description; LoupeError NOT_FOUND (naming what it offers) if not offered."""
        index = C.c_size_t()
        _check(_task_find(self._h, name.encode(), C.byref(index)))
        return self._tasks.get(name)

    def run(self, task, image=None, mask=None, region=None, progress=None, **params):
        """Runs a task: image/mask as numpy arrays or (width, height, bytes, channels), region
        (x0, y0, x1, y1), its text input under its key (or text=/prompt=), and its parameters by
        name; None leaves a parameter at the model's default."""
        return _run(lambda out, rq, cb: _session_submit(out, self._h, rq, cb, None), self._tasks, task, progress,
                    params, image=image, mask=mask, region=region)


def _set_param(rq, desc, key, value):
    """Sets one parameter with the setter its described type needs. Values the description cannot
    type (unknown keys, strings that are no number) go as they are: the library refuses them at
    submit, naming the task, the key and what it accepts."""
    if value is None:
        return
    text = (desc or {}).get("text")
    if text and key in ("text", "prompt", "question"):
        key = text["key"]
    ptype = None
    for p in (desc or {}).get("params", []):
        if p["name"] == key:
            ptype = p["type"]
    k = key.encode()
    v = value
    if ptype in ("int", "bool"):
        if isinstance(v, str):
            s = v.strip().lower()
            if ptype == "bool" and s in ("true", "on", "yes", "false", "off", "no"):
                v = s in ("true", "on", "yes")
            else:
                try:
                    v = int(s)
                except ValueError:
                    try:
                        v = float(s)
                    except ValueError:
                        pass
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if isinstance(v, (bool, int)):
            return _check(_request_set_int(rq, k, int(v)))
        if isinstance(v, float):  # the library says it must be whole
            return _check(_request_set_float(rq, k, v))
    elif ptype == "float":
        if isinstance(v, str):
            try:
                v = float(v)
            except ValueError:
                pass
        if isinstance(v, (bool, int, float)):
            return _check(_request_set_float(rq, k, float(v)))
    elif ptype in ("string", "choice"):
        return _check(_request_set_string(rq, k, str(v).encode()))
    # Not described (the text input, or a key the task does not have), or not of the type.
    if isinstance(v, (bool, int)):
        _check(_request_set_int(rq, k, int(v)))
    elif isinstance(v, float):
        _check(_request_set_float(rq, k, v))
    else:
        _check(_request_set_string(rq, k, str(v).encode()))


def _run(submit, table, task, progress, params, image=None, mask=None, region=None):
    """Builds the request (parameters typed by the task's description), submits, waits (Ctrl-C
    cancels the job), returns a Result. progress(step, total, stage, preview) may return False to stop;
    preview is the picture so far (as Result.images holds them) when the task sends one, else None."""
    rq = _P()
    keep = []
    _check(_request_create(C.byref(rq), task.encode()))
    try:
        desc = table.get(task)  # None when not offered: submit says so
        if image is not None:
            _check(_request_set_image(rq, C.byref(_image_struct(image, keep))))
        if mask is not None:
            _check(_request_set_mask(rq, C.byref(_image_struct(mask, keep))))
        if region is not None:
            _check(_request_set_region(rq, *[float(v) for v in region]))
        for k, v in params.items():
            _set_param(rq, desc, k, v)

        def on_progress(user, p):
            if progress is None:
                return 1
            try:
                pv = p.contents.preview  # the picture so far, when the task makes one (a copy)
                preview = _copy_image(pv.contents) if pv and pv.contents.data else None
                return 0 if progress(p.contents.step, p.contents.total, p.contents.stage.decode(), preview) is False else 1
            except Exception:  # never let a Python exception cross into C
                return 0

        cb = _PROGRESS_FN(on_progress)
        job = _P()
        _check(submit(C.byref(job), rq, cb))
    finally:
        _request_free(rq)
    try:
        while _job_wait(job, 100) == -7:  # TIMEOUT: keep Python responsive to Ctrl-C
            pass
    except KeyboardInterrupt:
        _job_cancel(job)
        _job_wait(job, -1)
        raise
    finally:
        res = _P()
        status = _job_take_result(C.byref(res), job)
        message = _last_error().decode("utf-8", "replace")
        _job_free(job)
        del cb
    if status != 0:
        raise LoupeError(status, message)
    try:
        return Result(res)
    finally:
        _result_free(res)
