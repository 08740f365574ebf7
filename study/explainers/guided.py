"""Guided backpropagation (Springenberg et al. 2015) and the guided CAMs of Grad-CAM and Ablation-CAM.

Guided backprop changes only the backward pass of the rectifiers: each passes back the positive part of
the incoming gradient, and only where its input was positive. Models apply rectifiers in many ways
(nn.ReLU modules, in-place ones, F.relu, torch.relu, Tensor.relu_), so module hooks alone miss some;
instead the forward pass runs under a TorchFunctionMode that swaps every rectifier call for `_Rectifier`,
an autograd Function whose backward can be switched between the ordinary and the guided rule. That
switch lets guided Grad-CAM take the ordinary gradient at the target layer and the guided gradient at
the input from one forward pass.

ReLU6 (nn.ReLU6, F.relu6, F.hardtanh with min 0, clamp(0, max) as in EfficientNet-Lite) is read as
a ReLU followed by a cap: the ReLU gets the guided rule and the cap keeps its ordinary gradient, so a
gradient passes back only if positive and only where 0 < x < 6. Any clamp with a lower bound of 0 counts
as a rectifier (with its upper bound as the cap). Other activations (GELU, SiLU, leaky
ReLU) keep their ordinary gradients. captum's GuidedBackprop hooks nn.ReLU modules only, and
pytorch-grad-cam's GuidedBackpropReLUModel swaps only nn.ReLU modules, so both give the plain gradient
through functional ReLUs and ReLU6; on models whose ReLUs are nn.ReLU modules all three agree.
"""
from __future__ import annotations

from contextlib import nullcontext
from numbers import Real

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from study.explainers.core import autograd_on, capture, register, target_scores, upsample
from study.explainers.gradients import gradcam_weights, weighted_maps

# How each rectifier-like function names its arguments: (family, argument names, applies in place).
_CALLS = {
    F.relu: ("relu", ("input", "inplace"), False),
    torch.relu: ("relu", ("input",), False),
    torch.Tensor.relu: ("relu", ("input",), False),
    torch.relu_: ("relu", ("input",), True),  # also F.relu_
    torch.Tensor.relu_: ("relu", ("input",), True),
    F.relu6: ("relu6", ("input", "inplace"), False),
    F.hardtanh: ("hardtanh", ("input", "min_val", "max_val", "inplace"), False),
    F.hardtanh_: ("hardtanh", ("input", "min_val", "max_val"), True),
    torch.clamp: ("clamp", ("input", "min", "max"), False),
    torch.clip: ("clamp", ("input", "min", "max"), False),
    torch.Tensor.clamp: ("clamp", ("input", "min", "max"), False),
    torch.Tensor.clip: ("clamp", ("input", "min", "max"), False),
    torch.clamp_: ("clamp", ("input", "min", "max"), True),
    torch.Tensor.clamp_: ("clamp", ("input", "min", "max"), True),
    torch.Tensor.clip_: ("clamp", ("input", "min", "max"), True),
    torch.clamp_min: ("clamp", ("input", "min"), False),
    torch.Tensor.clamp_min: ("clamp", ("input", "min"), False),
    torch.clamp_min_: ("clamp", ("input", "min"), True),
    torch.Tensor.clamp_min_: ("clamp", ("input", "min"), True),
}


def _rectifier(func, args, kwargs) -> tuple[torch.Tensor, float | None, bool] | None:
    """(input, upper cap or None, in place) if this call is a rectifier, else None."""
    spec = _CALLS.get(func)
    if spec is None:
        return None
    family, names, inplace = spec
    a = {"inplace": inplace, "min_val": -1.0, "max_val": 1.0, "min": None, "max": None}
    a.update(zip(names, args))
    a.update(kwargs)
    if family == "relu":
        return a["input"], None, a["inplace"]
    if family == "relu6":
        return a["input"], 6.0, a["inplace"]
    low, high = (a["min_val"], a["max_val"]) if family == "hardtanh" else (a["min"], a["max"])
    is_number = lambda v: isinstance(v, Real) and not isinstance(v, bool)  # noqa: E731
    if is_number(low) and low == 0 and (high is None or (is_number(high) and high > 0)):
        return a["input"], None if high is None else float(high), a["inplace"]
    return None


class _Switch:
    """Which backward rule the rectifiers of one guided pass use (read at backward time)."""

    guided = True


