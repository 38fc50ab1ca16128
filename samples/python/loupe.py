"""Loupe for Python, over the C ABI with ctypes (no compiled extension).

    import loupe
    with loupe.Runtime(device="auto") as rt:
        print(rt.selftest().text)
        with rt.open_session("models/Florence-2-large") as s:
            res = s.run("detect", image=pixels)          # numpy HxWx3/4 uint8, or (w, h, bytes)
            for box in res.boxes: print(box.label, box.x0, box.y0, box.x1, box.y1)

Errors raise loupe.LoupeError carrying the status and loupe_last_error()'s message.
The library is found through $LOUPE_LIBRARY, else libloupe.so.0 on the loader's path.
"""
import ctypes as C
import json
import os
import threading

try:
    import numpy as _np
except ImportError:  # numpy is optional: images then travel as (width, height, bytes)
    _np = None

__all__ = ["LoupeError", "Runtime", "Session", "Result", "Box", "Polygon", "version"]

_lib = C.CDLL(os.environ.get("LOUPE_LIBRARY", "libloupe.so.0"))

STATUS_NAMES = {0: "OK", -1: "INVALID_ARGUMENT", -2: "NOT_FOUND", -3: "BAD_MODEL", -4: "UNSUPPORTED",
                -5: "OUT_OF_MEMORY", -6: "CANCELLED", -7: "TIMEOUT", -8: "INVALID_STATE", -9: "INTERNAL"}
RGBA8, RGB8, GRAY8 = 1, 2, 3
PRECISIONS = {"auto": 0, "fp32": 1, "fp16": 2, "bf16": 3}


class LoupeError(Exception):
    """A failed Loupe call: .status (int), .status_name, and the SDK's message."""

    def __init__(self, status, message):
        super().__init__("%s: %s" % (STATUS_NAMES.get(status, status), message))
        self.status = status
        self.status_name = STATUS_NAMES.get(status, str(status))
        self.message = message


class _Image(C.Structure):
    _fields_ = [("width", C.c_int32), ("height", C.c_int32), ("stride", C.c_int32), ("format", C.c_int),
                ("data", C.c_void_p)]


class _RuntimeOptions(C.Structure):
    _fields_ = [("struct_size", C.c_uint32), ("device", C.c_char_p), ("precision", C.c_int),
                ("vram_budget_bytes", C.c_uint64), ("models_dir", C.c_char_p), ("log_fn", C.c_void_p),
                ("log_user", C.c_void_p), ("log_level", C.c_int)]


class _SessionInfo(C.Structure):
    _fields_ = [("struct_size", C.c_uint32), ("family", C.c_char_p), ("variant", C.c_char_p), ("tasks", C.c_char_p),
                ("device", C.c_char_p), ("dtype", C.c_char_p), ("path", C.c_char_p), ("bytes", C.c_uint64),
                ("resident", C.c_int32)]


class _Progress(C.Structure):
    _fields_ = [("struct_size", C.c_uint32), ("step", C.c_int32), ("total", C.c_int32), ("stage", C.c_char_p),
                ("preview", C.POINTER(_Image))]


class _Box(C.Structure):
    _fields_ = [("x0", C.c_float), ("y0", C.c_float), ("x1", C.c_float), ("y1", C.c_float), ("score", C.c_float),
                ("label", C.c_char_p)]


class _Polygon(C.Structure):
    _fields_ = [("points", C.POINTER(C.c_float)), ("point_count", C.c_size_t), ("label", C.c_char_p),
                ("group", C.c_int32)]


_PROGRESS_FN = C.CFUNCTYPE(C.c_int, C.c_void_p, C.POINTER(_Progress))
_LOG_FN = C.CFUNCTYPE(None, C.c_void_p, C.c_int, C.c_char_p)
_P = C.c_void_p


def _fn(name, restype, *argtypes):
    f = getattr(_lib, name)
    f.restype = restype
    f.argtypes = list(argtypes)
    return f


_version = _fn("loupe_version", C.c_char_p)
_last_error = _fn("loupe_last_error", C.c_char_p)
_string_free = _fn("loupe_string_free", None, _P)
_runtime_create = _fn("loupe_runtime_create", C.c_int, C.POINTER(_P), C.POINTER(_RuntimeOptions))
_runtime_free = _fn("loupe_runtime_free", None, _P)
_runtime_device = _fn("loupe_runtime_device", C.c_char_p, _P)
_runtime_diagnostics = _fn("loupe_runtime_diagnostics", C.c_int, _P, C.POINTER(_P))
_model_inspect = _fn("loupe_model_inspect", C.c_int, _P, C.c_char_p, C.POINTER(_P))
_session_open = _fn("loupe_session_open", C.c_int, C.POINTER(_P), _P, C.c_char_p, _P)
_session_close = _fn("loupe_session_close", None, _P)
_session_describe = _fn("loupe_session_describe", C.c_int, _P, C.POINTER(_SessionInfo))
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
_result_box = _fn("loupe_result_box", C.c_int, _P, C.c_size_t, C.POINTER(_Box))
_result_polygon_count = _fn("loupe_result_polygon_count", C.c_size_t, _P)
_result_polygon = _fn("loupe_result_polygon", C.c_int, _P, C.c_size_t, C.POINTER(_Polygon))
_result_image_count = _fn("loupe_result_image_count", C.c_size_t, _P)
_result_image = _fn("loupe_result_image", C.c_int, _P, C.c_size_t, C.POINTER(_Image))


