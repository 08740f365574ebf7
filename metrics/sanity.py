"""Sanity checks: does the explanation depend on the model and on the class?

Model-parameter randomisation (Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018).
`mode="cascading"`, top layer first: at stage i every layer of stages[0..i] has been
re-initialised. `mode="independent"`: at stage i only the layers of stage i are re-initialised,
the rest keep their learned weights (the paper's independent randomisation). An explanation that
depends on the learned weights changes, one that ignores the model (an edge detector) does not.
The similarity per stage is the Spearman rank correlation (average ranks for ties) between each
image's map on the original model and on the randomised one. The caller's model is never
modified: the randomisation happens on a deep copy.

Random logit (Sixt et al., "When Explanations Lie: Why Many Modified BP Attributions Fail", ICML
2020): the SSIM (`metrics.ssim`, 2-D, 7x7 windows) between the map for the target class and the
map for a class drawn uniformly from the others. A class-discriminative explanation gives low
similarity. Quantus computes the SSIM of the maps flattened to 1-D vectors; camstudy compares them
as images, as the paper does.
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import rankdata
from torch import Tensor, nn

from metrics.model_calls import checked_inputs, chunks, evaluating, explained_targets, logits_of
from metrics.ssim import ssim

ExplainFn = Callable[[nn.Module, Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class SanityResult:
    """`stages` (dotted module names, top first) and `rho` Tensor[B, S]: Spearman correlation of
    each image's map after stage s with its map on the original model (NaN for constant maps)."""

    stages: tuple[str, ...]
    rho: Tensor


def _holds_parameters(module: nn.Module) -> bool:
    return any(True for _ in module.parameters())


def default_stages(model: nn.Module) -> list[str]:
    """The network's top-level children that hold parameters, containers (Sequential, ModuleList)
    opened one level, last first: e.g. fc, layer4.1, layer4.0, ..., bn1, conv1 for a ResNet.
    Wrappers with a single parameterised child (a classifier around its network) are looked through."""
    prefix, network = "", model
    while not any(True for _ in network.parameters(recurse=False)):
        holders = [(n, c) for n, c in network.named_children() if _holds_parameters(c)]
        if len(holders) != 1:
            break
        prefix, network = f"{prefix}{holders[0][0]}.", holders[0][1]
    stages = []
    for name, child in network.named_children():
        parts = child.named_children() if isinstance(child, (nn.Sequential, nn.ModuleList)) else [("", child)]
        stages += [f"{prefix}{name}.{sub}" if sub else f"{prefix}{name}" for sub, m in parts if _holds_parameters(m)]
    if not stages:
        raise ValueError("the model has no parameters to randomise")
    return stages[::-1]


