"""What deleted pixels become (deletion) or start as (insertion), in the model's input space.

- `zeros`: 0 after preprocessing (for ImageNet normalisation, the dataset's mean colour).
- `blur`: the RISE substrate: a separable 11-tap kernel whose taps are the standard normal's
  probability mass over 11 equal bins spanning [-5, 5] (sigma about 1.1 px), applied per channel
  as a 'same' convolution with zero padding. The taps are the masses themselves, not renormalised.
- `mean`: each image's per-channel mean.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

SUBSTRATES = ("zeros", "blur", "mean")


def blur_taps(taps: int = 11, span: float = 5.0) -> Tensor:
    """Standard normal probability mass of `taps` equal bins over [-span, span] (float64)."""
    edges = torch.linspace(-span, span, taps + 1, dtype=torch.float64)
    cdf = 0.5 * (1.0 + torch.erf(edges / math.sqrt(2.0)))
    return cdf.diff()


def blur(x: Tensor) -> Tensor:
    """The RISE blur of a batch [B,C,H,W]: two 1-D passes of `blur_taps()` per channel, zero padding."""
    channels = x.shape[1]
    taps = blur_taps().to(device=x.device, dtype=x.dtype)
    half = taps.numel() // 2
    across = taps.view(1, 1, 1, -1).expand(channels, 1, 1, -1)
    down = taps.view(1, 1, -1, 1).expand(channels, 1, -1, 1)
    rows = F.conv2d(x, across, padding=(0, half), groups=channels)
    return F.conv2d(rows, down, padding=(half, 0), groups=channels)


def substrate(name: str, x: Tensor) -> Tensor:
    """The substrate `name` for a batch of preprocessed images [B,C,H,W]."""
    if name == "zeros":
        return torch.zeros_like(x)
    if name == "blur":
        return blur(x)
    if name == "mean":
        return x.mean(dim=(2, 3), keepdim=True).expand_as(x)
    raise ValueError(f"unknown substrate {name!r}; choose one of {', '.join(SUBSTRATES)}")
