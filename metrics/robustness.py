"""Max-sensitivity (Yeh et al., "On the (In)fidelity and Sensitivity of Explanations", NeurIPS
2019), as captum.metrics.sensitivity_max computes it by default.

How much can the explanation change when the input moves a little? For perturbations d drawn
uniformly from the L-infinity ball of radius r (every input value moved by at most r),

    SENS_max = max_d ||e(x + d) - e(x)|| / ||e(x)||,

the Frobenius norm over the whole map, the maximum over `n_samples` draws (a Monte-Carlo lower
bound of the paper's supremum). Like captum, an all-zero e(x) divides by 1 instead. Lower is
more robust. The explainer sees the same class for every perturbed copy of an image.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from metrics.model_calls import check_positive, checked_inputs, chunks, explained_targets, seeded_generator
from metrics.sanity import ExplainFn


def _explained(explain_fn: ExplainFn, model: nn.Module, x: Tensor, targets: Tensor) -> Tensor:
    maps = torch.as_tensor(explain_fn(model, x, targets)).detach()
    if maps.shape[0] != x.shape[0]:
        raise ValueError(f"explain_fn returned {maps.shape[0]} maps for {x.shape[0]} images")
    return maps.flatten(1).float()


def max_sensitivity(
    explain_fn: ExplainFn,
    model: nn.Module,
    x: Tensor,
    targets=None,
    *,
    radius: float = 0.02,
    n_samples: int = 10,
    seed: int | None = None,
    batch_size: int | None = None,
    maps=None,
) -> Tensor:
    """Max-sensitivity of each image's explanation, Tensor[B] on the CPU; see the module docstring.

    `explain_fn(model, x, targets) -> maps [B, ...]` (e.g. a closure over `study.explainers.explain`)
    is called once on the images and then on `batch_size` perturbed copies at a time (image-major,
    drawn from a generator on the model's device seeded with `seed`). `targets=None` explains
    each image's top-1 class. `radius` and `n_samples` default to captum's 0.02 and 10. `maps`, when
    given, is explain_fn's output on the unperturbed images, already at hand (a study has computed the
    maps it evaluates): it is used as e(x) instead of calling explain_fn on x again.
    """
    if radius <= 0:
        raise ValueError(f"radius must be > 0; got {radius!r}")
    check_positive(n_samples, "n_samples")
    x, device, batch_size, _ = checked_inputs(model, x, batch_size, None, largest=64)
    chosen = explained_targets(model, x, targets, batch_size)
    generator = seeded_generator(seed, device)
    reference = (_explained(explain_fn, model, x, chosen) if maps is None
                 else _explained(lambda *_: maps, model, x, chosen))
    norm = reference.norm(dim=1)
    norm = torch.where(norm == 0, torch.ones_like(norm), norm)
    worst = torch.full((x.shape[0],), -torch.inf, device=reference.device)
    for start, stop in chunks(x.shape[0] * n_samples, batch_size):
        image = torch.arange(start, stop, device=device) // n_samples
        shift = (2 * torch.rand((stop - start, *x.shape[1:]), generator=generator, device=device) - 1) * radius
        moved = _explained(explain_fn, model, x[image] + shift, chosen[image])
        on = image.to(reference.device)
        ratio = (moved.to(reference.device) - reference[on]).norm(dim=1) / norm[on]
        worst.scatter_reduce_(0, on, ratio, reduce="amax")
    return worst.cpu()
