"""A target layer's output seen as a feature map A[B,C,h,w], whatever layout the layer uses.

Every CAM method weighs the channels of a map A[B,C,h,w]. CNN layers output exactly that; vision
transformers output tokens [B,N,D] (prefix tokens first: a class token, perhaps a distillation token
and register tokens, then one token per patch, row by row), and the Swin and ConvNeXt stages of
torchvision and timm output channels-last maps [B,H,W,C]. `FeatureLayer.view` finds which, once per
output shape, from the shape and the input's size alone:

- tokens [B,N,D]: drop the first p tokens (0 <= p <= MAX_PREFIX) so that the N - p patch tokens form a
  grid h x w of the input's aspect, h = H/s and w = W/s for one patch size s (both rounded up or both
  down: padded or cropped last patches); a grid that tiles the input exactly wins over rounded ones; A = tokens[:, p:] as [B,D,h,w];
- [B,a,b,c]: channels first if (b, c) is such a grid, channels last if (a, b) is, channels first if
  neither is (PyTorch's convention); when both are, the layer's modules decide: LayerNorms or Linears acting on the last dimension (a Swin block)
  mean channels last; convolutions or batch norms, or no such modules at all (an Identity, a ReLU), mean
  PyTorch's convention, channels first; both kinds inside one container is ambiguous;
- several readings equally good (say p = 1 on a 4x4 grid and p = 8 on a 3x3 one: the exact patch size
  wins), or none: a ValueError naming the layer and the shape, never a silent guess. `reshape=` (a
  callable [B,...] -> [B,C,h,w], as pytorch-grad-cam's `reshape_transform`) overrides the reading.

A is always a view (slices, transposes and reshapes, no arithmetic) of the tensor the network itself
passes on, so the gradient of a score w.r.t. A is the same view of its gradient w.r.t. the tokens, and
channel k of A is one fixed set of the output's elements: zeroing it zeroes feature k of the patch
tokens, never a prefix token (`FeatureLayer.positions`, used by Ablation-CAM).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache, partial

import torch
from torch import nn

MAX_PREFIX = 8  # class + distillation + register tokens (DeiT: 2, DINOv2 with registers: 5)
Reshape = Callable[[torch.Tensor], torch.Tensor]

# Layers that act on the last dimension (channels-last maps) or on the second (channels-first maps).
_LAST_DIM = (nn.LayerNorm, nn.Linear)
_SECOND_DIM = (nn.Conv2d, nn.BatchNorm2d, nn.GroupNorm, nn.InstanceNorm2d)


@dataclass(frozen=True, eq=False)
class FeatureLayer:
    """The target layer of a CAM method: the module, its dotted name, and an optional user `reshape`."""

    module: nn.Module
    name: str
    reshape: Reshape | None = None

    def view(self, output: torch.Tensor, size: tuple[int, int]) -> Reshape:
        """The function taking this layer's output (or anything of its shape) to its [B,C,h,w] view."""
        if not isinstance(output, torch.Tensor):
            raise ValueError(f"target layer {self.name} ({type(self.module).__name__}) must output a tensor, "
                             f"got {type(output).__name__}")
        if self.reshape is not None:
            return partial(_checked, self.reshape, self.name)
        return _layout(tuple(output.shape), tuple(size), _channel_hint(self.module), self.name,
                       type(self.module).__name__)

    def positions(self, to_map: Reshape, output: torch.Tensor) -> torch.Tensor:
        """LongTensor[C, h*w]: where channel k of the map lies among one image's flattened output elements."""
        index = torch.arange(output[0].numel(), device=output.device).view(1, *output.shape[1:])
        try:
            mapped = to_map(index)
        except Exception as err:  # a user reshape that computes rather than rearranges
            raise ValueError(f"reshape of target layer {self.name} must only rearrange elements (slice, permute, "
                             f"reshape) for ablation: {err}") from err
        return mapped[0].flatten(1)


def _channel_hint(module: nn.Module) -> str | None:
    """Which dimension the layer's own modules treat as channels: "last", "second", or None (both kinds)."""
    for kinds, hint in ((_LAST_DIM, "last"), (_SECOND_DIM, "second")):
        if isinstance(module, kinds):
            return hint
    last = any(isinstance(m, _LAST_DIM) for m in module.modules())
    second = any(isinstance(m, _SECOND_DIM) for m in module.modules())
    return None if last and second else "last" if last else "second"


