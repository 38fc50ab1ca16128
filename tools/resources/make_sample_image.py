#!/usr/bin/env python3
"""Draws resources/images/sample.jpg: a street scene with a red car, a house, a tree, a dog-like
shape and a shop sign with text (for detection, grounding, OCR and inpainting demos). Made here,
so it carries no third-party license. Run: /usr/bin/python3 tools/resources/make_sample_image.py"""
import os
from PIL import Image, ImageDraw, ImageFilter, ImageFont

W, H = 768, 512
img = Image.new("RGB", (W, H))
d = ImageDraw.Draw(img)
for y in range(H):  # sky to ground gradient
    t = y / H
    d.line([(0, y), (W, y)], fill=(int(120 + 80 * t), int(170 + 40 * t), int(235 - 60 * t)) if y < 300
           else (int(95 + 30 * t), int(95 + 30 * t), int(100 + 25 * t)))
d.rectangle([0, 300, W, 330], fill=(170, 170, 165))            # sidewalk
d.polygon([(60, 170), (200, 80), (340, 170)], fill=(150, 60, 50))  # roof
d.rectangle([80, 170, 320, 300], fill=(225, 205, 160))         # house
d.rectangle([180, 220, 225, 300], fill=(110, 70, 40))          # door
d.rectangle([100, 195, 150, 240], fill=(160, 200, 230))        # window
d.rectangle([250, 195, 300, 240], fill=(160, 200, 230))
d.rectangle([520, 90, 740, 150], fill=(30, 60, 120))           # shop sign
font_path = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"
font = ImageFont.truetype(font_path, 28) if os.path.exists(font_path) else ImageFont.load_default()
d.text((538, 104), "LOUPE CAFE", fill=(250, 240, 200), font=font)
d.rectangle([560, 150, 700, 300], fill=(200, 190, 180))        # shop front
d.rectangle([585, 175, 675, 260], fill=(120, 160, 190))
d.rectangle([395, 140, 420, 300], fill=(100, 70, 40))          # tree trunk
d.ellipse([340, 40, 480, 180], fill=(50, 130, 60))             # tree crown
# red car
d.rounded_rectangle([250, 360, 560, 440], radius=18, fill=(200, 30, 35))
d.polygon([(310, 360), (350, 315), (470, 315), (510, 360)], fill=(190, 25, 30))
d.polygon([(325, 360), (358, 325), (405, 325), (405, 360)], fill=(170, 210, 235))
d.polygon([(415, 360), (415, 325), (462, 325), (495, 360)], fill=(170, 210, 235))
for cx in (320, 490):
    d.ellipse([cx - 32, 410, cx + 32, 474], fill=(25, 25, 25))
    d.ellipse([cx - 14, 428, cx + 14, 456], fill=(160, 160, 160))
# dog
d.ellipse([620, 390, 720, 440], fill=(140, 95, 55))
d.ellipse([700, 365, 745, 405], fill=(140, 95, 55))
for lx in (635, 660, 685, 705):
    d.rectangle([lx, 430, lx + 10, 470], fill=(120, 80, 45))
d.polygon([(620, 405), (595, 385), (600, 400)], fill=(140, 95, 55))
img = img.filter(ImageFilter.GaussianBlur(0.6))
out = os.path.join(os.path.dirname(__file__), "..", "..", "resources", "images", "sample.jpg")
img.save(os.path.normpath(out), quality=90)
print("wrote", os.path.normpath(out))
