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
    """(Dataset of (Tensor[3,size,size], int), class names) for `"digits"` or an ImageFolder layout
    (`ROOT/<class name>/<image>`; torchvision's ImageFolder, classes sorted by name)."""
    from torchvision import transforms

    prepare = transforms.Compose([transforms.Resize((size, size), interpolation=transforms.InterpolationMode.BILINEAR),
                                  transforms.ToTensor(), transforms.Normalize(mean, std)])
    if str(spec) == "digits":
        from study.digits import DIGIT_CLASSES, digits_images

        items = digits_images()
        x = torch.stack([prepare(item.image) for item in items])
        return TensorDataset(x, torch.tensor([item.labels[0] for item in items])), list(DIGIT_CLASSES)
    from torchvision.datasets import ImageFolder

    root = Path(spec)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {root} (use 'digits' or a folder of class folders)")
    folder = ImageFolder(root, transform=prepare)
    return folder, list(folder.classes)
