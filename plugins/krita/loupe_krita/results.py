"""What a result becomes in the document: a list of operations the Krita adapter carries out.
Plain Python + numpy (no Krita): the tests check the plan, the adapter only applies it.

  {"op": "paint_layer", "name", "rgba", "x", "y", "over_source"}  a new paint layer; over_source:
        a copy of the source layer with rgba written at (x, y) (the source stays untouched below)
  {"op": "selection", "mask", "x", "y"}                            the document's selection
  {"op": "mask_layer", "name", "mask", "x", "y"}                   a transparency mask on the layer
  {"op": "vector_layer", "name", "svg"}                            shapes with their labels
  {"op": "text", "text"}                                           written into the docker
"""
from xml.sax.saxutils import escape, quoteattr

from . import pixels

COLORS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6", "#bcf60c"]


def _color(label, order):
    if label not in order:
        order.append(label)
    return COLORS[order.index(label) % len(COLORS)]


def shapes_svg(boxes, polygons, width, height, dx=0.0, dy=0.0, pt_per_px=1.0):
    """Boxes and polygons (image pixels of the sent image, moved by dx, dy into the document) as an
    SVG document of the document's size (width x height px = pt_per_px * that in pt, Krita's
    vector unit) with a label text at each shape's top-left; one colour per label."""
    order = []
    stroke = max(1.0, min(width, height) / 256.0)
    font = max(8.0, min(width, height) / 40.0)
    parts = ['<svg xmlns="http://www.w3.org/2000/svg" width="%gpt" height="%gpt" viewBox="0 0 %d %d">'
             % (width * pt_per_px, height * pt_per_px, width, height)]

    def label_at(text, x, y, color):
        if text:
            parts.append('<text x="%.2f" y="%.2f" font-family="sans-serif" font-size="%.1f" fill=%s>%s</text>'
                         % (x, max(font, y - stroke), font, quoteattr(color), escape(text)))

    for b in boxes:
        c = _color(b.label, order)
        x0, y0, x1, y1 = b.x0 + dx, b.y0 + dy, b.x1 + dx, b.y1 + dy
        parts.append('<rect x="%.2f" y="%.2f" width="%.2f" height="%.2f" fill="none" stroke=%s stroke-width="%.2f"/>'
                     % (x0, y0, max(0.0, x1 - x0), max(0.0, y1 - y0), quoteattr(c), stroke))
        label_at(b.label, x0, y0, c)
    for p in polygons:
        if not p.points:
            continue
        c = _color(p.label, order)
        pts = " ".join("%.2f,%.2f" % (x + dx, y + dy) for x, y in p.points)
        parts.append('<polygon points="%s" fill=%s fill-opacity="0.25" stroke=%s stroke-width="%.2f"/>'
                     % (pts, quoteattr(c), quoteattr(c), stroke))
        x0 = min(x for x, _ in p.points) + dx
        y0 = min(y for _, y in p.points) + dy
        label_at(p.label, x0, y0, c)
    parts.append("</svg>")
    return "\n".join(parts)


def _numbers_text(numbers):
    return ", ".join("%s %s" % (k, ("%g" % v) if isinstance(v, float) else v) for k, v in numbers.items())


def plan(task, result, ctx):
    """The operations for a result. ctx: {"rect": (x0, y0, x1, y1) of the sent image in the document
    (None: nothing was sent), "source": the sent pixels (RGBA), "mask": the selection over the rect
    (0..255) or None, "doc_size": (w, h), "source_name", "pt_per_px"}."""
    label = task.get("label") or task["name"]
    rect = ctx.get("rect")
    x0, y0 = (rect[0], rect[1]) if rect else (0, 0)
    outputs = set(task.get("outputs", []))
    ops = []
    pictures = [im for im in result.images if im.ndim == 3 and im.shape[2] in (3, 4)]
    masks = [im for im in result.images if im.ndim == 2 or im.shape[2] == 1]
    for i, im in enumerate(pictures):
        name = "%s%s" % (label, " %d" % (i + 1) if len(pictures) > 1 else "")
        if ctx.get("source") is not None and ctx.get("mask") is not None:
            # A repaint of the selection: the source copy with the result laid in through the selection.
            ops.append({"op": "paint_layer", "name": name, "x": x0, "y": y0, "over_source": True,
                        "rgba": pixels.blend(ctx["source"], im, ctx["mask"])})
        elif ctx.get("source") is not None and "image" in task.get("inputs", []):
            h, w = ctx["source"].shape[:2]
            ops.append({"op": "paint_layer", "name": name, "x": x0, "y": y0, "over_source": False,
                        "rgba": pixels.to_rgba(pixels.resize_nearest(pixels.to_rgba(im), w, h))})
        else:
            ops.append({"op": "paint_layer", "name": name, "x": x0, "y": y0, "over_source": False,
                        "rgba": pixels.to_rgba(im)})
    for i, m in enumerate(masks):
        m2 = m if m.ndim == 2 else m[:, :, 0]
        ops.append({"op": "selection", "mask": m2, "x": x0, "y": y0})
        ops.append({"op": "mask_layer", "name": "%s mask%s" % (label, " %d" % (i + 1) if len(masks) > 1 else ""),
                    "mask": m2, "x": x0, "y": y0})
    if result.boxes or result.polygons:
        w, h = ctx.get("doc_size", (0, 0))
        ops.append({"op": "vector_layer", "name": label,
                    "svg": shapes_svg(result.boxes, result.polygons, w, h, x0, y0, ctx.get("pt_per_px", 1.0))})
    lines = []
    if result.text and ("text" in outputs or not (result.boxes or result.polygons or result.images)):
        lines.append(result.text)
    for b in result.boxes:
        lines.append("%s: %.0f, %.0f – %.0f, %.0f" % (b.label or "box", b.x0 + x0, b.y0 + y0, b.x1 + x0, b.y1 + y0))
    for p in result.polygons:
        lines.append("%s: %s, %d points" % (p.label or "shape", getattr(p.kind, "value", p.kind), len(p.points)))
    if result.numbers:
        lines.append(_numbers_text(result.numbers))
    if lines:
        ops.append({"op": "text", "text": "\n".join(lines)})
    return ops
