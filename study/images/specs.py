"""The one parser of image-set specs: what a string such as `digits:test` or `voc:img:ann` names.

Every place that takes an image set (a study config's `images` and `train_images`, `camstudy explain`,
`score` and `train-abn`, the build) parses it here, so they agree on what each form means:

- `bundled`: the real photos installed packages ship (`data/bundled.toml`);
- `digits`, `digits:train`, `digits:test`: scikit-learn's handwritten digits and their fixed split
  (`study.images.digits`), made in memory;
- `shortcut:train`, `shortcut:test`: four of the digits with a planted mark that decides the training labels
  (`study.images.shortcut`), made in memory, each marked image with the mark's mask;
- `voc:<images folder>:<annotations folder>`: PASCAL VOC, boxes from the XML files;
- `imagenet:<val folder>:<LOC_val_solution.csv>:<LOC_synset_mapping.txt>`: the ImageNet validation set;
- anything else is a folder: every image file under it (sub-folders included, sorted), ids are the paths
  relative to it without suffix. Its labels come from a `manifest.toml` in it; read as a *labelled* set
  (training images, the examples task's pool) an image's class is the first folder of its path, as in
  torchvision's ImageFolder.

Parsing reads no file and imports nothing heavy: a config is checked before anything is loaded.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# Sets made in memory from data an installed package ships: their name and the splits they have.
MEMORY_SETS: dict[str, tuple[str, ...]] = {"digits": ("", "train", "test"), "shortcut": ("train", "test")}
# Sets read from files, written `<kind>:<path>:<path>...`: the form named in error messages.
FILE_FORMS = {"voc": "voc:<images folder>:<annotations folder>",
              "imagenet": "imagenet:<val images folder>:<LOC_val_solution.csv>:<LOC_synset_mapping.txt>"}


@dataclass(frozen=True)
class ImageSetSpec:
    """A parsed spec: its `kind` (`bundled`, a key of MEMORY_SETS or FILE_FORMS, or `folder`), the split
    of a memory set (`""` for the whole set) and the paths of a file set, as written."""
    text: str
    kind: str
    split: str = ""
    paths: tuple[str, ...] = ()

    @property
    def in_memory(self) -> bool:
        return self.kind == "bundled" or self.kind in MEMORY_SETS


def known_memory_sets() -> list[str]:
    return [name + (f":{split}" if split else "") for name, splits in MEMORY_SETS.items() for split in splits]


def parse_image_set(text: str) -> ImageSetSpec:
    """The spec `text` names; ValueError saying which forms exist when it is malformed."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("an image set must be a non-empty string (bundled, digits:test, a folder, voc:..., imagenet:...)")
    if text == "bundled":
        return ImageSetSpec(text, "bundled")
    kind, _, rest = text.partition(":")
    if kind in MEMORY_SETS:
        if rest not in MEMORY_SETS[kind]:
            raise ValueError(f"unknown {kind} set {text!r} (known: {', '.join(known_memory_sets())})")
        return ImageSetSpec(text, kind, split=rest)
    if kind in FILE_FORMS:
        paths = tuple(rest.split(":"))
        if len(paths) != FILE_FORMS[kind].count(":") or not all(paths):
            raise ValueError(f"{kind} image sets are written {FILE_FORMS[kind]}, got {text!r}")
        return ImageSetSpec(text, kind, paths=paths)
    return ImageSetSpec(text, "folder", paths=(text,))


def resolve_path(path: str | Path, root: str | Path | None) -> Path:
    """`path`, taken inside `root` when there is one (ValueError if it would leave it)."""
    if root is None:
        return Path(path)
    root = Path(root).resolve()
    resolved = (root / path).resolve()
    if not resolved.is_relative_to(root):
        raise ValueError(f"path {str(path)!r} leaves the study folder {root}")
    return resolved
