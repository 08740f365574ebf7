"""`explain(method, model, x, targets)`: every saliency method behind one batched call.

Each method lives in its own module of this package and registers itself in `METHODS`; `explain`
does the shared work once: input checks, targets, the target layer, chunking, autocast, upsampling
to the input size and per-map min-max scaling.
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil
from contextlib import nullcontext

import torch
from torch import nn

from metrics.model_calls import autocast, check_amp, check_positive, check_score, chunk_size, model_device
from study.explainers.core import METHODS, Method, as_targets, targets_checked, upsample
from study.explainers.reshape import FeatureLayer, Reshape
from study.models.layers import default_layer, resolve_layer

__all__ = ["explain", "METHODS", "check_options", "general_methods", "min_max", "resolve_method", "reduce_guided"]

for _module in pkgutil.iter_modules(__path__):
    if _module.name not in ("core", "adapters"):
        importlib.import_module(f"{__name__}.{_module.name}")

# What explain() itself passes to every method function; the rest of a signature are its options.
_SHARED = {"model", "x", "targets", "layer", "batch_size", "seed", "score"}


def general_methods() -> list[str]:
    """The methods that explain any classifier (what "every method" means); `abn` needs an ABN."""
    return [name for name, entry in METHODS.items() if not entry.model_specific]


def explain(
    method: str,
    model: nn.Module,
    x: torch.Tensor,
    targets=None,
    *,
    target_layer: str | nn.Module | None = None,
    batch_size: int | None = None,
    seed: int | None = None,
    normalize: bool = True,
    reduce: str = "max",
    amp: str | None = None,
    channels_last: bool = False,
    reshape: Reshape | None = None,
    score: str = "softmax",
    **options,
) -> torch.Tensor:
    """Saliency maps for `targets` (LongTensor[B] or [B,T]; None = top-1) of `model` on inputs `x`.

    Returns Tensor[B,H,W] (or [B,T,H,W] for 2-D targets) float32 in [0,1] at the input resolution, on
    the model's device. `method` is a name in `METHODS`, or `"captum:<Attribution>"` /
    `"gradcam_lib:<CAMClass>"` to run a method of those libraries through the same interface.
    `batch_size` bounds how many images (gradient methods) or perturbed copies (perturbation methods) go
    through the model at once; None chooses for the device: 32 on an accelerator, on a CPU as many as
    hold 2**20 input values (6 of 3x224x224), where smaller chunks stay in cache and run faster.
    `amp="bf16"|"fp16"` runs the model under autocast; `channels_last=True` feeds it channels-last
    tensors (GPU speed-ups; maps are always returned as float32).
    Guided methods reduce their RGB maps by the maximum absolute value over channels; `reduce="none"`
    returns Tensor[B,3,H,W] for display instead. The model runs in eval mode and is left in the mode
    it was found in.

    Layer methods read the target layer's output as a feature map [B,C,h,w]: transformer tokens [B,N,D]
    and channels-last maps [B,H,W,C] are recognised from their shape (study/explainers/reshape.py);
    `reshape=` (a callable [B,...] -> [B,C,h,w] that only rearranges elements) overrides that reading.
    `score="softmax"|"sigmoid"|"logit"` is the class score that perturbation methods (RISE, Score-CAM,
    LIME) measure: softmax for single-label heads, sigmoid for multi-label ones. Gradient methods always
    differentiate the logit, as their papers define.
    """
    entry = resolve_method(method)
    _check_options(entry, options)
    check_score(score)
    if reshape is not None and not callable(reshape):
        raise ValueError(f"reshape must be a callable [B,...] -> [B,C,h,w], got {type(reshape).__name__}")
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or not x.dtype.is_floating_point:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be a float Tensor[B,C,H,W] of preprocessed images, got {shape}")
    if batch_size is not None:
        check_positive(batch_size, "batch_size")
    dtype = check_amp(amp)
    if reduce not in ("max", "none"):
        raise ValueError(f"reduce must be 'max' or 'none', got {reduce!r}")
    device = model_device(model)
    x = x.to(device, torch.float32)
    if x.is_inference():  # made under torch.inference_mode(): a normal copy can take part in autograd
        x = x.clone()
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    if batch_size is None:
        batch_size = chunk_size(x, 32)
    was_training = model.training
    model.eval()
    try:
        with autocast(device, dtype):
            layer = FeatureLayer(*_layer(model, x, target_layer), reshape) if entry.needs_layer else None
            raw, one_per_image = _run(entry, model, x, targets, layer, batch_size, seed, score, options)
    finally:
        model.train(was_training)
    maps = _finish(raw.detach().float(), x.shape[-2:], normalize=normalize, guided=entry.guided, reduce=reduce)
    return maps[:, 0] if one_per_image else maps


def _run(entry: Method, model, x, targets, layer, batch_size, seed, score, options) -> tuple[torch.Tensor, bool]:
    """Raw maps [B,T,...] of the method, and whether one class per image was asked for."""
    t, one_per_image = as_targets(targets, x, model, batch_size)
    kwargs = dict(layer=layer, batch_size=batch_size, seed=seed, **options)
    if "score" in inspect.signature(entry.fn).parameters:
        kwargs["score"] = score
    checked = targets_checked(model, t, x, up_front=not entry.per_image_batches) if targets is not None else nullcontext()
    with checked:
        if entry.per_image_batches:
            chunks = zip(x.split(batch_size), t.split(batch_size))
            return torch.cat([entry.fn(model, xb, tb, **kwargs) for xb, tb in chunks]), one_per_image
        return entry.fn(model, x, t, **kwargs), one_per_image


def resolve_method(name: str) -> Method:
    """The registry entry of a method name, or of a `captum:`/`gradcam_lib:` adapter."""
    if isinstance(name, str) and ":" in name:
        from study.explainers.adapters import adapter

        return adapter(name)
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose from {', '.join(sorted(METHODS))} "
                         f"or 'captum:<Attribution>' / 'gradcam_lib:<CAMClass>'")
    return METHODS[name]


def check_options(method: str, options: dict) -> None:
    """Refuse now what `explain(method, ..., **options)` would refuse later: an unknown method or option.

    For callers that explain much later (after loading a model and images), so that a misspelt
    option costs nothing. Options that `explain` takes itself (`target_layer`, ...) are valid for
    every method.
    """
    own = {name for name, p in inspect.signature(explain).parameters.items()
           if p.kind is inspect.Parameter.KEYWORD_ONLY}
    _check_options(resolve_method(method), {name: v for name, v in options.items() if name not in own})


def _check_options(entry: Method, options: dict) -> None:
    """A misspelt option names the valid ones instead of being ignored (or failing deep inside)."""
    parameters = inspect.signature(entry.fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return      # adapters route their options themselves and reject unknown ones there
    valid = sorted(set(parameters) - _SHARED)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(f"unknown option {', '.join(map(repr, unknown))} for method {entry.name!r}; "
                         f"valid options: {', '.join(valid) or 'none'}")


def reduce_guided(rgb: torch.Tensor) -> torch.Tensor:
    """A guided RGB map [...,3,H,W] as one channel: the maximum absolute value over colours."""
    return rgb.abs().amax(-3)


def _layer(model: nn.Module, x: torch.Tensor, target_layer) -> tuple[nn.Module, str]:
    """The target layer module and its dotted name (the model's own default, else `default_layer`)."""
    if target_layer is None:
        target_layer = getattr(model, "target_layer", None) or default_layer(model, x)
    module = resolve_layer(model, target_layer)
    return module, next(name for name, m in model.named_modules() if m is module) or type(module).__name__


def _finish(raw: torch.Tensor, size, *, normalize: bool, guided: bool, reduce: str) -> torch.Tensor:
    """Upsample raw maps to the input size, reduce guided RGB maps, min-max scale each map."""
    if guided:
        if reduce == "max":
            raw = reduce_guided(raw)
    else:
        raw = upsample(raw, size)
    return min_max(raw, map_dims=raw.dim() - 2) if normalize else raw


def min_max(maps: torch.Tensor, map_dims: int = 2) -> torch.Tensor:
    """Each map (the last `map_dims` dimensions) scaled to [0,1]: (m - min) / (max - min)."""
    flat = maps.flatten(-map_dims)
    low, high = flat.amin(-1, keepdim=True), flat.amax(-1, keepdim=True)
    scaled = (flat - low) / (high - low).clamp_min(torch.finfo(flat.dtype).tiny)
    return scaled.reshape(maps.shape)
