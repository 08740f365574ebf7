"""Labelled image sets as torch Datasets for training: scikit-learn's digits or a folder of class folders.

Images are prepared as a camstudy `Classifier.preprocess` prepares them (squashed to `size` x `size`
with bilinear resampling, scaled to [0,1], normalised with the model's mean and std), so a model
trained here sees the same inputs when it is loaded back with `load_model`.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import Dataset, TensorDataset


def labelled_images(spec: str | Path, size: int, mean: Sequence[float],
                    std: Sequence[float]) -> tuple[Dataset, list[str]]:
    """(Dataset of (Tensor[3,size,size], int), class names) for the digits (`"digits"`, `"digits:train"`,
    `"digits:test"`) or an ImageFolder layout
    (`ROOT/<class name>/<image>`; torchvision's ImageFolder, classes sorted by name)."""
    from torchvision import transforms

    prepare = transforms.Compose([transforms.Resize((size, size), interpolation=transforms.InterpolationMode.BILINEAR),
                                  transforms.ToTensor(), transforms.Normalize(mean, std)])
    from study.images.digits import DIGIT_CLASSES, DIGIT_SETS, digits_images

    if str(spec) in DIGIT_SETS:
        items = digits_images(split=str(spec))
        x = torch.stack([prepare(item.image) for item in items])
        return TensorDataset(x, torch.tensor([item.labels[0] for item in items])), list(DIGIT_CLASSES)
    from torchvision.datasets import ImageFolder

    root = Path(spec)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {root} (use 'digits' or a folder of class folders)")
    folder = ImageFolder(root, transform=prepare)
    return folder, list(folder.classes)


def labelled_items(spec: str, root: str | Path | None = None) -> tuple[list, list[str]]:
    """(ImageItems labelled with an index into the class names, class names) of the digits sets or an
    ImageFolder layout (`ROOT/<class name>/<image>`, classes sorted by name, as `labelled_images` reads it),
    as pictures rather than tensors: the examples task shows them. A relative folder is taken inside `root`."""
    from study.images.digits import DIGIT_CLASSES, DIGIT_SETS, digits_images
    from study.images.items import IMAGE_SUFFIXES, ImageItem, resolve_path, load_image

    if spec in DIGIT_SETS:
        return digits_images(split=spec), list(DIGIT_CLASSES)
    folder = resolve_path(spec, root)
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
    if not classes:
        raise FileNotFoundError(f"no class folders in {folder} (training images are 'digits', 'digits:train' "
                                "or a folder of class folders)")
    items = [ImageItem(image_id=file.relative_to(folder).with_suffix("").as_posix(), image=load_image(file),
                       labels=(label,), source=str(file))
             for label, name in enumerate(classes)
             for file in sorted((folder / name).rglob("*")) if file.suffix.lower() in IMAGE_SUFFIXES]
    return items, classes
