"""Explanation infidelity (Yeh et al., "On the (In)fidelity and Sensitivity of Explanations",
NeurIPS 2019), as captum.metrics.infidelity computes it with Gaussian perturbations.

For perturbations I ~ N(0, noise^2) of every input value (in the model's input space), the
explanation should predict the change of the target's score f when I is subtracted:

    INFD = E_I[ (I . a - (f(x) - f(x - I)))^2 ],

with I . a = sum_{c,h,w} I_chw a_hw (a map [H,W] is shared by the channels). With `normalize`
(captum's option), the map is first rescaled by the least-squares factor
beta = E[(I . a)(f(x) - f(x - I))] / E[(I . a)^2], which makes the value independent of the map's
scale: INFD = E[(beta I . a - Δf)^2]. captum's default is normalize=False; camstudy's is True,
because its maps are min-max scaled to [0, 1], a scale that has nothing to do with the score's.
Expectations are means over `n_perturbations` draws per image; lower is better.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from metrics._maps import maps_at
from metrics.model_calls import (
    check_positive,
    check_score,
    check_targets,
    checked_inputs,
    chunks,
    evaluating,
    memory_format_of,
    scores_and_targets,
    seeded_generator,
    target_scores,
)


def infidelity(
    model: nn.Module,
    x: Tensor,
    maps,
    targets=None,
    *,
    n_perturbations: int = 10,
    noise: float = 0.003,
    normalize: bool = True,
    seed: int | None = None,
    score: str = "softmax",
    batch_size: int | None = None,
    amp: str | None = None,
) -> Tensor:
    """Infidelity of each image's map, Tensor[B] on the CPU; see the module docstring.

    `noise` is the perturbations' standard deviation. The perturbations of `batch_size`
    (image, draw) pairs are drawn at once, in image-major order, from a generator on the model's
    device seeded with `seed`, and scored in one forward pass. `score` is "softmax" (default),
    "sigmoid" or "logit"; `amp` as in `deletion`.
    """
    x, device, batch_size, amp_dtype = checked_inputs(model, x, batch_size, amp, largest=256)
    check_score(score)
    check_positive(n_perturbations, "n_perturbations")
    if noise <= 0:
        raise ValueError(f"noise is a standard deviation and must be > 0; got {noise!r}")
    batch = x.shape[0]
    m = maps_at(maps, batch, tuple(x.shape[-2:]), device)
    generator = seeded_generator(seed, device)
    fmt = memory_format_of(x)
    predicted = torch.zeros(3, batch, device=device, dtype=torch.float64)  # sums of a^2, a*b, b^2
    with evaluating(model):
        original, chosen = scores_and_targets(
            model, x, check_targets(targets, batch, device), batch_size, amp_dtype, score
        )
        for start, stop in chunks(batch * n_perturbations, batch_size):
            image = torch.arange(start, stop, device=device) // n_perturbations
            perturbation = noise * torch.randn((stop - start, *x.shape[1:]), generator=generator, device=device)
            inputs = (x[image] - perturbation).contiguous(memory_format=fmt)
            change = original[image] - target_scores(model, inputs, chosen[image], amp_dtype, score)
            explained = (perturbation * m[image, None]).flatten(1).sum(dim=1)
            terms = torch.stack([explained * explained, explained * change, change * change]).double()
            predicted.index_add_(1, image, terms)
    squared, cross, observed = predicted.cpu()
    if normalize:
        beta = torch.where(squared > 0, cross / squared, torch.zeros_like(cross))
        value = beta * beta * squared - 2 * beta * cross + observed
    else:
        value = squared - 2 * cross + observed
    return (value / n_perturbations).float()
