"""`Classifier`: a network plus what a study needs to use it (preprocessing, class names, CAM layer)."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn

from study.images.pixels import ImageLike, normalised, resized_pixels


class Classifier(nn.Module):
    """A classifier that maps preprocessed images to logits, like any torch model.

    `preprocess` turns PIL images or HxWx3 uint8 arrays into the model's input tensor on the model's
    device. Images are resized to exactly `input_size` without cropping, so the whole photo is explained
    and boxes drawn on it scale linearly onto the maps.

    The network is kept in channels-last memory and `preprocess` returns channels-last tensors: on CPU
    this makes EfficientNet-Lite0's depthwise convolutions several times faster (6x measured on two
    cores), and on GPU it is what tensor cores want. Results are the same up to float rounding.
    """

    def __init__(
        self,
        network: nn.Module,
        *,
        name: str,
        categories: Sequence[str],
        target_layer: str,
        mean: Sequence[float],
        std: Sequence[float],
        input_size: tuple[int, int] = (224, 224),
    ):
        super().__init__()
        self.network = network.eval().to(memory_format=torch.channels_last)
        self.name = name
        self.categories = list(categories)
        self.target_layer = target_layer
        self.input_size = tuple(input_size)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)

    @property
    def device(self) -> torch.device:
        return self.mean.device

    def to_pixels(self, images: Sequence[ImageLike] | ImageLike) -> torch.Tensor:
        """Resized RGB images as a uint8 Tensor[B,3,H,W] on the CPU (what a participant is shown)."""
        if isinstance(images, (Image.Image, np.ndarray)):
            images = [images]
        if len(images) == 0:
            raise ValueError("preprocess needs at least one image")
        return torch.stack([resized_pixels(im, self.input_size) for im in images])

    def preprocess(self, images: Sequence[ImageLike] | ImageLike) -> torch.Tensor:
        """Images -> normalised float Tensor[B,3,H,W] on the model's device."""
        return self.from_pixels(self.to_pixels(images))

    def from_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """`to_pixels` output (uint8 Tensor[B,3,H,W], e.g. from DataLoader workers) -> the model's input.

        Split from `preprocess` so that decoding and resizing can happen in worker processes and only
        this arithmetic in the process that owns the device; a pinned batch is copied asynchronously."""
        pixels = pixels.to(self.device, non_blocking=True)
        return normalised(pixels, self.mean, self.std).contiguous(memory_format=torch.channels_last)

    def predict(self, x: torch.Tensor, k: int = 5) -> list[list[tuple[str, float]]]:
        """Top-k (class name, softmax probability) per image, for people rather than code."""
        with torch.no_grad():
            probs = self(x.to(self.device)).float().softmax(1)
        values, indices = probs.topk(k, dim=1)
        return [[(self.categories[i], float(v)) for v, i in zip(vs, ids)] for vs, ids in zip(values, indices)]
