"""What a run sends, from the task's inputs and the document's selection. Plain Python + numpy.

- A task that takes a mask (inpainting) gets the selection as its mask, and only the selection's
  bounds (grown by `margin` px of context, inside the image) are sent: the crop and its mask.
- A task that takes an image and makes images (image to image) on a selection: the same crop and
  the selection, so the result only replaces the selected part.
- Other image tasks get the whole image; a task that takes a region gets the selection's bounds.
- A task without an image input (text to image) places its result at the selection's top-left.
"""
from . import forms, pixels


class NotReady(ValueError):
    """A required input the document cannot give (e.g. no selection for a mask)."""


def prepare(task, width, height, sel, margin=0):
    """{"rect": (x0, y0, x1, y1) in the document (what is sent, or where the result goes),
    "mask": the selection over rect (0..255) or None, "send_image", "send_mask", "region": the
    selection's bounds in the sent image's pixels or None}."""
    b = pixels.bounds(sel) if sel is not None else None
    g = forms.gather(task, b is not None)
    if g["problem"]:
        raise NotReady(g["problem"])
    makes_images = "images" in task.get("outputs", [])
    out = {"rect": None, "mask": None, "send_image": g["image"], "send_mask": False, "region": None}
    if g["image"]:
        if b is not None and (g["mask"] or makes_images):
            rect = pixels.grow(b, margin, width, height)
            out["mask"] = pixels.crop(sel, rect)
            out["send_mask"] = g["mask"]
        else:
            rect = (0, 0, width, height)
        out["rect"] = rect
    elif b is not None:
        out["rect"] = b
    if g["region"] and b is not None:
        x0, y0 = out["rect"][:2] if out["rect"] else (0, 0)
        out["region"] = (b[0] - x0, b[1] - y0, b[2] - x0, b[3] - y0)
    return out