def as_feature_layer(layer: FeatureLayer | nn.Module) -> FeatureLayer:
    """`layer` itself, or a bare module (internal callers and tests) as a FeatureLayer without a reshape."""
    return layer if isinstance(layer, FeatureLayer) else FeatureLayer(layer, type(layer).__name__)


def _checked(reshape: Reshape, name: str, output: torch.Tensor) -> torch.Tensor:
    mapped = reshape(output)
    if not isinstance(mapped, torch.Tensor) or mapped.dim() != 4 or mapped.shape[0] != output.shape[0]:
        got = tuple(mapped.shape) if isinstance(mapped, torch.Tensor) else type(mapped).__name__
        raise ValueError(f"reshape of target layer {name} must return [B,C,h,w] with B={output.shape[0]}, got {got}")
    return mapped


def _channels_first(output: torch.Tensor) -> torch.Tensor:
    return output


def _channels_last(output: torch.Tensor) -> torch.Tensor:
    return output.permute(0, 3, 1, 2)


def _tokens(prefix: int, h: int, w: int, output: torch.Tensor) -> torch.Tensor:
    return output[:, prefix:].transpose(1, 2).unflatten(2, (h, w))


@lru_cache(maxsize=256)
def _layout(shape: tuple[int, ...], size: tuple[int, int], hint: str | None, name: str, kind: str) -> Reshape:
    """The view function for an output of `shape` when the input is `size` (see the module docstring)."""
    described = f"target layer {name} ({kind}) outputs shape {list(shape)} for a {size[0]}x{size[1]} input"
    advice = "pass target_layer= another layer, or reshape= a function returning [B,C,h,w]"
    if len(shape) == 4:
        first, last = _grid_fit(shape[2], shape[3], size), _grid_fit(shape[1], shape[2], size)
        if first != last:
            return _channels_first if first > last else _channels_last
        if not first:  # the input does not predict this map's size: PyTorch's convention, as before
            return _channels_first
        if hint is None:
            raise ValueError(f"{described}: ambiguous, both [B,C,H,W] and [B,H,W,C] fit and the layer mixes "
                             f"convolutions with last-dimension layers; {advice}")
        return _channels_last if hint == "last" else _channels_first
    if len(shape) == 3:
        n = shape[1]
        readings = []
        for prefix in range(min(MAX_PREFIX, n - 1) + 1):
            grid = _token_grid(n - prefix, size)
            if grid is not None:
                readings.append((grid[2], prefix, grid[0], grid[1]))
        top = max((r[0] for r in readings), default=0)
        best = [r for r in readings if r[0] == top]
        if len(best) == 1:
            _, prefix, h, w = best[0]
            return partial(_tokens, prefix, h, w)
        found = ", ".join(f"{p} prefix tokens + {h}x{w} patches" for _, p, h, w in best)
        why = f"ambiguous ({found})" if best else f"no prefix of up to {MAX_PREFIX} tokens leaves a patch grid of the input's aspect"
        raise ValueError(f"{described}: tokens [B,N,D], but {why}; {advice}")
    raise ValueError(f"{described}: CAM methods need a (B,C,H,W) feature map, a channels-last (B,H,W,C) one or "
                     f"tokens (B,N,D); {advice}")


def _token_grid(count: int, size: tuple[int, int]) -> tuple[int, int, int] | None:
    """(h, w, fit) of a grid of `count` patches with the input's aspect, or None (fit as in `_grid_fit`)."""
    height, width = size
    h = max(1, round(math.sqrt(count * height / width)))
    grids = [(rows, count // rows, _grid_fit(rows, count // rows, size))
             for rows in (h - 1, h, h + 1) if rows >= 1 and count % rows == 0]
    best = max(grids, key=lambda g: g[2], default=None)
    return best if best is not None and best[2] else None


def _grid_fit(h: int, w: int, size: tuple[int, int]) -> int:
    """2 if an h x w grid tiles the input with one integer patch size s exactly (H = s h, W = s w), 1 if it
    does up to padded or cropped last patches (h, w are H/s, W/s both rounded up or both down), else 0."""
    height, width = size
    if h > height or w > width:
        return 0
    if height % h == 0 and width % w == 0 and height // h == width // w:
        return 2
    for s in range(max(1, height // (h + 1)), height // max(h - 1, 1) + 2):
        if (h, w) in ((height // s, width // s), (-(-height // s), -(-width // s))):
            return 1
    return 0
