"""scikit-learn's handwritten digits as an image set: 1,797 real 8x8 scans that ship inside scikit-learn.

They make a small labelled set to train on without any download (the ABN tests and `camstudy train-abn
--images digits`). Each 8x8 grey scan (values 0-16, ink bright) is scaled to 0-255, upsampled bilinearly
to `DIGITS_SIZE` pixels and repeated into RGB, so the digits are ordinary images for every other part of
camstudy. Labels are the digits 0-9, and the class names are "0".."9".

A fixed split makes a model's training set and a study's test images disjoint without bookkeeping:
`digits:test` is the first `TEST_PER_CLASS` scans of each digit (in scikit-learn's order), `digits:train`
all the others. A model trained on `digits:train` can be explained on `digits:test`, and the examples
task draws its training images from exactly the set the model was trained on.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from study.images.items import ImageItem

DIGITS_SIZE = 64
DIGIT_CLASSES = [str(d) for d in range(10)]
TEST_PER_CLASS = 10
DIGIT_SETS = ("digits", "digits:train", "digits:test")


def digits_images(size: int = DIGITS_SIZE, split: str = "digits") -> list[ImageItem]:
    """The digits of `split` (one of `DIGIT_SETS`) as RGB `ImageItem`s of `size` x `size` pixels;
    `labels` = (the digit,), ids `digits/0000`... (the scan's index in the whole set, whatever the split)."""
    from sklearn.datasets import load_digits

    if split not in DIGIT_SETS:
        raise ValueError(f"unknown digits set {split!r}; choose from {', '.join(DIGIT_SETS)}")
    digits = load_digits()
    grey = np.round(digits.images * (255 / 16)).astype(np.uint8)
    test = _test_indices(digits.target)
    return [
        ImageItem(image_id=f"digits/{i:04d}",
                  image=Image.fromarray(scan).resize((size, size), Image.BILINEAR).convert("RGB"),
                  labels=(int(label),), source="sklearn:digits", description=f"handwritten {label}")
        for i, (scan, label) in enumerate(zip(grey, digits.target))
        if split == "digits" or (i in test) == (split == "digits:test")
    ]


def _test_indices(labels: np.ndarray) -> set[int]:
    """The first TEST_PER_CLASS indices of each digit."""
    return {int(i) for digit in range(10) for i in np.flatnonzero(labels == digit)[:TEST_PER_CLASS]}
