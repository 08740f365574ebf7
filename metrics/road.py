"""ROAD, RemOve And Debias (Rong et al., "A Consistent and Efficient Evaluation Strategy for
Attribution Methods", ICML 2022).

For each percentage p the round(p * H * W) most salient pixels ("morf", the paper's MoRF) or least
salient ones ("lerf") are removed and filled by noisy linear imputation (`metrics.imputation`):
every removed pixel is the weighted mean of its 8 neighbours (1/6 direct, 1/12 diagonal), solved
exactly as one sparse linear system per image and percentage, plus Gaussian noise of standard
deviation `noise` on the removed pixels only (`noise=0` is the plain linear imputation). The
imputation leaves no visible mask shape behind, so the score falls because information was
removed, not because the model reacts to the removal pattern (the "class information leakage"
through masks that the paper measures for zero or mean fills).

The result holds the target's score after each removal (softmax probability by default) and
whether the model's top-1 class is still the target: the paper's curves are the mean of `correct`
over a test set per percentage; `mean` summarises each image's score curve. With MoRF a faithful
map drops fast (low mean); with LeRF it stays high.

Ties in saliency keep row-major order; pixels are counted per pixel (all channels together).
Quantus's ROAD differs: it ranks a map broadcast to every channel, so it removes
int(p*H*W) channel entries (and fails for more than one channel); camstudy removes whole pixels.
"""
from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from metrics._maps import maps_at, saliency_rank
from metrics.model_calls import (
    check_score,
    check_target_range,
    check_targets,
    checked_inputs,
    chunks,
    class_score,
    evaluating,
    logits_of,
    memory_format_of,
    scores_and_targets,
)
from metrics.imputation import linear_imputation

DEFAULT_PERCENTAGES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


@dataclass(frozen=True)
class RoadResult:
    """`curve` Tensor[B, P]: the target's score after removing each percentage of pixels;
    `correct` BoolTensor[B, P]: whether the top-1 class is still the target; `percentages`
    Tensor[P] (fractions of the pixels); `removed` LongTensor[P] (pixels removed); `targets`
    LongTensor[B]. All on the CPU."""

    curve: Tensor
    correct: Tensor
    percentages: Tensor
    removed: Tensor
    targets: Tensor

    @property
    def mean(self) -> Tensor:
        """Each image's score averaged over the percentages, Tensor[B]."""
        return self.curve.mean(dim=1)


def check_percentages(percentages: Sequence[float]) -> tuple[float, ...]:
    """Fractions of the pixels in [0, 1): at least one pixel must stay to impute from."""
    values = tuple(percentages)
    if not values or not all(
        isinstance(p, numbers.Real) and not isinstance(p, bool) and 0 <= p < 1 for p in values
    ):
        raise ValueError(f"percentages must be fractions of the pixels in [0, 1); got {percentages!r}")
    return tuple(float(p) for p in values)


def road(
    model: nn.Module,
    x: Tensor,
    maps,
    targets=None,
    *,
    percentages: Sequence[float] = DEFAULT_PERCENTAGES,
    order: str = "morf",
    noise: float = 0.01,
    seed: int | None = None,
    score: str = "softmax",
    batch_size: int | None = None,
    amp: str | None = None,
) -> RoadResult:
    """ROAD curves of each image; see the module docstring.

    `noise` is the standard deviation of the Gaussian noise added to imputed pixels, in the model's
    input space; `seed` makes it reproducible (for a given `batch_size`). The imputations of
    `batch_size` (image, percentage) pairs at a time (None: chosen for the device, see `metrics`) are
    solved on the CPU in float64, on parallel threads, and each chunk is scored in one forward pass
    on the model's device. `score` is "softmax" (default), "sigmoid" or "logit"; `amp` as in
    `deletion`. Maps of another size are upsampled bilinearly.
    """
    x, device, batch_size, amp_dtype = checked_inputs(model, x, batch_size, amp, largest=64)
    check_score(score)
    fractions = check_percentages(percentages)
    if not isinstance(noise, numbers.Real) or noise < 0:
        raise ValueError(f"noise is a standard deviation and must be >= 0; got {noise!r}")
    batch, _, height, width = x.shape
    rank = saliency_rank(maps_at(maps, batch, (height, width), device), order).cpu()
    removed = torch.tensor([round(p * height * width) for p in fractions])
    generator = torch.Generator()
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    images = x.detach().cpu().double().numpy()
    points = len(fractions)
    curve = torch.empty(batch * points, device=device)
    correct = torch.empty(batch * points, device=device, dtype=torch.bool)
    with evaluating(model):
        chosen = check_targets(targets, batch, device)
        if chosen is None:  # the top-1 classes; given targets need no pass on the unperturbed images
            _, chosen = scores_and_targets(model, x, None, batch_size, amp_dtype)
        for start, stop in chunks(batch * points, batch_size):
            job = torch.arange(start, stop)
            image, point = job // points, job % points
            holes = (rank[image] < removed[point, None]).view(-1, height, width)
            filled = torch.from_numpy(linear_imputation(images[image.numpy()], holes.numpy()))
            filled += noise * torch.randn(filled.shape, generator=generator, dtype=filled.dtype) * holes[:, None]
            inputs = filled.to(device=device, dtype=x.dtype).contiguous(memory_format=memory_format_of(x))
            logits = logits_of(model, inputs, amp_dtype)
            if start == 0:
                check_target_range(chosen, logits.shape[1])
            wanted = chosen[image.to(device)]
            curve[start:stop] = class_score(logits, wanted, score)
            correct[start:stop] = logits.argmax(dim=1) == wanted
    return RoadResult(
        curve=curve.view(batch, points).cpu(), correct=correct.view(batch, points).cpu(),
        percentages=torch.tensor(fractions), removed=removed, targets=chosen.cpu(),
    )
