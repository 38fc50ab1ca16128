"""The thin layer over Krita's Python API (module krita): reading layers and the selection,
carrying out a result plan (results.py), the live-preview layer. Everything else is plain Python.
Call only on Krita's UI thread."""
from krita import Krita, Selection

from . import pixels

PREVIEW_NAME = "Loupe preview (temporary)"


class KritaError(Exception):
    pass


def active_document():
    return Krita.instance().activeDocument()


def pt_per_px(doc):
    res = doc.resolution() or 72
    return 72.0 / float(res)


def check_rgba8(doc):
    if doc.colorModel() != "RGBA" or doc.colorDepth() != "U8":
        raise KritaError("Loupe works on RGB/Alpha 8-bit images; this one is %s %s: convert it with "
                         "Image > Convert Image Color Space (RGB/Alpha, 8-bit integer/channel)"
                         % (doc.colorModel(), doc.colorDepth()))


def selection(doc):
    """The selection as a document-sized uint8 array (soft values kept), or None without one."""
    sel = doc.selection()
    if sel is None or sel.width() <= 0 or sel.height() <= 0:
        return None
    w, h = doc.width(), doc.height()
    return pixels.selection_array(sel.pixelData(0, 0, w, h), w, h)


def read_rgba(doc, node, rect):
    """RGBA pixels of rect: the node's own pixels for a paint layer, its projection otherwise, or
    the visible image (node None)."""
    x0, y0, x1, y1 = rect
    w, h = x1 - x0, y1 - y0
    if node is None:
        data = doc.pixelData(x0, y0, w, h)
    elif node.type() == "paintlayer":
        data = node.pixelData(x0, y0, w, h)
    else:
        data = node.projectionPixelData(x0, y0, w, h)
    return pixels.bgra_to_rgba(data, w, h)


def _write(node, rgba, x, y):
    h, w = rgba.shape[:2]
    node.setPixelData(pixels.rgba_to_bgra_bytes(rgba), x, y, w, h)


def apply(doc, source, ops, preview=None):
    """Carries out a plan; returns the new nodes and the texts. Each new layer is one step of
    Krita's undo history: the live preview's layer (already in the document, added in one step)
    becomes the first picture, so undoing a run takes one step and leaves no preview behind."""
    root = doc.rootNode()
    parent = source.parentNode() if source is not None and source.parentNode() is not None else root
    made, texts = [], []
    for op in ops:
        kind = op["op"]
        if kind == "paint_layer" and preview is not None and preview.node is not None:
            node = preview.adopt(op["name"])
            preview = None
            if op["over_source"] and source is not None:
                _write(node, read_rgba(doc, source, (0, 0, doc.width(), doc.height())), 0, 0)
            _write(node, op["rgba"], op["x"], op["y"])
            made.append(node)
        elif kind == "paint_layer":
            if op["over_source"] and source is not None and source.type() == "paintlayer":
                node = source.duplicate()  # the source's pixels and settings; the source is not touched
                node.setName(op["name"])
            else:
                node = doc.createNode(op["name"], "paintlayer")
                if op["over_source"] and source is not None:
                    full = read_rgba(doc, source, (0, 0, doc.width(), doc.height()))
                    _write(node, full, 0, 0)
            _write(node, op["rgba"], op["x"], op["y"])
            parent.addChildNode(node, source)
            made.append(node)
        elif kind == "selection":
            m = op["mask"]
            s = Selection()
            s.setPixelData(m.tobytes(), op["x"], op["y"], m.shape[1], m.shape[0])
            doc.setSelection(s)
        elif kind == "mask_layer":
            target = source if source is not None and source.type() == "paintlayer" else None
            if target is None:
                continue
            m = op["mask"]
            mask = doc.createNode(op["name"], "transparencymask")
            s = Selection()
            s.setPixelData(m.tobytes(), op["x"], op["y"], m.shape[1], m.shape[0])
            if hasattr(mask, "setSelection"):
                mask.setSelection(s)
            else:
                mask.setPixelData(m.tobytes(), op["x"], op["y"], m.shape[1], m.shape[0])
            target.addChildNode(mask, None)
            made.append(mask)
        elif kind == "vector_layer":
            node = doc.createVectorLayer(op["name"])
            root.addChildNode(node, None)
            node.addShapesFromSvg(op["svg"])
            made.append(node)
        elif kind == "text":
            texts.append(op["text"])
    doc.refreshProjection()
    return made, texts


class Preview:
    """The live preview: a temporary paint layer above the source layer, rewritten at each step (no
    undo step), then either made the result's layer (adopt) or removed (cancel, error)."""

    def __init__(self, doc, source=None):
        self.doc = doc
        self.source = source
        self.node = None
        self.written = None  # (x, y, w, h) last written

    def show(self, rgba, x, y):
        if self.node is None:
            self.node = self.doc.createNode(PREVIEW_NAME, "paintlayer")
            parent = self.source.parentNode() if self.source is not None else None
            if parent is not None:
                parent.addChildNode(self.node, self.source)
            else:
                self.doc.rootNode().addChildNode(self.node, None)
        self._clear()
        _write(self.node, rgba, x, y)
        self.written = (x, y, rgba.shape[1], rgba.shape[0])
        self.doc.refreshProjection()

    def _clear(self):
        if self.written is not None:
            x, y, w, h = self.written
            self.node.setPixelData(bytes(4 * w * h), x, y, w, h)
            self.written = None

    def adopt(self, name):
        """The preview's layer, emptied and renamed, for the result."""
        self._clear()
        node, self.node = self.node, None
        node.setName(name)
        return node

    def remove(self):
        if self.node is not None:
            self.node.remove()
            self.node = None
            self.doc.refreshProjection()
