"""`random`: a seeded sanity baseline that ignores the model — smooth random blobs.

Each map is uniform noise on a coarse `grid` x `grid` lattice, which `explain` upsamples bilinearly into
smooth blobs of about the size a CAM highlights. The noise is drawn from a CPU torch.Generator seeded
by `seed` (None means 0), the image's content and the target class, so the same seed gives the same map
for the same image wherever it sits in a batch, while different images and classes get different maps.
"""
from __future__ import annotations

import hashlib

import torch

from study.explainers.core import register


@register("random", needs_layer=False, per_image_batches=False, randomised=True)
def random_map(model, x, targets, *, seed, grid: int = 7, layer=None, batch_size=None) -> torch.Tensor:
    """Tensor[B,T,grid,grid] of uniform noise; no model call."""
    if grid < 1:
        raise ValueError(f"random needs grid >= 1, got {grid}")
    images = x.detach().float().cpu().numpy()
    maps = torch.empty(targets.shape + (grid, grid))
    for b, image in enumerate(images):
        digest = hashlib.sha256(image.tobytes()).digest()
        for t, target in enumerate(targets[b].tolist()):
            key = hashlib.sha256(digest + f"{0 if seed is None else seed}:{target}".encode()).digest()
            g = torch.Generator().manual_seed(int.from_bytes(key[:8], "little"))
            maps[b, t] = torch.rand(grid, grid, generator=g)
    return maps.to(x.device)
