"""Structural similarity of two maps (Wang et al., "Image Quality Assessment: From Error Visibility
to Structural Similarity", IEEE TIP 2004), batched, with scikit-image's defaults.

Over every 7x7 window fully inside the map (uniform weights, sample covariances with N/(N-1)):

    SSIM = mean_windows ((2 mu_a mu_b + C1)(2 s_ab + C2)) / ((mu_a^2 + mu_b^2 + C1)(s_a^2 + s_b^2 + C2)),

C1 = (0.01 L)^2, C2 = (0.03 L)^2, and the data range L = max(a, b) - min(a, b) over both maps,
as Quantus sets it for skimage.metrics.structural_similarity.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def ssim(a: Tensor, b: Tensor, window: int = 7) -> Tensor:
    """SSIM of matching maps a, b [B,H,W] -> Tensor[B] (float64 inside, float32 out)."""
    if a.shape != b.shape or a.dim() != 3:
        raise ValueError(f"ssim compares maps of one shape [B, H, W]; got {tuple(a.shape)} and {tuple(b.shape)}")
    if min(a.shape[-2:]) < window:
        raise ValueError(f"maps must be at least {window} pixels on each side for SSIM; got {tuple(a.shape[-2:])}")
    a, b = a.double()[:, None], b.double()[:, None]
    both = torch.cat([a, b], dim=1).flatten(1)
    data_range = both.max(dim=1).values - both.min(dim=1).values
    c1, c2 = ((0.01 * data_range) ** 2)[:, None, None], ((0.03 * data_range) ** 2)[:, None, None]

    def mean(t: Tensor) -> Tensor:  # over the windows fully inside the map, as skimage keeps them
        return F.avg_pool2d(t, window, stride=1)[:, 0]

    mu_a, mu_b = mean(a), mean(b)
    unbiased = window * window / (window * window - 1)
    var_a = unbiased * (mean(a * a) - mu_a**2)
    var_b = unbiased * (mean(b * b) - mu_b**2)
    cov = unbiased * (mean(a * b) - mu_a * mu_b)
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return s.flatten(1).mean(dim=1).float()
