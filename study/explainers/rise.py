"""RISE (Petsiuk et al. 2018): saliency as the expected class probability under random masks.

saliency_c = sum_i P_c(I * M_i) M_i / (N p). Each mask is a binary `grid` x `grid` array with P(1) = p,
upsampled bilinearly to (grid+1) * cell (cell = ceil(size / grid)) and cropped at a random shift in
[0, cell) on each axis, so the masks are smooth and not aligned to one lattice.

Masks come from `seed` via a CPU torch.Generator (the same seed gives the same masks, and so the same
maps, on every device); only the tiny binary grids are drawn up front, the full-size masks are built
`batch_size` at a time on the model's device. The same masks serve every image, and one set of masked
passes serves every requested class. The default seed (None) is 0, so maps are reproducible.
"""
from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F

from metrics.model_calls import class_scores
from study.explainers.core import register


def rise_masks(n_masks: int, grid: int, p: float, size: tuple[int, int], seed: int, chunk: int,
               device: torch.device | str = "cpu") -> Iterator[torch.Tensor]:
    """The RISE masks for `seed`, as float Tensors [m,H,W] of at most `chunk` masks, in order."""
    if n_masks < 1 or grid < 1 or not 0 < p < 1:
        raise ValueError(f"rise needs n_masks >= 1, grid >= 1 and 0 < p < 1; got {n_masks}, {grid}, {p}")
    h, w = size
    cell_h, cell_w = math.ceil(h / grid), math.ceil(w / grid)
    g = torch.Generator().manual_seed(seed)
    grids = (torch.rand(n_masks, 1, grid, grid, generator=g) < p).float().to(device)  # tiny: one copy
    ys = (torch.randint(0, cell_h, (n_masks, 1), generator=g) + torch.arange(h)).to(device)  # crop rows [N,H]
    xs = (torch.randint(0, cell_w, (n_masks, 1), generator=g) + torch.arange(w)).to(device)  # crop cols [N,W]
    for start in range(0, n_masks, chunk):
        part = slice(start, start + chunk)
        up = F.interpolate(grids[part], size=((grid + 1) * cell_h, (grid + 1) * cell_w), mode="bilinear",
                           align_corners=False)[:, 0]
        index = torch.arange(up.shape[0], device=device)[:, None, None]
        yield up[index, ys[part, :, None], xs[part, None, :]]


@register("rise", needs_layer=False, per_image_batches=False, randomised=True)
def rise(model, x, targets, *, batch_size, seed, n_masks: int = 4000, grid: int = 7, p: float = 0.5,
         layer=None, score="softmax") -> torch.Tensor:
    """Tensor[B,T,H,W]; `n_masks`, `grid` (s) and `p` as in the paper (defaults 4000, 7, 0.5); P_c is the
    softmax probability, or the sigmoid or the logit (explain's `score=`)."""
    b, _, h, w = x.shape
    saliency = torch.zeros(b, targets.shape[1], h * w, device=x.device)
    with torch.no_grad():
        for masks in rise_masks(n_masks, grid, p, (h, w), 0 if seed is None else seed, batch_size, x.device):
            flat = masks.flatten(1)
            for i in range(b):
                probs = class_scores(model(x[i] * masks[:, None]), score)[:, targets[i]]  # [m,T]
                with torch.autocast(x.device.type, enabled=False):  # accumulate in float32 under amp
                    saliency[i] += probs.T @ flat
    return (saliency / (n_masks * p)).view(b, -1, h, w)
