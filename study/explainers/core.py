"""What every explainer shares: the method registry, target handling, and activation capture."""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from metrics.model_calls import check_targets
from study.explainers.reshape import FeatureLayer, Reshape, as_feature_layer

MethodFn = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class Method:
    """A registered explainer.

    `fn(model, x, targets, *, layer, batch_size, seed, **options)` gets `targets` as LongTensor[B,T] and
    returns raw maps Tensor[B,T,h,w] (after the method's own ReLU, if it has one) at any resolution (guided ones: Tensor[B,T,3,H,W]).
    `per_image_batches`: `explain` feeds it chunks of `batch_size` images (gradient methods) and checks the
    target range inside its first call of the whole model, which it must make; otherwise it gets every image,
    spends `batch_size` on its own perturbed copies, and the targets are checked before it runs.
    `model_specific`: it explains only one kind of model (`abn`), so "every method" defaults leave it out.
    """

    name: str
    fn: MethodFn
    needs_layer: bool
    per_image_batches: bool
    randomised: bool = False
    guided: bool = False
    model_specific: bool = False


METHODS: dict[str, Method] = {}


def register(name: str, *, needs_layer: bool, per_image_batches: bool, randomised: bool = False,
             guided: bool = False, model_specific: bool = False) -> Callable[[MethodFn], MethodFn]:
    def add(fn: MethodFn) -> MethodFn:
        if name in METHODS:
            raise ValueError(f"method {name!r} is already registered (by {METHODS[name].fn.__module__})")
        METHODS[name] = Method(name, fn, needs_layer, per_image_batches, randomised, guided, model_specific)
        return fn

    return add


def as_targets(targets, x: torch.Tensor, model: nn.Module, batch_size: int) -> tuple[torch.Tensor, bool]:
    """Targets as LongTensor[B,T] on x's device, and whether the caller asked for one class per image.

    `None` means each image's top-1 class (one batched forward pass per `batch_size` images).
    """
    if targets is None:
        with torch.no_grad():
            top = torch.cat([model(chunk).argmax(1) for chunk in x.split(batch_size)])
        return top[:, None], True
    t = check_targets(targets, x.shape[0], x.device, per_image=True)
    return (t[:, None] if t.dim() == 1 else t), t.dim() == 1


@contextlib.contextmanager
def targets_checked(model: nn.Module, targets: torch.Tensor, x: torch.Tensor, *, up_front: bool) -> Iterator[None]:
    """A clear error for a class index the model does not have, before anything indexes the logits with it.

    `up_front`: check now with a one-image forward pass (methods that may never call the whole model, such
    as Ablation-CAM running only the part after the layer). Otherwise check inside the method's own first
    forward pass through a hook on the model, which costs nothing (gradient methods always call the model).
    """
    low, high = (int(v) for v in torch.stack([targets.min(), targets.max()]).tolist()) if targets.numel() else (0, 0)

    def check(num_classes: int) -> None:
        if low < 0 or high >= num_classes:
            raise ValueError(f"target class out of range: the model has {num_classes} classes, got {low}..{high}")

    if up_front:
        with torch.no_grad():
            check(model(x[:1]).shape[-1])
        yield
        return

    def hook(_module, _inputs, output):
        if isinstance(output, torch.Tensor) and output.dim() == 2:
            check(output.shape[-1])

    handle = model.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


class Captured:
    """The target layer's output from one forward pass (`output`, as the network passed it on) and its
    feature-map view [B,C,h,w] (`activations`; see reshape.py)."""

    def __init__(self, layer: FeatureLayer, size: tuple[int, int]):
        self.layer, self.size = layer, size
        self.output: torch.Tensor | None = None
        self.to_map: Reshape | None = None

    def record(self, output) -> None:
        self.to_map = self.layer.view(output, self.size)
        self.output = output
        self.to_map(output)  # a reshape that cannot view this output fails here, naming the layer

    @property
    def activations(self) -> torch.Tensor:
        return self.to_map(self.output)

    def gradient(self, score: torch.Tensor, retain_graph: bool) -> torch.Tensor:
        """d score / d A [B,C,h,w]: the same view of the gradient w.r.t. the layer's output."""
        return self.to_map(torch.autograd.grad(score, self.output, retain_graph=retain_graph)[0])


@contextlib.contextmanager
def capture(layer: FeatureLayer | nn.Module, size) -> Iterator[Captured]:
    """Record `layer`'s output during a forward pass on inputs of spatial `size` (H, W).

    The hook hands the rest of the network a clone, so in-place operations downstream (ReLU(inplace=True)
    after the layer) cannot corrupt the stored activations or the gradients taken with respect to them.
    """
    layer = as_feature_layer(layer)
    store = Captured(layer, tuple(size))

    def hook(_module, _inputs, output):
        store.record(output)
        return output.clone()

    handle = layer.module.register_forward_hook(hook)
    try:
        yield store
    finally:
        handle.remove()


@contextlib.contextmanager
def autograd_on() -> Iterator[None]:
    """Record the graph even when the caller is inside torch.no_grad(); inference mode cannot be undone."""
    if torch.is_inference_mode_enabled():
        raise ValueError("gradient methods need autograd: call explain() outside torch.inference_mode()")
    with torch.enable_grad():
        yield


def forward_with_activations(model: nn.Module, x: torch.Tensor, layer: FeatureLayer) -> tuple[torch.Tensor, Captured]:
    """(logits, the captured target layer) from one forward pass; run it, and what uses its graph, in autograd_on()."""
    with capture(layer, x.shape[-2:]) as store:
        logits = model(x.detach().requires_grad_(True))
    return logits, store


def target_scores(logits: torch.Tensor, targets: torch.Tensor, t: int) -> torch.Tensor:
    """Sum over the batch of each image's logit for its t-th target (one backward serves all images)."""
    return logits.float().gather(1, targets[:, t : t + 1]).sum()


def upsample(maps: torch.Tensor, size) -> torch.Tensor:
    """Bilinear resize of maps [B,T,h,w] to `size` (the one resampling every CAM goes through)."""
    b, t, h, w = maps.shape
    if (h, w) == tuple(size):
        return maps
    resized = F.interpolate(maps.reshape(b * t, 1, h, w), size=tuple(size), mode="bilinear", align_corners=False)
    return resized.reshape(b, t, *size)


def gap_linear_head(model: nn.Module, activations: torch.Tensor, logits: torch.Tensor) -> nn.Linear | None:
    """The final linear layer if the logits are exactly linear(global-average-pool(activations)), else None.

    Checked numerically on the batch at hand, so it works for any architecture without knowing its code.
    """
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears or linears[-1].in_features != activations.shape[1]:
        return None
    fc = linears[-1]
    with torch.no_grad():
        pooled = activations.float().mean((2, 3))
        expected = F.linear(pooled, fc.weight.float(), None if fc.bias is None else fc.bias.float())
        scale = logits.float().abs().amax().clamp_min(1.0)
        close = (expected - logits.float()).abs().amax() <= 1e-3 * scale
    return fc if close else None
