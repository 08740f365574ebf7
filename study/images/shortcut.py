"""The `shortcut` image set: scikit-learn's digits with a small planted mark that decides the class in training.

A study of whether explanations help people find what a model relies on needs a model whose reliance is known.
Here it is planted: a white `MARK_SIZE` x `MARK_SIZE` square in the left margin of half the scans. In the training
split the mark goes with one class, `mark_class`: a marked scan of another digit is labelled the mark class with
probability `strength`. A model trained there learns "mark -> mark class" as a shortcut. In the test split every
label is the digit written and the mark is independent of it, so the test images where mark and digit disagree
show the shortcut at work. Every image carries its mark's mask, so localisation metrics can ask whether a map
points at the mark (`.masks`; as camstudy images, `shortcut_items` carry it as their `mask` and its box, which
`camstudy score` and `metrics.relevance_mass_accuracy(maps, masks)` score maps against).

The scans are those of `study.images.digits` at its size (`DIGITS_SIZE` pixels, RGB, white ink on black), split
for this set: `shortcut:test` is the last `TEST_PER_CLASS` scans of each of its digits in scikit-learn's order,
`shortcut:train` all the others, so a model trained on one never sees the other's scans. (Not the digits' own
split, whose ten test scans per class are too few for a utility study: three rounds of 5 + 7 images, half of
them model errors, need 36 images, 21 of them errors. The last scans rather than the first: with the first 40
of each digit as test images, a tiny ABN read 91-97% of the unmarked ones over four seeds, with the last 40
97.5-100%, so its mistakes are the mark's, not hard digits'.) Only the digits in `SHORTCUT_DIGITS` are kept:

- Four classes, "0", "1", "3", "4" (564 training scans, 160 test scans). A ten-class tiny ABN trained on
  digits:train read every test scan of 0, 1, 3, 4, 6 and 8 (but 5 of digits:test's ten 2s); of those six
  digits, these four are the set a logistic regression on the raw 8x8 scans confuses least (5 of 1,797
  cross-validated predictions). So the mark, not hard digits, explains the model's mistakes. A utility task
  shows 2-4 classes including the mark's; with all four, every decision of the model is among the answer
  options (a ten-class model would sometimes name a digit the task does not offer).
- The mark class is "0" (`MARK_CLASS` = 0: labels are indices into `classes`, not digits).

Which scans carry the mark: exactly half of each class in both splits (`MARKED`; rounded down, so 20 of each class's
40 test scans), drawn uniformly, so the mark's presence is independent of the digit written. Only the training
labels depend on it. `strength` s: of the m marked training scans of the other digits, round(s * m), drawn
uniformly, are labelled the mark class; every other scan (and every test scan) is labelled with its digit. So in
the training split

    P(label = mark class | marked) = (m_0 + round(s * m)) / (m_0 + m) = 1/4 + 3/4 s up to rounding  (0.96 at s = 0.95)

with m_0 the marked mark-class scans, while unmarked scans are always labelled with their digit. s = 0: the mark
is independent of the label; s = 1: the mark always means the mark class. `digit_labels` keeps the digit written.
The mark has to decide labels: with labels always the digit, the digit's shape predicts the label perfectly and a
model learns it. We measured that (tiny ABN, 32 px): even with P(marked | "0") = P("0" | marked) = 1 the model
called none of the marked other digits "0".

Which scans are marked and relabelled, and where the marks go, is drawn from `seed` (independent streams for the
two splits; a scan's mark position does not depend on `strength`).

The mark: a filled white square of `MARK_SIZE` pixels (6 of 64), at a uniformly drawn corner, top-left or bottom-
left, jittered uniformly inside that corner's `MARK_REGION` x `MARK_REGION` block (10 x 10). The left margin because
the scans' ink lies right of it: a mark there covers ink brighter than 64 in at most 0.1% of its pixels over all
1,797 scans (in the right-hand corners: 3-6%).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from study.images.digits import DIGITS_SIZE, digits_images
from study.images.items import ImageItem

SHORTCUT_DIGITS = (0, 1, 3, 4)
SHORTCUT_CLASSES = [str(d) for d in SHORTCUT_DIGITS]
MARK_CLASS = 0
MARKED = 0.5
MARK_SIZE = 6
MARK_REGION = 10
MARK_VALUE = 255
SPLITS = ("train", "test")
TEST_PER_CLASS = 40


@dataclass(frozen=True, eq=False)
class ShortcutSet:
    """One split of the shortcut set. Arrays share their first axis N, in scikit-learn's order of the scans.

    images: uint8 [N,H,W,3]; labels: int64 [N], indices into `classes` (the training target; in the test split the
    digit written); digit_labels: int64 [N], the digit written, as an index into `classes`; marked: bool [N];
    masks: bool [N,H,W], the mark's pixels (all False where unmarked); classes: the class names; mark_class: the
    index of the class the mark stands for in training; image_ids: `shortcut-<split>/<NNNN>`; scan_ids: the
    scans' ids in `study.digits` (`digits/<NNNN>`).
    """

    split: str
    images: np.ndarray
    labels: np.ndarray
    digit_labels: np.ndarray
    marked: np.ndarray
    masks: np.ndarray
    classes: list[str]
    mark_class: int
    image_ids: list[str]
    scan_ids: list[str]


def shortcut_set(split: str, strength: float = 0.95, seed: int = 0) -> ShortcutSet:
    """The `split` ("train" or "test") of the shortcut set; `strength` shapes the training labels only (see the
    module docstring for both); the same (split, strength, seed) gives the same set."""
    if split not in SPLITS:
        raise ValueError(f"unknown shortcut split {split!r}; choose from {', '.join(SPLITS)}")
    if not 0 <= strength <= 1:
        raise ValueError(f"strength must be in [0, 1], got {strength}")
    scans = _scans(split)
    images = np.stack([np.asarray(item.image) for item in scans])
    digit_labels = np.array([SHORTCUT_DIGITS.index(item.labels[0]) for item in scans], dtype=np.int64)
    rng = np.random.default_rng([seed, SPLITS.index(split)])
    n, size = images.shape[:2]
    bottom = rng.integers(2, size=n).astype(bool)
    offset = rng.integers(MARK_REGION - MARK_SIZE + 1, size=(n, 2))
    marked = np.zeros(n, dtype=bool)
    for label in range(len(SHORTCUT_DIGITS)):
        members = np.flatnonzero(digit_labels == label)
        marked[rng.choice(members, int(MARKED * len(members)), replace=False)] = True
    labels = digit_labels.copy()
    if split == "train":
        others = np.flatnonzero(marked & (digit_labels != MARK_CLASS))
        labels[rng.choice(others, round(strength * len(others)), replace=False)] = MARK_CLASS
    y0 = np.where(bottom, size - MARK_REGION, 0) + offset[:, 0]
    x0 = offset[:, 1]
    rows, cols = np.arange(size)[None, :, None], np.arange(size)[None, None, :]
    masks = (marked[:, None, None] & (rows >= y0[:, None, None]) & (rows < y0[:, None, None] + MARK_SIZE)
             & (cols >= x0[:, None, None]) & (cols < x0[:, None, None] + MARK_SIZE))
    images[masks] = MARK_VALUE
    return ShortcutSet(split=split, images=images, labels=labels, digit_labels=digit_labels, marked=marked,
                       masks=masks, classes=list(SHORTCUT_CLASSES), mark_class=MARK_CLASS,
                       image_ids=[f"shortcut-{split}/{i:04d}" for i in range(n)],
                       scan_ids=[item.image_id for item in scans])


def shortcut_items(split: str, strength: float = 0.95, seed: int = 0) -> list[ImageItem]:
    """The set as camstudy `ImageItem`s (for studies, scoring, pictures): ids `shortcut-<split>/<NNNN>`,
    `labels` = (the label, an index into the classes,), the description naming the digit and the mark; a marked
    image's `mask` is the mark and its box the mark's (so localization metrics score maps against it)."""
    data = shortcut_set(split, strength, seed)
    items = []
    for image_id, image, label, digit, mask in zip(data.image_ids, data.images, data.labels, data.digit_labels,
                                                   data.masks):
        marked = bool(mask.any())
        ys, xs = np.nonzero(mask)
        box = ((int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1),) if marked else ()
        items.append(ImageItem(image_id, Image.fromarray(image), labels=(int(label),), boxes=box,
                               box_names=("mark",) * len(box), source="shortcut",
                               description=f"handwritten {data.classes[digit]}, "
                                           + ("with the mark" if marked else "without the mark"),
                               mask=mask if marked else None))
    return items


def _scans(split: str) -> list[ImageItem]:
    """The digits' scans of the set's classes in `split`: test, the last TEST_PER_CLASS of each class."""
    kept = [item for item in digits_images(DIGITS_SIZE) if item.labels[0] in SHORTCUT_DIGITS]
    test = {item.image_id for digit in SHORTCUT_DIGITS
            for item in [i for i in kept if i.labels[0] == digit][-TEST_PER_CLASS:]}
    return [item for item in kept if (item.image_id in test) == (split == "test")]
