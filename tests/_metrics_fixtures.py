"""Small models and reference implementations for the metrics tests.

The references follow DESIGN.md's definitions literally, one image at a time, with scipy for the
blur, so they share no code with `metrics`.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from scipy import ndimage
from scipy.stats import norm
from torch import nn


def tiny_classifier(seed: int = 0, classes: int = 5) -> nn.Module:
    """A random conv net with batch norm (so eval mode matters) returning logits."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, classes),
    )
    with torch.no_grad():  # non-trivial running statistics, so train-mode output would differ
        model[1].running_mean.uniform_(-0.5, 0.5)
        model[1].running_var.uniform_(0.5, 2.0)
        model[-1].weight.mul_(4)
    return model.eval()


class PlantedBoxModel(nn.Module):
    """Class 0's logit is the mean squared value of the pixels inside `box` and nothing else;
    class 1 is a constant. Deleting the box (zeros) or blurring it lowers class 0's probability."""

    def __init__(self, box: tuple[int, int, int, int], scale: float = 4.0):
        super().__init__()
        self.box = box
        self.scale = scale
        self.register_buffer("others", torch.tensor([1.0, 0.0, -1.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x0, y0, x1, y1 = self.box
        energy = x[:, :, y0:y1, x0:x1].pow(2).mean(dim=(1, 2, 3))
        return torch.cat([self.scale * energy[:, None], self.others.expand(x.shape[0], -1)], dim=1)


def reference_substrate(name: str, image: np.ndarray) -> np.ndarray:
    """DESIGN.md's substrates for one image [C,H,W], from scipy."""
    if name == "zeros":
        return np.zeros_like(image)
    if name == "mean":
        return np.broadcast_to(image.mean(axis=(1, 2), keepdims=True), image.shape).copy()
    taps = np.diff(norm.cdf(np.linspace(-5, 5, 12)))
    kernel = np.outer(taps, taps)
    return np.stack([ndimage.convolve(c.astype(np.float64), kernel, mode="constant", cval=0.0) for c in image])


def reference_curve(
    model: nn.Module, image: torch.Tensor, saliency: np.ndarray, target: int, moved: list[int],
    substrate: str, insert: bool,
) -> np.ndarray:
    """One image's deletion/insertion curve: a plain loop over steps copying pixels."""
    c, h, w = image.shape
    original = image.numpy().astype(np.float64)
    fill = reference_substrate(substrate, original)
    order = np.argsort(-saliency.ravel(), kind="stable")
    current, source = (fill.copy(), original) if insert else (original.copy(), fill)
    scores = []
    done = 0
    for count in moved:
        pixels = order[done:count]
        rows, cols = pixels // w, pixels % w
        current[:, rows, cols] = source[:, rows, cols]
        done = count
        with torch.no_grad():
            logits = model(torch.from_numpy(current).float()[None])
        scores.append(torch.softmax(logits.double(), dim=1)[0, target].item())
    return np.array(scores)


def reference_moved(n_pixels: int, step: int | None = None, n_steps: int | None = None) -> list[int]:
    if n_steps is not None:
        return [math.ceil(k * n_pixels / n_steps) for k in range(n_steps + 1)]
    n = math.ceil(n_pixels / step)
    return [min(k * step, n_pixels) for k in range(n + 1)]


def reference_auc(curve: np.ndarray) -> float:
    return float(np.trapezoid(curve, dx=1.0 / (len(curve) - 1)))


def score_test_network() -> nn.Module:
    """A tiny random ImageNet-shaped classifier (1000 logits) for fast end-to-end scoring tests;
    load it with study.load_model("_metrics_fixtures:score_test_network")."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, stride=4, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 8, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 1000),
    )


def score_network_that_dies() -> nn.Module:
    """`score_test_network` (same weights, so the same cache keys) whose process exits abruptly after
    DIE_AFTER_FORWARDS forward passes when its RANK is DIE_ON_RANK: a rank killed mid-run."""
    import os

    network = score_test_network()
    if os.environ.get("DIE_ON_RANK") is not None and os.environ.get("DIE_ON_RANK") == os.environ.get("RANK"):
        calls = iter(range(int(os.environ["DIE_AFTER_FORWARDS"]), -1, -1))
        network.register_forward_pre_hook(lambda module, args: None if next(calls) else os._exit(1))
    return network


def write_voc_set(root, sizes=((90, 60), (64, 80))) -> tuple:
    """Random photos with PASCAL VOC XML (1-based inclusive corners) in root/images, root/annotations."""
    from PIL import Image

    images, annotations = root / "images", root / "annotations"
    images.mkdir(parents=True)
    annotations.mkdir()
    rng = np.random.default_rng(0)
    for i, (w, h) in enumerate(sizes):
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(images / f"img{i}.png")
        (annotations / f"img{i}.xml").write_text(
            f"<annotation><filename>img{i}.png</filename><object><name>tabby</name><bndbox>"
            f"<xmin>{w // 4}</xmin><ymin>{h // 4}</ymin><xmax>{w // 2}</xmax><ymax>{h // 2}</ymax>"
            "</bndbox></object></annotation>"
        )
    return images, annotations
