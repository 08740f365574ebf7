"""Finding layers inside a model: by dotted path, or the last one with a spatial (4-D) output."""
from __future__ import annotations

import torch
from torch import nn


def resolve_layer(model: nn.Module, layer: str | nn.Module) -> nn.Module:
    """The module named by a dotted path (`"layer4"`, `"features.29"`), or `layer` itself if it is a module."""
    if isinstance(layer, nn.Module):
        if not any(m is layer for m in model.modules()):
            raise LookupError(f"target layer {type(layer).__name__} is not a submodule of {type(model).__name__}")
        return layer
    modules = dict(model.named_modules())
    if layer not in modules:
        spatial = [n for n, m in modules.items() if n and not list(m.children())][-5:]
        raise LookupError(
            f"model {type(model).__name__} has no layer {layer!r}; leaf layers near the end: {', '.join(spatial)}"
        )
    return modules[layer]


POOLING = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.AvgPool2d, nn.MaxPool2d)


def last_spatial_layer(model: nn.Module, x: torch.Tensor) -> str:
    """Dotted path of the last feature-map layer when `model` runs on `x` (the layer CAM methods explain).

    That is the last module whose output is a (B,C,H,W) map larger than 1x1, not counting pooling (whose
    output merely summarises the features) nor a container that ends in pooling. Containers count, so for
    a torchvision ResNet this is `layer4` rather than its last ReLU (the output seen from outside).
    """
    names = {m: n for n, m in model.named_modules() if n}
    order: list[str] = []
    pooled: set[int] = set()
    seen: list[torch.Tensor] = []  # keeps outputs alive so their ids stay unique during the pass

    def record(module, _inputs, output):
        if not (isinstance(output, torch.Tensor) and output.dim() == 4):
            return
        seen.append(output)
        if isinstance(module, POOLING) or id(output) in pooled:
            pooled.add(id(output))
        elif output.shape[-1] * output.shape[-2] > 1:
            order.append(names[module])

    handles = [m.register_forward_hook(record) for m in names]
    try:
        with torch.no_grad():
            model(x[:1])
    finally:
        for h in handles:
            h.remove()
    if not order:
        raise LookupError(f"{type(model).__name__} has no layer with a spatial (B,C,H,W) output")
    # Hooks fire child-first, so the last entry is the outermost module finishing last.
    return order[-1]
