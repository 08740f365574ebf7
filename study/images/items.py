"""What an image of a set is: `ImageRef` (where a photo is, and what is known about it) and `ImageItem`.

A set is first read as `ImageRef`s: where each photo is and what is known about it (acceptable ImageNet
labels, object boxes in the photo's own pixels), without decoding a pixel, so a 50,000-image set costs
a few megabytes until its photos are streamed (`study.images.streaming`). `ImageRef.load()` gives the
`ImageItem`: the same with the RGB photo in memory, which building a study and the small sets use.
Boxes are rescaled onto maps with `boxes_at` (`scale_boxes`).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

Box = tuple[int, int, int, int]
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
SHIPPED = ("skimage", "sklearn", "matplotlib")  # packages whose sample photos `source = "package:name"` names


@dataclass(frozen=True)
class ImageItem:
    """One photo and what is known about it. `labels` are class indices (ImageNet's, or the set's own classes),
    the main one first; `mask`, where known, is the exact region that decides the class (bool [H,W] in the
    photo's pixels: the shortcut set's mark), which localization metrics prefer to the boxes."""

    image_id: str
    image: Image.Image = field(repr=False, compare=False)
    labels: tuple[int, ...] = ()
    boxes: tuple[Box, ...] = ()
    source: str = ""
    box_names: tuple[str, ...] = ()
    description: str = ""
    mask: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def size(self) -> tuple[int, int]:
        return self.image.size

    def load(self) -> ImageItem:
        """Itself: its photo is already in memory (an `ImageRef` reads its photo here)."""
        return self

    def boxes_at(self, size: tuple[int, int]) -> list[Box]:
        """Boxes scaled from the photo onto a (W, H) map, as the classifier's squashing resize does."""
        return scale_boxes(self.boxes, self.image.size, size)

    def mask_at(self, size: tuple[int, int]) -> np.ndarray | None:
        """The mask on a (W, H) map (nearest neighbour: a pixel of the map is in it where its centre is)."""
        if self.mask is None:
            return None
        return np.asarray(Image.fromarray(self.mask.astype(np.uint8) * 255).resize(size, Image.NEAREST)) > 0


@dataclass(frozen=True)
class ImageRef:
    """Where a photo is (a file, or `package:name` of a photo a package ships) and what is known about it.

    Small and picklable, so DataLoader workers can be handed millions of them and decode only their own."""

    image_id: str
    source: str
    labels: tuple[int, ...] = ()
    boxes: tuple[Box, ...] = ()
    box_names: tuple[str, ...] = ()
    description: str = ""

    def load(self) -> ImageItem:
        """The ImageItem with the photo decoded (RGB)."""
        package, _, name = self.source.partition(":")
        image = _shipped_photo(package, name) if package in SHIPPED else load_image(self.source)
        return ImageItem(self.image_id, image, labels=self.labels, boxes=self.boxes, source=self.source,
                         box_names=self.box_names, description=self.description)


def scale_boxes(boxes, image_size: tuple[int, int], size: tuple[int, int]) -> list[Box]:
    """Boxes scaled from a (W, H) photo onto a (W, H) map, outwards to whole pixels."""
    sx, sy = size[0] / image_size[0], size[1] / image_size[1]
    return [
        (int(np.floor(x0 * sx)), int(np.floor(y0 * sy)), int(np.ceil(x1 * sx)), int(np.ceil(y1 * sy)))
        for x0, y0, x1, y1 in boxes
    ]


def photo_digest(image: Image.Image) -> str:
    """A hash of a photo's mode, size and pixels: what the score cache keys an image by."""
    return hashlib.sha256(f"{image.mode}{image.size}".encode() + image.tobytes()).hexdigest()[:24]


def load_image(path: str | Path) -> Image.Image:
    """An RGB PIL image, or a clear error naming the file that could not be read."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"cannot read image {path}: {err}") from err


def composite(a: ImageItem, b: ImageItem, size: int = 224) -> ImageItem:
    """Two photos side by side (each centre-cropped square, `size` px): a two-category stimulus whose
    object boxes are known exactly (the left and right halves). Labels are (a's main, b's main)."""
    if not a.labels or not b.labels:
        raise ValueError(f"composites need labelled images; {a.image_id if not a.labels else b.image_id} has none")
    canvas = Image.new("RGB", (2 * size, size))
    for i, item in enumerate((a, b)):
        w, h = item.image.size
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        canvas.paste(item.image.crop((left, top, left + side, top + side)).resize((size, size), Image.BILINEAR),
                     (i * size, 0))
    return ImageItem(
        image_id=f"{a.image_id}+{b.image_id}",
        image=canvas,
        labels=(a.labels[0], b.labels[0]),
        boxes=((0, 0, size, size), (size, 0, 2 * size, size)),
        source=f"composite:{a.image_id}+{b.image_id}",
        box_names=(a.image_id, b.image_id),
        description=f"{a.description or a.image_id} | {b.description or b.image_id}",
    )


def _shipped_photo(package: str, name: str) -> Image.Image:
    if package == "skimage":
        import skimage.data

        return Image.fromarray(np.asarray(getattr(skimage.data, name)())).convert("RGB")
    if package == "sklearn":
        from sklearn.datasets import load_sample_image

        return Image.fromarray(load_sample_image(name)).convert("RGB")
    if package == "matplotlib":
        import matplotlib.cbook

        with matplotlib.cbook.get_sample_data(name) as f:
            return Image.open(f).convert("RGB")
    raise ValueError(f"unknown photo source {package}:{name!r} in bundled.toml")
