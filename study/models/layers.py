"""Finding layers inside a model: by dotted path, or the default layer that CAM methods explain.

The default (`default_layer`) is what users of each architecture expect, as pytorch-grad-cam documents it:
- a transformer (ViT, DeiT, Swin; torchvision, timm or Hugging Face): the first norm of its last block,
  `encoder.layers.encoder_layer_{L-1}.ln_1` (torchvision ViT), `blocks.{L-1}.norm1` (timm ViT/DeiT),
  `features.{S}.{L-1}.norm1` (torchvision Swin), `layers.{S}.blocks.{L-1}.norm1` (timm Swin),
  `vit.encoder.layer.{L-1}.layernorm_before` (Hugging Face ViT; `vit.layers.{L-1}.layernorm_before` in
  transformers 5). Its output is the last block's input
  tokens normalised, which the block's attention then reads: the features the class token attends to.
  The final norm after the last block would do for gradients only through the class token, so its patch
  tokens get no gradient at all.
- a CNN: the last layer with a spatial (B,C,H,W) output, not counting pooling (`last_spatial_layer`).
- never a patch embedding: a model whose only feature map is a patchifying convolution followed by tokens
  is an unrecognised transformer, and asks for `target_layer=`.
"""
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
# How transformer blocks name the norm in front of their attention: timm and torchvision Swin, torchvision
# ViT, Hugging Face ViT/DeiT/Swin.
BLOCK_NORMS = ("norm1", "ln_1", "layernorm_before")


def default_layer(model: nn.Module, x: torch.Tensor) -> str:
    """Dotted path of the layer CAM methods explain by default (see the module docstring)."""
    return last_block_norm(model) or last_spatial_layer(model, x)


def last_block_norm(model: nn.Module) -> str | None:
    """`<block>.<norm>` for the last transformer block of `model`, or None when it has none.

    A transformer block is recognised by its parts, whatever its class: a LayerNorm named as in
    BLOCK_NORMS and an attention module (a child whose class name says Attention, or nn.MultiheadAttention).
    """
    found = None
    for name, module in model.named_modules():
        norm = next((n for n in BLOCK_NORMS if isinstance(getattr(module, n, None), nn.LayerNorm)), None)
        attends = any(isinstance(c, nn.MultiheadAttention) or "Attention" in type(c).__name__ for c in module.children())
        if norm and attends:
            found = f"{name}.{norm}" if name else norm
    return found


def last_spatial_layer(model: nn.Module, x: torch.Tensor) -> str:
    """Dotted path of the last feature-map layer when `model` runs on `x` (the layer CAM methods explain).

    That is the last module whose output is a (B,C,H,W) map larger than 1x1, not counting pooling (whose
    output merely summarises the features) nor a container that ends in pooling. Containers count, so for
    a torchvision ResNet this is `layer4` rather than its last ReLU (the output seen from outside).
    A patchifying convolution (kernel = stride > 1) whose output the model goes on to use as tokens
    (B,N,D) is a transformer's patch embedding, never a good answer: a LookupError asks for target_layer.
    """
    names = {m: n for n, m in model.named_modules() if n}
    order: list[str] = []
    pooled: set[int] = set()
    tokens_after: list[bool] = []  # per entry of `order`: whether a (B,N,D) output came after it
    seen: list[torch.Tensor] = []  # keeps outputs alive so their ids stay unique during the pass

    def record(module, _inputs, output):
        if isinstance(output, torch.Tensor) and output.dim() == 3 and tokens_after:
            tokens_after[-1] = True
        if not (isinstance(output, torch.Tensor) and output.dim() == 4):
            return
        seen.append(output)
        if isinstance(module, POOLING) or id(output) in pooled:
            pooled.add(id(output))
        elif output.shape[-1] * output.shape[-2] > 1:
            order.append(names[module])
            tokens_after.append(False)

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
    last = model.get_submodule(order[-1])
    if tokens_after[-1] and isinstance(last, nn.Conv2d) and last.kernel_size == last.stride and last.stride[0] > 1:
        raise LookupError(
            f"{type(model).__name__} looks like a transformer: its last feature map is the patch embedding "
            f"{order[-1]} ({last.kernel_size[0]}x{last.kernel_size[1]} convolution, stride {last.stride[0]}), whose "
            f"output becomes tokens; pass target_layer= (e.g. the first norm of the last block) and, if its tokens "
            f"are not laid out as [B, prefix + h*w, D], reshape=")
    return order[-1]
