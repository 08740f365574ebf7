"""Image sets for explaining, scoring and building studies: the bundled photos, a folder, PASCAL VOC or
the ImageNet validation set.

A set is first read as `ImageRef`s: where each photo is and what is known about it (acceptable ImageNet
labels, object boxes in the photo's own pixels), without decoding a pixel, so a 50,000-image set costs
a few megabytes until its photos are streamed (`study.images.streaming`). `ImageRef.load()` gives the
`ImageItem`: the same with the RGB photo in memory, which building a study and the small sets use.
Boxes are rescaled onto maps with `boxes_at` (`scale_boxes`).
"""
from __future__ import annotations

import hashlib
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
SHIPPED = ("skimage", "sklearn", "matplotlib")  # packages whose sample photos `source = "package:name"` names


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

    def load(self) -> ImageItem:
        """Itself: its photo is already in memory (an `ImageRef` reads its photo here)."""
        return self

    def boxes_at(self, size: tuple[int, int]) -> list[Box]:
        """Boxes scaled from the photo onto a (W, H) map, as the classifier's squashing resize does."""
        return scale_boxes(self.boxes, self.image.size, size)


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


def bundled_images() -> list[ImageItem]:
    """The real photos that scikit-image, scikit-learn and matplotlib ship, with labels and hand-made boxes."""
    return list(_bundled())


@lru_cache(maxsize=1)
def _bundled() -> tuple[ImageItem, ...]:
    return tuple(ref.load() for ref in bundled_refs())


def bundled_refs() -> list[ImageRef]:
    manifest = tomllib.loads(data_path("bundled.toml").read_text())
    return [_ref(entry) for entry in manifest["image"]]


def folder_images(path: str | Path) -> list[ImageItem]:
    """Every image file in a folder, loaded; see `folder_refs`."""
    return [ref.load() for ref in folder_refs(path)]


def folder_refs(path: str | Path) -> list[ImageRef]:
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
    refs = []
    for file in files:
        rel = file.relative_to(root).as_posix()
        entry = {"id": known.get(rel, {}).get("id", str(Path(rel).with_suffix(""))), **known.get(rel, {})}
        refs.append(_ref({**entry, "source": str(file)}))
    return refs


def voc_images(images_dir: str | Path, annotations_dir: str | Path) -> list[ImageItem]:
    """Images with PASCAL VOC XML annotations, loaded; see `voc_refs`."""
    return [ref.load() for ref in voc_refs(images_dir, annotations_dir)]


def voc_refs(images_dir: str | Path, annotations_dir: str | Path) -> list[ImageRef]:
    """Images with PASCAL VOC XML annotations: every object's box (VOC's 1-based inclusive corners
    become 0-based max-exclusive) and its class name; names that are ImageNet classes become labels."""
    images_dir, annotations_dir = Path(images_dir), Path(annotations_dir)
    xml_files = sorted(annotations_dir.glob("*.xml")) if annotations_dir.is_dir() else []
    if not xml_files:
        raise FileNotFoundError(f"no VOC .xml annotations in {annotations_dir}")
    refs = []
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
        refs.append(_ref(entry))
    missing = [ref.source for ref in refs if not Path(ref.source).is_file()]
    if missing:
        raise FileNotFoundError(f"image not found: {missing[0]}" + (f" (and {len(missing) - 1} more)" if missing[1:] else ""))
    return refs


def image_set(spec: str, root: str | Path | None = None) -> list[ImageItem]:
    """Resolve an image-set spec (see `image_refs`) and load every photo; `digits` / `digits:train` /
    `digits:test` (scikit-learn's and its fixed split, see `study.images.digits`) are made in memory.

    With `root` (a study folder), relative paths are taken inside it and may not leave it.
    """
    if spec == "bundled":
        return bundled_images()
    if spec == "digits" or spec.startswith("digits:"):
        from study.images.digits import digits_images

        return digits_images(split=spec)
    return [ref.load() for ref in image_refs(spec, root)]


# Written after the colon of each kind of set, for error messages.
SPEC_FORMS = {"voc": "voc:<images folder>:<annotations folder>",
              "imagenet": "imagenet:<val images folder>:<LOC_val_solution.csv>:<LOC_synset_mapping.txt>"}


def image_refs(spec: str, root: str | Path | None = None) -> list[ImageRef]:
    """Resolve an image-set spec without decoding a photo: `bundled`, a folder, `voc:<images>:<annotations>`,
    or `imagenet:<val folder>:<LOC_val_solution.csv>:<LOC_synset_mapping.txt>` (`study.images.imagenet`).

    With `root` (a study folder), relative paths are taken inside it and may not leave it.
    """
    if spec == "bundled":
        return bundled_refs()
    if spec == "digits" or spec.startswith("digits:"):
        raise ValueError("the digits set is made in memory, not streamed from files: use it in a study config, "
                         "`camstudy train-abn`, or study.scoring.scorer.score(model, study.images.items.image_set('digits'))")
    kind = spec.partition(":")[0]
    if kind in SPEC_FORMS:
        parts = spec.split(":")[1:]
        if len(parts) != SPEC_FORMS[kind].count(":") or not all(parts):
            raise ValueError(f"{kind} image sets are written {SPEC_FORMS[kind]}, got {spec!r}")
        paths = [resolve_path(part, root) for part in parts]
        if kind == "voc":
            return voc_refs(*paths)
        from study.images.imagenet import imagenet_refs

        return imagenet_refs(*paths)
    return folder_refs(resolve_path(spec, root))


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


def _ref(entry: dict) -> ImageRef:
    """A manifest entry (labels as ImageNet class names) as an ImageRef (labels as class indices)."""
    index = _category_index()
    labels = tuple(index[n] for n in entry.get("labels", []) if n in index)
    return ImageRef(
        image_id=str(entry["id"]),
        labels=labels,
        boxes=tuple(tuple(int(v) for v in box) for box in entry.get("boxes", [])),
        source=entry.get("source", ""),
        box_names=tuple(entry.get("box_names", ())),
        description=entry.get("description", ""),
    )


@lru_cache(maxsize=1)
def _category_index() -> dict[str, int]:
    from study.models import imagenet_categories

    return {name: i for i, name in enumerate(imagenet_categories())}


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