def spearman_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman correlation of matching rows of two [B, N] arrays (average ranks for ties)."""
    ra = rankdata(a, axis=1)
    rb = rankdata(b, axis=1)
    ra -= ra.mean(axis=1, keepdims=True)
    rb -= rb.mean(axis=1, keepdims=True)
    denominator = np.sqrt((ra**2).sum(axis=1) * (rb**2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (ra * rb).sum(axis=1) / denominator


@torch.no_grad()
def randomize_(module: nn.Module, generator_seed: int) -> None:
    """Re-initialise every layer of `module` in place, seeded: `reset_parameters()` where a layer has
    it (its untrained initialisation), a random permutation of the values for other parameters."""
    devices = sorted({p.device.index for p in module.parameters() if p.device.type == "cuda"})
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(generator_seed)
        covered = set()
        for layer in module.modules():
            if hasattr(layer, "reset_parameters"):
                layer.reset_parameters()
                covered.update(id(p) for p in layer.parameters(recurse=False))
        for p in module.parameters():
            if id(p) not in covered:
                shuffled = p.reshape(-1)[torch.randperm(p.numel(), device=p.device)]
                p.copy_(shuffled.reshape(p.shape))


def _flat_maps(maps: Tensor, batch: int) -> np.ndarray:
    m = torch.as_tensor(maps).detach().float().cpu()
    if m.shape[0] != batch:
        raise ValueError(f"explain_fn returned {m.shape[0]} maps for {batch} images")
    return m.reshape(batch, -1).numpy()


def randomization_sanity(
    model: nn.Module,
    x: Tensor,
    targets,
    explain_fn: ExplainFn,
    *,
    stages: Sequence[str] | None = None,
    seed: int = 0,
    mode: str = "cascading",
) -> SanityResult:
    """Spearman correlation of maps per randomisation stage; see the module docstring.

    `explain_fn(model, x, targets) -> maps [B, ...]` makes the maps (e.g. a closure over
    `study.explainers.explain`); `targets` is passed through unchanged, so fix it (not None) to
    explain the same class on every stage. `stages` are dotted module names, top first
    (default: `default_stages(model)`). `mode` is "cascading" (default) or "independent"; stage i
    is randomised with seed `seed + i` in both.
    """
    if mode not in ("cascading", "independent"):
        raise ValueError(f"mode must be 'cascading' or 'independent'; got {mode!r}")
    batch = x.shape[0]
    names = list(default_stages(model) if stages is None else stages)
    randomized = copy.deepcopy(model)
    modules = dict(randomized.named_modules())
    learned = dict(model.named_modules())
    missing = [n for n in names if n not in modules or n == ""]
    if missing:
        raise LookupError(f"no module named {', '.join(missing)} in the model")
    before = _flat_maps(explain_fn(model, x, targets), batch)
    rho = np.empty((batch, len(names)))
    for i, name in enumerate(names):
        randomize_(modules[name], seed + i)
        rho[:, i] = spearman_rows(before, _flat_maps(explain_fn(randomized, x, targets), batch))
        if mode == "independent":
            modules[name].load_state_dict(learned[name].state_dict())
    return SanityResult(stages=tuple(names), rho=torch.from_numpy(rho).float())


@dataclass(frozen=True)
class RandomLogitResult:
    """`similarity` Tensor[B]: SSIM of the target's map and the other class's map; `targets` and
    `other` LongTensor[B]: the two classes explained."""

    similarity: Tensor
    targets: Tensor
    other: Tensor


def random_logit(explain_fn: ExplainFn, model: nn.Module, x: Tensor, targets=None, *, seed: int = 0,
                 batch_size: int | None = None) -> RandomLogitResult:
    """Random-logit test of Sixt et al. 2020; see the module docstring.

    `explain_fn(model, x, targets) -> maps [B,H,W]` (at least 7x7) is called on `batch_size`
    images at a time, for the target and the random other class together (2 x batch_size maps).
    `targets=None` explains each image's top-1 class. The other class is
    (target + U{1, ..., K-1}) mod K from a CPU generator seeded with `seed`.
    """
    x, device, batch_size, _ = checked_inputs(model, x, batch_size, None, largest=64)
    with evaluating(model):
        classes = logits_of(model, x[:1], None).shape[1]
    if classes < 2:
        raise ValueError("the random-logit test needs a model with at least two classes")
    chosen = explained_targets(model, x, targets, batch_size)
    shift = torch.randint(1, classes, (x.shape[0],), generator=torch.Generator().manual_seed(seed))
    other = (chosen.cpu() + shift) % classes
    similarity = []
    for start, stop in chunks(x.shape[0], batch_size):
        n = stop - start
        pair = torch.cat([chosen[start:stop], other[start:stop].to(device)])
        maps = torch.as_tensor(explain_fn(model, x[start:stop].repeat(2, 1, 1, 1), pair)).detach().float()
        if maps.dim() == 4 and maps.shape[1] == 1:
            maps = maps[:, 0]
        if maps.shape[0] != 2 * n or maps.dim() != 3:
            raise ValueError(f"explain_fn must return maps [B, H, W] for its {2 * n} images; got {tuple(maps.shape)}")
        similarity.append(ssim(maps[:n], maps[n:]).cpu())
    return RandomLogitResult(similarity=torch.cat(similarity), targets=chosen.cpu(), other=other)
