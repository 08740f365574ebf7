"""How concentrated a map is, from the map alone (no model): sparseness and complexity.

Both look at the absolute values |a_i| of each map's n pixels (a map that spends its mass on few
pixels is easier to read). An all-zero map has neither and gives NaN.

- `sparseness` (Chalasani et al., "Concise Explanations of Neural Networks using Adversarial
  Training", ICML 2020): the Gini index of |a| sorted ascending, a_(1) <= ... <= a_(n),

      G = sum_i (2i - n - 1) a_(i) / (n sum_i a_(i)),

  0 for a uniform map, (n-1)/n when one pixel holds all the mass. Higher is sparser.
- `complexity` (Bhatt et al., "Evaluating and Aggregating Feature-based Model Explanations",
  IJCAI 2020): the entropy of the fractional contributions P_i = |a_i| / sum_j |a_j|,

      C = -sum_i P_i ln P_i   (0 ln 0 = 0),

  0 when one pixel holds all the mass, ln n for a uniform map. Lower is simpler.

Quantus adds 1e-7 to every value before the Gini index and 1e-12 inside the logarithm; camstudy
uses the formulas as written (the differences are below 1e-6 for maps scaled to [0, 1]).
"""
from __future__ import annotations

import torch
from torch import Tensor

from metrics._maps import as_maps


def _absolute(maps) -> Tensor:
    """|maps| as Tensor[B, H*W] float64 and each row's total, NaN where a map is all zero."""
    a = as_maps(maps).flatten(1).double().abs()
    total = a.sum(dim=1)
    return a, torch.where(total > 0, total, torch.full_like(total, float("nan")))


def sparseness(maps) -> Tensor:
    """Gini index of each map's absolute values, Tensor[B] (see the module docstring)."""
    a, total = _absolute(maps)
    n = a.shape[1]
    weights = 2 * torch.arange(1, n + 1, dtype=a.dtype, device=a.device) - n - 1
    return ((a.sort(dim=1).values * weights).sum(dim=1) / (n * total)).float()


def complexity(maps) -> Tensor:
    """Entropy (nats) of each map's fractional contributions, Tensor[B] (see the module docstring)."""
    a, total = _absolute(maps)
    share = a / total[:, None]
    return (-torch.special.xlogy(share, share).sum(dim=1)).float()
