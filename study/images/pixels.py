"""The one path from a picture to a classifier's input: squash to the input size, then normalise.

`Classifier.preprocess` (explaining, scoring, building studies), DataLoader workers (`study.images.streaming`)
and training sets (`study.models.training.labelled_dataset`) all prepare images here, so a model trained
on a set sees exactly the inputs it is later explained on. Images are resized to the whole input size
without cropping, so the whole photo is explained and boxes on it scale linearly onto the maps.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

ImageLike = Image.Image | np.ndarray


def resized_pixels(image: ImageLike, input_size: tuple[int, int]) -> torch.Tensor:
    """One image as the uint8 Tensor[3,H,W] a classifier of `input_size` (H, W) takes: squashed, not cropped."""
    height, width = input_size
    array = np.asarray(_as_rgb(image).resize((width, height), Image.BILINEAR))
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


def _as_rgb(image: ImageLike) -> Image.Image:
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] not in (3, 4):
        raise ValueError(f"expected an HxWx3 image array, got shape {tuple(array.shape)}")
    if array.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image array, got dtype {array.dtype}")
    return Image.fromarray(array[..., :3])


def normalised(pixels: torch.Tensor, mean: torch.Tensor | Sequence[float], std: torch.Tensor | Sequence[float]) -> torch.Tensor:
    """uint8 pixels [B,3,H,W] -> float32 (pixels / 255 - mean) / std, per channel, on the pixels' device."""
    mean = torch.as_tensor(mean, dtype=torch.float32, device=pixels.device).view(1, -1, 1, 1)
    std = torch.as_tensor(std, dtype=torch.float32, device=pixels.device).view(1, -1, 1, 1)
    return (pixels.to(torch.float32) / 255.0 - mean) / std
