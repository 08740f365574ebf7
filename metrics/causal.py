"""Deletion and insertion, the causal metrics of the RISE paper (Petsiuk et al., 2018).

Pixels are ranked by saliency, highest first ("morf", most relevant first, the paper's order) or
lowest first ("lerf", least relevant first, the reverse check of Samek et al. 2017 / Rong et al.
2022: a faithful map's curves then stay high under deletion and rise late under insertion); ties
keep their row-major order either way. After k of the
n = ceil(H*W / step) steps, the first min(k*step, H*W) pixels of that ranking have been moved:
deletion replaces them in the image with the substrate, insertion puts them from the image into
the substrate. The curve is the target's score (`score=`: softmax probability by default,
sigmoid for multi-label models, or the logit) at the n+1 points and
AUC = (sum(curve) - curve[0]/2 - curve[-1]/2) / n.

Work is batched across images and steps: each image's ranking is held as a rank per pixel, and
the inputs of a chunk of (image, step) pairs are built on the model's device by broadcast
`where`s on `rank < pixels_moved`, into one reused buffer of `batch_size` inputs (memory does not
grow with images or steps). The original image is scored once; it is deletion's first point and
insertion's last.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from metrics._maps import maps_at, saliency_rank
from metrics.model_calls import (
    checked_inputs,
    check_targets,
    evaluating,
    check_score,
    chunks,
    memory_format_of,
    scores_and_targets,
    target_scores,
)
from metrics.substrates import SUBSTRATES, substrate as make_substrate


@dataclass(frozen=True)
class CausalCurve:
    """One causal metric for a batch: `auc` Tensor[B], `curve` Tensor[B, n+1], `pixels` Tensor[n+1]
    (pixels moved at each point), `targets` LongTensor[B] (the classes scored). All on the CPU."""

    auc: Tensor
    curve: Tensor
    pixels: Tensor
    targets: Tensor


def pixels_moved(n_pixels: int, step: int | None = None, n_steps: int | None = None) -> Tensor:
    """Pixels moved after each of the n+1 points: min(k*step, H*W), or ceil(k*H*W/n_steps)."""
    if step is not None and n_steps is not None:
        raise ValueError("give either step or n_steps, not both")
    if n_steps is not None:
        if isinstance(n_steps, bool) or not isinstance(n_steps, numbers.Integral) or not 1 <= n_steps <= n_pixels:
            raise ValueError(f"n_steps must be an integer in [1, {n_pixels}] (H*W); got {n_steps!r}")
        n_steps = int(n_steps)
        k = torch.arange(n_steps + 1)
        return (k * n_pixels + n_steps - 1) // n_steps
    step = 224 if step is None else step
    if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 1:
        raise ValueError(f"step must be a positive integer number of pixels; got {step!r}")
    step = int(step)
    n = math.ceil(n_pixels / step)
    return (torch.arange(n + 1) * step).clamp(max=n_pixels)


def auc(curve: Tensor) -> Tensor:
    """Trapezoidal area under curves [B, n+1] sampled at n equal intervals of [0, 1]."""
    n = curve.shape[1] - 1
    return (curve.sum(dim=1) - curve[:, 0] / 2 - curve[:, -1] / 2) / n


def _perturbed_scores(
    model: nn.Module,
    x: Tensor,
    fill: Tensor,
    rank: Tensor,
    moved: Tensor,
    insert: bool,
    targets: Tensor,
    batch_size: int,
    amp: torch.dtype | None,
    score: str,
) -> Tensor:
    """Target score for every (image, point) pair -> Tensor[B, len(moved)], on the device.

    Deletion shows the image where rank >= moved and the substrate elsewhere; insertion the reverse.
    Pairs are taken image by image in chunks of `batch_size`; each chunk is written into one reused
    input buffer with a broadcast `where` per image it touches (no gathered copies of the images).
    """
    batch, channels, height, width = x.shape
    points = moved.numel()
    jobs = batch * points
    moved = moved.to(x.device)
    buffer = torch.empty(
        (min(batch_size, jobs), channels, height, width), device=x.device, dtype=x.dtype,
        memory_format=memory_format_of(x),
    )
    target_of = targets.repeat_interleave(points)
    out = torch.empty(jobs, device=x.device)
    for start, stop in chunks(jobs, batch_size):
        inputs = buffer[: stop - start]
        for image in range(start // points, (stop - 1) // points + 1):
            first, last = max(start, image * points), min(stop, (image + 1) * points)
            steps = moved[first - image * points : last - image * points, None]
            shown = rank[image] < steps if insert else rank[image] >= steps
            into = inputs[first - start : last - start]
            torch.where(shown.view(-1, 1, height, width), x[image], fill[image], out=into)
        out[start:stop] = target_scores(model, inputs, target_of[start:stop], amp, score)
    return out.view(batch, points)


def causal_curves(
    model: nn.Module,
    x: Tensor,
    maps,
    targets=None,
    *,
    step: int | None = None,
    n_steps: int | None = None,
    deletion_substrate: str | None = "zeros",
    insertion_substrate: str | None = "blur",
    order: str = "morf",
    score: str = "softmax",
    batch_size: int | None = None,
    amp: str | None = None,
) -> dict[str, CausalCurve]:
    """Deletion and/or insertion from one scoring of the original images.

    Pass `None` as a substrate to skip that metric. Returns {"deletion": ..., "insertion": ...}.
    Maps [B,H,W] (or [B,1,H,W]) of another size than the input are upsampled bilinearly. `amp`
    ("bf16" / "fp16") runs the model under autocast; scores are taken in float32. `order` is "morf"
    (most salient pixels first, default) or "lerf"; `score` "softmax" (default), "sigmoid" or "logit".
    The model runs in eval mode (restored afterwards) on its own device; x moves there.
    """
    x, device, batch_size, amp_dtype = checked_inputs(model, x, batch_size, amp, largest=256)
    batch, _, height, width = x.shape
    moved = pixels_moved(height * width, step, n_steps)
    rank = saliency_rank(maps_at(maps, batch, (height, width), device), order)
    check_score(score)
    if deletion_substrate is None and insertion_substrate is None:
        raise ValueError("both substrates are None: nothing to compute")
    kinds = {"deletion": deletion_substrate, "insertion": insertion_substrate}
    for name in kinds.values():
        if name is not None and name not in SUBSTRATES:
            raise ValueError(f"unknown substrate {name!r}; choose one of {', '.join(SUBSTRATES)}")
    on_device: dict[str, Tensor] = {}
    with evaluating(model):
        original, chosen = scores_and_targets(
            model, x, check_targets(targets, batch, device), batch_size, amp_dtype, score
        )
        for kind, name in kinds.items():
            if name is None:
                continue
            fill = make_substrate(name, x)
            if kind == "deletion":
                rest = _perturbed_scores(model, x, fill, rank, moved[1:], False, chosen, batch_size, amp_dtype, score)
                on_device[kind] = torch.cat([original[:, None], rest], dim=1)
            else:
                rest = _perturbed_scores(model, x, fill, rank, moved[:-1], True, chosen, batch_size, amp_dtype, score)
                on_device[kind] = torch.cat([rest, original[:, None]], dim=1)
    chosen = chosen.cpu()  # the only host round trip, after all the work is queued
    return {
        kind: CausalCurve(auc=auc(curve.cpu()), curve=curve.cpu(), pixels=moved, targets=chosen)
        for kind, curve in on_device.items()
    }


def _one_curve(kind: str, default_substrate: str, summary: str):
    """`deletion` or `insertion`: `causal_curves` for one of the two curves (one place for both signatures)."""
    def curve(model: nn.Module, x: Tensor, maps, targets=None, *, step: int | None = None,
              n_steps: int | None = None, substrate: str = default_substrate, order: str = "morf",
              score: str = "softmax", batch_size: int | None = None, amp: str | None = None) -> CausalCurve:
        substrates = {"deletion_substrate": None, "insertion_substrate": None, f"{kind}_substrate": substrate}
        return causal_curves(model, x, maps, targets, step=step, n_steps=n_steps, order=order, score=score,
                             batch_size=batch_size, amp=amp, **substrates)[kind]

    curve.__name__ = curve.__qualname__ = kind
    curve.__doc__ = summary
    return curve


deletion = _one_curve("deletion", "zeros", """RISE deletion: the target's probability as the most salient pixels become the substrate.

    Lower AUC is better. `step` pixels per step (default 224) or `n_steps` steps; substrates
    "zeros" (default), "blur", "mean"; see `causal_curves` for `order`, `score`, maps, devices, `amp`.
    """)
insertion = _one_curve("insertion", "blur", """RISE insertion: the target's probability as the most salient pixels enter the substrate.

    Higher AUC is better. `step` pixels per step (default 224) or `n_steps` steps; substrates
    "blur" (default), "zeros", "mean"; see `causal_curves` for `order`, `score`, maps, devices, `amp`.
    """)
