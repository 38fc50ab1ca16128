"""Pixels between Krita and the SDK: selections to masks, crops, blending results back. numpy only.

Krita's RGBA 8-bit layers hand out BGRA bytes (Node.pixelData); selections are one byte per pixel
(Selection.pixelData, 255 = selected, soft selections in between). The SDK takes RGB8/RGBA8 images
and GRAY8 masks (255 = repaint).
"""
import numpy as np


def bgra_to_rgba(data, width, height):
    a = np.frombuffer(bytes(data), dtype=np.uint8).reshape(height, width, 4)
    return a[:, :, [2, 1, 0, 3]].copy()


def rgba_to_bgra_bytes(rgba):
    return np.ascontiguousarray(rgba[:, :, [2, 1, 0, 3]]).tobytes()


def to_rgba(img):
    """HxW (gray), HxWx1, HxWx3 or HxWx4 uint8 -> HxWx4 (opaque where there was no alpha)."""
    a = np.asarray(img, dtype=np.uint8)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    if a.shape[2] == 3:
        a = np.concatenate([a, np.full(a.shape[:2] + (1,), 255, np.uint8)], axis=2)
    return np.ascontiguousarray(a)


def selection_array(data, width, height):
    return np.frombuffer(bytes(data), dtype=np.uint8).reshape(height, width).copy()


def bounds(mask):
    """(x0, y0, x1, y1) of the pixels a mask selects at all (end exclusive), or None when empty."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def grow(rect, margin, width, height):
    """A rectangle grown by margin on every side, kept inside width x height."""
    x0, y0, x1, y1 = rect
    return max(0, x0 - margin), max(0, y0 - margin), min(width, x1 + margin), min(height, y1 + margin)


def crop(img, rect):
    x0, y0, x1, y1 = rect
    return np.ascontiguousarray(img[y0:y1, x0:x1])


def resize_nearest(img, width, height):
    """Nearest-neighbour resize (previews and results whose size differs from the crop's)."""
    h, w = img.shape[:2]
    if (w, h) == (width, height):
        return img
    ys = (np.arange(height) * h // height).clip(0, h - 1)
    xs = (np.arange(width) * w // width).clip(0, w - 1)
    return np.ascontiguousarray(img[ys][:, xs])


def blend(source, result, mask):
    """source (HxWx4) with result laid over it through mask (HxW, 0..255): 0 keeps the source pixel
    exactly, 255 takes the result's, values between mix them (a soft selection feathers the edge).
    The result is resized to the source's size first when it differs."""
    h, w = source.shape[:2]
    res = to_rgba(resize_nearest(to_rgba(result), w, h)).astype(np.uint32)
    src = source.astype(np.uint32)
    m = np.asarray(mask, dtype=np.uint32)[:, :, None]
    out = (src * (255 - m) + res * m + 127) // 255
    out = out.astype(np.uint8)
    keep = (m[:, :, 0] == 0)
    out[keep] = source[keep]  # exactly, whatever the rounding
    return out


def mask_to_alpha(mask, color=(255, 255, 255)):
    """A GRAY8 mask as an RGBA layer: the colour where it is set, transparent elsewhere."""
    m = np.asarray(mask, dtype=np.uint8)
    if m.ndim == 3:
        m = m[:, :, 0]
    out = np.zeros(m.shape + (4,), np.uint8)
    out[:, :, 0], out[:, :, 1], out[:, :, 2] = color
    out[:, :, 3] = m
    return out
