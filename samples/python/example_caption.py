#!/usr/bin/env python3
"""Captions an image and detects objects with a Florence-2 folder.
Usage: LOUPE_LIBRARY=build/lib/libloupe.so.0 python3 example_caption.py MODEL_DIR image.png
(needs numpy and Pillow to read the image)"""
import sys

import numpy as np
from PIL import Image

import loupe

model, path = sys.argv[1], sys.argv[2]
pixels = np.asarray(Image.open(path).convert("RGB"))
try:
    with loupe.Runtime() as rt, rt.open_session(model) as session:
        print(session.run("caption", image=pixels).text)
        for box in session.run("detect", image=pixels).boxes:
            print(box)
except loupe.LoupeError as e:
    print("Loupe:", e, file=sys.stderr)
    sys.exit(1)
