"""scikit-learn's handwritten digits as an image set: 1,797 real 8x8 scans that ship inside scikit-learn.

They make a small labelled set to train on without any download (the ABN tests and `camstudy train-abn
--images digits`). Each 8x8 grey scan (values 0-16, ink bright) is scaled to 0-255, upsampled bilinearly
to `DIGITS_SIZE` pixels and repeated into RGB, so the digits are ordinary images for every other part of
camstudy. Labels are the digits 0-9, and the class names are "0".."9".
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from study.images import ImageItem

DIGITS_SIZE = 64
DIGIT_CLASSES = [str(d) for d in range(10)]


def digits_images(size: int = DIGITS_SIZE) -> list[ImageItem]:
    """Every digit as an RGB `ImageItem` of `size` x `size` pixels; `labels` = (the digit,), ids `digits/0000`..."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    grey = np.round(digits.images * (255 / 16)).astype(np.uint8)
    return [
        ImageItem(image_id=f"digits/{i:04d}",
                  image=Image.fromarray(scan).resize((size, size), Image.BILINEAR).convert("RGB"),
                  labels=(int(label),), source="sklearn:digits", description=f"handwritten {label}")
        for i, (scan, label) in enumerate(zip(grey, digits.target))
    ]
