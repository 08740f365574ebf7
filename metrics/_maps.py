"""Checking saliency maps once, so every metric can assume Tensor[B, H, W] float32 without NaNs."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def as_maps(maps, batch: int | None = None, device: torch.device | None = None) -> Tensor:
    """Tensor[B,H,W] float32 from a tensor or array shaped [B,H,W] or [B,1,H,W]."""
    m = torch.as_tensor(maps, device=device)
    if m.dim() == 4 and m.shape[1] == 1:
        m = m[:, 0]
    if m.dim() != 3:
        raise ValueError(
            f"maps must be shaped [B, H, W] (one map per image and target); got {tuple(m.shape)}"
        )
    if batch is not None and m.shape[0] != batch:
        raise ValueError(f"got {m.shape[0]} maps for {batch} images")
    m = m.float()
    if torch.isnan(m).any():
        raise ValueError("maps contain NaN")
    return m


def maps_at(maps, batch: int, size: tuple[int, int], device: torch.device) -> Tensor:
    """Maps at the input's resolution: maps of another size are upsampled bilinearly, as explain() does."""
    m = as_maps(maps, batch, device)
    if tuple(m.shape[-2:]) != tuple(size):
        m = F.interpolate(m[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    return m


ORDERS = ("morf", "lerf")


def saliency_rank(maps: Tensor, order: str = "morf") -> Tensor:
    """Rank of every pixel of each map [B,H,W] -> Tensor[B, H*W] int32; 0 is the first pixel moved:
    the most salient ("morf") or the least salient ("lerf").

    A stable sort, so equal saliency keeps row-major order in both orders."""
    if order not in ORDERS:
        raise ValueError(
            f"order must be 'morf' (most relevant first) or 'lerf' (least relevant first); got {order!r}"
        )
    flat = maps.flatten(1)
    moved_first = torch.argsort(flat, dim=1, descending=order == "morf", stable=True)
    ranks = torch.arange(flat.shape[1], device=flat.device, dtype=torch.int32).expand_as(moved_first)
    return torch.empty_like(moved_first, dtype=torch.int32).scatter_(1, moved_first, ranks.contiguous())