def _check(status):
    if status != 0:
        raise LoupeError(status, _last_error().decode("utf-8", "replace"))


def _take_string(p):
    try:
        return C.string_at(p).decode("utf-8")
    finally:
        _string_free(p)


def version():
    return _version().decode()


class Box:
    def __init__(self, b):
        self.x0, self.y0, self.x1, self.y1, self.score = b.x0, b.y0, b.x1, b.y1, b.score
        self.label = b.label.decode("utf-8")

    def __repr__(self):
        return "Box(%r, %.1f, %.1f, %.1f, %.1f, score=%.3f)" % (self.label, self.x0, self.y0, self.x1, self.y1, self.score)


class Polygon:
    def __init__(self, p):
        pts = [p.points[i] for i in range(2 * p.point_count)]
        self.points = list(zip(pts[0::2], pts[1::2]))
        self.label = p.label.decode("utf-8")
        self.group = p.group


class Result:
    """Everything a job produced, copied out of the SDK (the C result is freed at once)."""

    def __init__(self, handle):
        self.task = _result_task(handle).decode()
        self.text = _result_text(handle).decode("utf-8")
        self.json = json.loads(_result_json(handle).decode("utf-8"))
        self.numbers = self.json.get("numbers", {})
        self.boxes, self.polygons, self.images = [], [], []
        for i in range(_result_box_count(handle)):
            b = _Box()
            _check(_result_box(handle, i, C.byref(b)))
            self.boxes.append(Box(b))
        for i in range(_result_polygon_count(handle)):
            p = _Polygon()
            _check(_result_polygon(handle, i, C.byref(p)))
            self.polygons.append(Polygon(p))
        for i in range(_result_image_count(handle)):
            im = _Image()
            _check(_result_image(handle, i, C.byref(im)))
            raw = C.string_at(im.data, im.stride * im.height)
            ch = {RGBA8: 4, RGB8: 3, GRAY8: 1}[im.format]
            if _np is not None:
                arr = _np.frombuffer(raw, dtype=_np.uint8).reshape(im.height, im.stride)[:, : im.width * ch]
                self.images.append(arr.reshape(im.height, im.width, ch).copy())
            else:
                self.images.append((im.width, im.height, raw))


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


class _Job:
    def __init__(self):
        self.handle = _P()
        self.cancel_event = threading.Event()


class Runtime:
    def __init__(self, device="auto", precision="auto", vram_budget_bytes=0, models_dir=None, log=None):
        self._log_cb = _LOG_FN(lambda user, level, msg: log(level, msg.decode("utf-8"))) if log else None
        o = _RuntimeOptions(C.sizeof(_RuntimeOptions), device.encode(), PRECISIONS[precision], vram_budget_bytes,
                            models_dir.encode() if models_dir else None,
                            C.cast(self._log_cb, C.c_void_p) if log else None, None, 1)
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

    def open_session(self, path):
        return Session(self, path)

    def selftest(self, progress=None, **params):
        return _run(lambda out, rq, cb: _runtime_submit(out, self._h, rq, cb, None), "selftest", progress, params)


class Session:
    def __init__(self, runtime, path):
        self._rt = runtime
        self._h = _P()
        _check(_session_open(C.byref(self._h), runtime._h, path.encode(), None))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self._h:
            _session_close(self._h)
            self._h = _P()

    def describe(self):
        info = _SessionInfo()
        info.struct_size = C.sizeof(_SessionInfo)
        _check(_session_describe(self._h, C.byref(info)))
        return {k: (getattr(info, k).decode() if isinstance(getattr(info, k), bytes) else getattr(info, k))
                for k, _ in _SessionInfo._fields_ if k != "struct_size"}

    def run(self, task, image=None, mask=None, region=None, progress=None, **params):
        return _run(lambda out, rq, cb: _session_submit(out, self._h, rq, cb, None), task, progress, params,
                    image=image, mask=mask, region=region)


def _run(submit, task, progress, params, image=None, mask=None, region=None):
    """Builds the request, submits, waits (Ctrl-C cancels the job), returns a Result.
    progress(step, total, stage, preview) may return False to stop."""
    rq = _P()
    keep = []
    _check(_request_create(C.byref(rq), task.encode()))
    try:
        if image is not None:
            _check(_request_set_image(rq, C.byref(_image_struct(image, keep))))
        if mask is not None:
            _check(_request_set_mask(rq, C.byref(_image_struct(mask, keep))))
        if region is not None:
            _check(_request_set_region(rq, *[float(v) for v in region]))
        for k, v in params.items():
            if isinstance(v, bool) or isinstance(v, int):
                _check(_request_set_int(rq, k.encode(), int(v)))
            elif isinstance(v, float):
                _check(_request_set_float(rq, k.encode(), v))
            else:
                _check(_request_set_string(rq, k.encode(), str(v).encode()))

        def on_progress(user, p):
            if progress is None:
                return 1
            try:
                return 0 if progress(p.contents.step, p.contents.total, p.contents.stage.decode(), None) is False else 1
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
