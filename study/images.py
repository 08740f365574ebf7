"""Image sets for explaining, scoring and building studies: the bundled photos, a folder, or PASCAL VOC.

Every set is a list of `ImageItem`s: the RGB photo plus what is known about it (acceptable ImageNet
labels, object boxes in the photo's own pixels). Boxes are rescaled onto maps with `boxes_at`.
"""
from __future__ import annotations

import tomllib
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from study.resources import data_path

Box = tuple[int, int, int, int]
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


@dataclass(frozen=True)
class ImageItem:
    """One photo and what is known about it. `labels` are ImageNet class indices, the main one first."""

    image_id: str
    image: Image.Image = field(repr=False, compare=False)
    labels: tuple[int, ...] = ()
    boxes: tuple[Box, ...] = ()
    source: str = ""
    box_names: tuple[str, ...] = ()
    description: str = ""

    @property
    def size(self) -> tuple[int, int]:
        return self.image.size

    def boxes_at(self, size: tuple[int, int]) -> list[Box]:
        """Boxes scaled from the photo onto a (W, H) map, as the classifier's squashing resize does."""
        sx, sy = size[0] / self.image.width, size[1] / self.image.height
        return [
            (int(np.floor(x0 * sx)), int(np.floor(y0 * sy)), int(np.ceil(x1 * sx)), int(np.ceil(y1 * sy)))
            for x0, y0, x1, y1 in self.boxes
        ]


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


def bundled_images() -> list[ImageItem]:
    """The real photos that scikit-image, scikit-learn and matplotlib ship, with labels and hand-made boxes."""
    return list(_bundled())


@lru_cache(maxsize=1)
def _bundled() -> tuple[ImageItem, ...]:
    manifest = tomllib.loads(data_path("bundled.toml").read_text())
    return tuple(_item(entry, _shipped_photo(entry["source"])) for entry in manifest["image"])


def folder_images(path: str | Path) -> list[ImageItem]:
    """Every image file in a folder (sorted; sub-folders included), ids = relative paths without suffix.

    A `manifest.toml` in the folder, in the format of camstudy's `data/bundled.toml` with `path = "file"`
    instead of `source`, adds labels and boxes.
    """
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {root}")
    manifest_file = root / "manifest.toml"
    known = {}
    if manifest_file.is_file():
        known = {e["path"]: e for e in tomllib.loads(manifest_file.read_text()).get("image", [])}
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {root}")
    items = []
    for file in files:
        rel = file.relative_to(root).as_posix()
        entry = {"id": known.get(rel, {}).get("id", str(Path(rel).with_suffix(""))), **known.get(rel, {})}
        items.append(_item({**entry, "source": str(file)}, load_image(file)))
    return items


def voc_images(images_dir: str | Path, annotations_dir: str | Path) -> list[ImageItem]:
    """Images with PASCAL VOC XML annotations: every object's box (VOC's 1-based inclusive corners
    become 0-based max-exclusive) and its class name; names that are ImageNet classes become labels."""
    images_dir, annotations_dir = Path(images_dir), Path(annotations_dir)
    xml_files = sorted(annotations_dir.glob("*.xml")) if annotations_dir.is_dir() else []
    if not xml_files:
        raise FileNotFoundError(f"no VOC .xml annotations in {annotations_dir}")
    items = []
    for xml_file in xml_files:
        try:
            root = ET.parse(xml_file).getroot()
            filename = root.findtext("filename") or f"{xml_file.stem}.jpg"
            names, boxes = [], []
            for obj in root.iter("object"):
                bb = obj.find("bndbox")
                x0, y0, x1, y1 = (int(float(bb.findtext(k))) for k in ("xmin", "ymin", "xmax", "ymax"))
                names.append(obj.findtext("name", "").strip())
                boxes.append((x0 - 1, y0 - 1, x1, y1))
        except (ET.ParseError, AttributeError, TypeError, ValueError) as err:
            raise ValueError(f"cannot parse VOC annotation {xml_file}: {err}") from err
        entry = {"id": xml_file.stem, "labels": names, "boxes": boxes, "box_names": names,
                 "source": str(images_dir / filename)}
        items.append(_item(entry, load_image(images_dir / filename)))
    return items


def image_set(spec: str, root: str | Path | None = None) -> list[ImageItem]:
    """Resolve an image-set spec: `bundled`, `digits` / `digits:train` / `digits:test` (scikit-learn's and
    its fixed split, see `study.digits`), a folder, or `voc:<images>:<annotations>`.

    With `root` (a study folder), relative paths are taken inside it and may not leave it.
    """
    if spec == "bundled":
        return bundled_images()
    if spec == "digits" or spec.startswith("digits:"):
        from study.digits import digits_images

        return digits_images(split=spec)
    if spec.startswith("voc:"):
        parts = spec.split(":")
        if len(parts) != 3:
            raise ValueError(f"VOC image sets are written voc:<images folder>:<annotations folder>, got {spec!r}")
        return voc_images(resolve_path(parts[1], root), resolve_path(parts[2], root))
    return folder_images(resolve_path(spec, root))


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


def resolve_path(path: str, root: str | Path | None) -> Path:
    """`path`, taken inside `root` when there is one (ValueError if it would leave it)."""
    if root is None:
        return Path(path)
    root = Path(root).resolve()
    resolved = (root / path).resolve()
    if not resolved.is_relative_to(root):
        raise ValueError(f"image path {path!r} leaves the study folder {root}")
    return resolved


def _item(entry: dict, image: Image.Image) -> ImageItem:
    from study.models import imagenet_categories

    index = {name: i for i, name in enumerate(imagenet_categories())}
    labels = tuple(index[n] for n in entry.get("labels", []) if n in index)
    return ImageItem(
        image_id=str(entry["id"]),
        image=image,
        labels=labels,
        boxes=tuple(tuple(int(v) for v in box) for box in entry.get("boxes", [])),
        source=entry.get("source", ""),
        box_names=tuple(entry.get("box_names", ())),
        description=entry.get("description", ""),
    )


def _shipped_photo(source: str) -> Image.Image:
    package, _, name = source.partition(":")
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
    raise ValueError(f"unknown photo source {source!r} in bundled.toml")
