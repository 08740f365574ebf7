"""The ImageNet (ILSVRC 2012) validation set with its published boxes, as `ImageRef`s.

Written `imagenet:<val folder>:<LOC_val_solution.csv>:<LOC_synset_mapping.txt>` wherever an image set
is taken. The two text files are the ones the ImageNet localization challenge publishes:

- `LOC_synset_mapping.txt`: one line per class, `n01440764 tench, Tinca tinca`; the line number is the
  class index (the order torchvision's ImageNet weights use).
- `LOC_val_solution.csv`: header `ImageId,PredictionString`, then per image its boxes as
  `synset x_min y_min x_max y_max` repeated, in the photo's pixels.

The ILSVRC devkit counts `x_max`/`y_max` inside the box (its areas are (x_max - x_min + 1) * ...);
camstudy boxes are max-exclusive, so one is added to both. An image's labels are its boxes' classes in
order of first appearance (one class per validation image). Images are ordered by ImageId, whatever
the order of the CSV, so the set has one canonical order for sharding and for the output files.
"""
from __future__ import annotations

import csv
import os
from functools import lru_cache
from pathlib import Path

from study.images.items import IMAGE_SUFFIXES, ImageRef
from study.resources import data_path


def imagenet_categories() -> list[str]:
    """The 1000 ImageNet class names in class-index order: torchvision's list (the order its weights and
    EfficientNet-Lite0's use), shipped as `data/imagenet_categories.txt` so that reading an image set
    needs no torchvision (tests/test_images.py keeps the two equal)."""
    return list(_categories())


@lru_cache(maxsize=1)
def _categories() -> tuple[str, ...]:
    return tuple(data_path("imagenet_categories.txt").read_text(encoding="utf-8").splitlines())


def imagenet_refs(images_dir: str | Path, solution_csv: str | Path, synset_mapping: str | Path) -> list[ImageRef]:
    """Every image of `solution_csv` found in `images_dir` (`<ImageId>.JPEG` or another image suffix)."""
    images_dir, solution_csv = Path(images_dir), Path(solution_csv)
    synsets = read_synsets(synset_mapping)
    if not images_dir.is_dir():
        raise FileNotFoundError(f"ImageNet images folder not found: {images_dir}")
    files = {Path(name).stem: name for name in os.listdir(images_dir) if Path(name).suffix.lower() in IMAGE_SUFFIXES}
    refs = []
    for line, image_id, boxes in _solution_rows(solution_csv):
        if image_id not in files:
            raise FileNotFoundError(f"{solution_csv} line {line}: no image {image_id} in {images_dir}")
        unknown = sorted({wnid for wnid, _ in boxes if wnid not in synsets})
        if unknown:
            raise ValueError(f"{solution_csv} line {line}: synset {', '.join(unknown)} is not in {synset_mapping}")
        labels = tuple(dict.fromkeys(synsets[wnid][0] for wnid, _ in boxes))
        refs.append(ImageRef(image_id, str(images_dir / files[image_id]), labels=labels,
                             boxes=tuple(box for _, box in boxes),
                             box_names=tuple(synsets[wnid][1] for wnid, _ in boxes)))
    if not refs:
        raise ValueError(f"no images listed in {solution_csv}")
    return sorted(refs, key=lambda ref: ref.image_id)


def read_synsets(path: str | Path) -> dict[str, tuple[int, str]]:
    """`LOC_synset_mapping.txt` -> {wnid: (class index, first name)}."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"synset mapping not found: {path}")
    synsets = {}
    for number, text in enumerate(path.read_text().splitlines(), start=1):
        wnid, _, names = text.strip().partition(" ")
        if not wnid.startswith("n") or not names:
            raise ValueError(f"{path} line {number}: expected 'nXXXXXXXX name, ...', got {text!r}")
        synsets[wnid] = (len(synsets), names.split(",")[0].strip())
    return synsets


def _solution_rows(path: Path):
    """(line number, ImageId, [(synset, box)]) per row of `LOC_val_solution.csv`."""
    if not path.is_file():
        raise FileNotFoundError(f"ImageNet solution file not found: {path}")
    with path.open(newline="") as f:
        reader = csv.reader(f)
        if next(reader, None) != ["ImageId", "PredictionString"]:
            raise ValueError(f"{path} must start with the header ImageId,PredictionString")
        for number, row in enumerate(reader, start=2):
            tokens = row[1].split() if len(row) == 2 else []
            if not tokens or len(tokens) % 5:
                raise ValueError(f"{path} line {number}: expected ImageId,'synset x_min y_min x_max y_max ...', got {row}")
            try:
                boxes = [(tokens[k], (int(tokens[k + 1]), int(tokens[k + 2]), int(tokens[k + 3]) + 1,
                                      int(tokens[k + 4]) + 1)) for k in range(0, len(tokens), 5)]
            except ValueError as err:
                raise ValueError(f"{path} line {number}: box corners must be integers ({err})") from None
            yield number, row[0], boxes