class _Rectifier(torch.autograd.Function):
    """clamp(x, 0, upper) whose backward is ordinary or guided, as `switch.guided` says."""

    @staticmethod
    def forward(ctx, x, upper, inplace, switch):
        passing = (x > 0) if upper is None else (x > 0) & (x < upper)
        ctx.save_for_backward(passing)
        ctx.switch = switch
        if inplace:
            ctx.mark_dirty(x)
            return x.clamp_(0, upper)
        return x.clamp(0, upper)

    @staticmethod
    def backward(ctx, grad):
        (passing,) = ctx.saved_tensors
        if ctx.switch.guided:
            grad = grad.clamp_min(0)
        return grad * passing, None, None, None


class _GuidedRectifiers(TorchFunctionMode):
    """While active, every rectifier call in the forward pass becomes a `_Rectifier` (counted in `seen`)."""

    def __init__(self, switch: _Switch):
        super().__init__()
        self.switch = switch
        self.seen = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        call = _rectifier(func, args, kwargs)
        if call is None:
            return func(*args, **kwargs)
        self.seen += 1
        return _Rectifier.apply(*call, self.switch)


def guided_gradients(model, x, targets, layer=None):
    """Guided input gradients [B,T,C,H,W] of each target's logit, from one forward pass.

    With `layer`, also that layer's activations [B,K,h,w] and, per target, the ordinary gradient there
    (the Grad-CAM ingredients), taken from the same forward pass.
    """
    switch = _Switch()
    with autograd_on():
        x = x.detach().requires_grad_(True)
        guide = _GuidedRectifiers(switch)
        with guide, (capture(layer, x.shape[-2:]) if layer is not None else nullcontext()) as store:
            logits = model(x)
        if not guide.seen:
            raise ValueError(
                f"guided backprop changes the backward pass of rectifiers (ReLU), and {type(model).__name__} has "
                f"none (GELU, SiLU and the like are smooth): its guided gradient would be the plain gradient; "
                f"use gradcam or a gradient method instead")
        n = targets.shape[1]
        guided, layer_grads = [], []
        for t in range(n):
            score = target_scores(logits, targets, t)
            if layer is not None:
                switch.guided = False
                layer_grads.append(store.gradient(score, retain_graph=True).float())
                switch.guided = True
            guided.append(torch.autograd.grad(score, x, retain_graph=t < n - 1)[0])
    activations = store.activations.detach().float() if layer is not None else None
    return torch.stack(guided, 1), activations, layer_grads


def _guide(guided: torch.Tensor, cams: torch.Tensor) -> torch.Tensor:
    """Guided gradients [B,T,C,H,W] times the raw CAMs [B,T,h,w] upsampled to the input."""
    return guided * upsample(cams, guided.shape[-2:])[:, :, None]


@register("guided_backprop", needs_layer=False, per_image_batches=True, guided=True)
def guided_backprop(model, x, targets, *, layer=None, batch_size=None, seed=None) -> torch.Tensor:
    """d y_c / d x with the guided rule at every rectifier: Tensor[B,T,C,H,W] (matches captum's
    GuidedBackprop on models whose ReLUs are nn.ReLU modules; see the module docstring for the rest)."""
    return guided_gradients(model, x, targets)[0]


@register("guided_gradcam", needs_layer=True, per_image_batches=True, guided=True)
def guided_gradcam(model, x, targets, *, layer, batch_size=None, seed=None) -> torch.Tensor:
    """Guided backprop times the bilinearly upsampled raw Grad-CAM, as in the Grad-CAM paper's code.

    pytorch-grad-cam multiplies by the min-max-scaled CAM instead and captum's GuidedGradCam upsamples
    with nearest neighbours; the first differs when a CAM has no zero, the second at region borders.
    """
    guided, activations, grads = guided_gradients(model, x, targets, layer)
    with torch.autocast(x.device.type, enabled=False):
        cams = torch.stack([weighted_maps(activations, gradcam_weights(activations, g)) for g in grads], 1)
    return _guide(guided, cams)


@register("guided_ablationcam", needs_layer=True, per_image_batches=False, guided=True)
def guided_ablationcam(model, x, targets, *, layer, batch_size, seed=None) -> torch.Tensor:
    """Guided backprop times the bilinearly upsampled raw Ablation-CAM (the Ablation-CAM paper's guided variant)."""
    from study.explainers.ablation import ablation_maps

    guided = torch.cat([guided_gradients(model, xb, tb)[0] for xb, tb in zip(x.split(batch_size), targets.split(batch_size))])
    cams = ablation_maps(model, x, targets, layer, batch_size)
    return _guide(guided, cams.float())
