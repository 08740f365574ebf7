"""Reading an image set: the entries a spec (`study.images.specs`) names, as `ImageRef`s or `ImageItem`s.

`image_refs` reads no pixel of a file-backed set (ImageNet's 50,000 validation images cost megabytes until
they are streamed); sets made in memory (the bundled photos, the digits) come as `ImageItem`s, which
have the same `load()`. `image_set` loads every photo. `labelled_refs` reads a set whose every image has
a class of its own set (training images, the examples task's pool), with the class names.
"""
from __future__ import annotations

import tomllib
import xml.etree.ElementTree as ET
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

from study.images.items import IMAGE_SUFFIXES, ImageItem, ImageRef
from study.images.specs import parse_image_set, resolve_path
from study.resources import data_path

Entry = ImageRef | ImageItem


def image_refs(spec: str, root: str | Path | None = None) -> list[Entry]:
    """The entries of the set `spec` names (see `study.images.specs`), in the set's canonical order.

    With `root` (a study folder), relative paths are taken inside it and may not leave it.
    """
    parsed = parse_image_set(spec)
    if parsed.kind == "bundled":
        return bundled_images()
    if parsed.kind == "digits":
        from study.images.digits import digits_images

        return digits_images(split=spec)
    if parsed.kind == "shortcut":
        from study.images.shortcut import shortcut_items

        return shortcut_items(parsed.split)
    paths = [resolve_path(part, root) for part in parsed.paths]
    if parsed.kind == "voc":
        return voc_refs(*paths)
    if parsed.kind == "imagenet":
        from study.images.imagenet import imagenet_refs

        return imagenet_refs(*paths)
    return folder_refs(paths[0])


def image_set(spec: str, root: str | Path | None = None) -> list[ImageItem]:
    """Every image of the set `spec` names, loaded (see `image_refs`)."""
    return [entry.load() for entry in image_refs(spec, root)]


def labelled_refs(spec: str, root: str | Path | None = None) -> tuple[list[Entry], list[str]]:
    """(entries labelled with an index into the class names, class names) of a labelled set: the digits, the
    shortcut set (labelled as for training: the mark decides most marked images' labels), or a folder whose
    images sit in class folders (`ROOT/<class name>/.../<image>`, classes sorted by name,
    torchvision's ImageFolder convention). The ids are the folder's, as `image_refs` gives them; a
    folder's photos are read only when an entry is loaded."""
    parsed = parse_image_set(spec)
    if parsed.kind == "digits":
        from study.images.digits import DIGIT_CLASSES

        return image_refs(spec), list(DIGIT_CLASSES)
    if parsed.kind == "shortcut":
        from study.images.shortcut import SHORTCUT_CLASSES

        return image_refs(spec), list(SHORTCUT_CLASSES)
    if parsed.kind != "folder":
        raise ValueError(f"a labelled image set is 'digits', 'digits:train', 'digits:test', 'shortcut:train', "
                         f"'shortcut:test' or a folder of class folders, got {spec!r}")
    folder = resolve_path(parsed.paths[0], root)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder} (a labelled set is 'digits', 'digits:train', "
                                "'digits:test' or a folder of class folders)")
    refs = folder_refs(folder)
    loose = [ref.image_id for ref in refs if "/" not in ref.image_id]
    if loose:
        raise FileNotFoundError(f"{folder} is not a folder of class folders: {loose[0]} sits outside any class folder")
    classes = sorted({ref.image_id.split("/")[0] for ref in refs})
    index = {name: i for i, name in enumerate(classes)}
    return [replace(ref, labels=(index[ref.image_id.split("/")[0]],)) for ref in refs], classes


def bundled_images() -> list[ImageItem]:
    """The real photos that scikit-image, scikit-learn and matplotlib ship, with labels and hand-made boxes."""
    return list(_bundled())


@lru_cache(maxsize=1)
def _bundled() -> tuple[ImageItem, ...]:
    manifest = tomllib.loads(data_path("bundled.toml").read_text())
    return tuple(_ref(entry).load() for entry in manifest["image"])


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
    from study.images.imagenet import imagenet_categories

    return {name: i for i, name in enumerate(imagenet_categories())}
