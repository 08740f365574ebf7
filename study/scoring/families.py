"""How `camstudy score` computes each metric family of `study.scoring.catalog` on one batch of maps.

A family is computed, cached and chosen (`--metrics`) as one unit, so a rerun that adds a family computes
only that family. Each `Family` says which settings determine its values (they are its `params` in
faithfulness.csv and part of its cache key), whether it needs boxes, and whether an image's values depend
on the rest of its batch: the seeded metrics (ROAD's noise, infidelity's perturbations, max-sensitivity's
moves, random-logit's other class) draw from one generator for the whole batch, so their cache key holds
the batch's content and they are always computed for the whole batch.

Every compute function takes a `BatchWork` and returns one result per image: {"rows": [[metric, value,
params JSON], ...]} and, for the deletion/insertion families, the curve that curves.csv averages.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

import metrics
from metrics.model_calls import SCORES
from study.scoring.catalog import family_metrics

SANITY_MODES = ("cascading", "independent")
ExplainFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class MetricSettings:
    """Everything a run's metrics depend on besides the maps (score's keyword arguments)."""

    step: int = 224
    deletion_substrate: str = "zeros"
    insertion_substrate: str = "blur"
    tolerance: float = 15
    box_threshold: float = 0.2
    score: str = "softmax"
    seed: int = 0
    sanity_stages: tuple[str, ...] | None = None
    sanity_mode: str = "cascading"

    def __post_init__(self):
        if self.score not in SCORES:
            raise ValueError(f"score must be one of {', '.join(SCORES)}; got {self.score!r}")
        if self.sanity_mode not in SANITY_MODES:
            raise ValueError(f"sanity mode must be one of {', '.join(SANITY_MODES)}; got {self.sanity_mode!r}")


@dataclass(frozen=True)
class BatchWork:
    """One batch's inputs to the metrics: images, maps and targets on the model's device, boxes and masks on
    the map (a mask, where an image has one, is the exact region that decides its class), and
    `explain_fn(model, x, targets)` that explains with the method's own options."""

    model: nn.Module
    x: torch.Tensor
    maps: torch.Tensor
    targets: torch.Tensor
    boxes: list
    masks: list
    explain_fn: ExplainFn
    batch_size: int
    amp: str | None
    settings: MetricSettings

    def subset(self, indices: list[int]) -> BatchWork:
        """The same work for some of the images (what a cache miss recomputes)."""
        return BatchWork(self.model, self.x[indices], self.maps[indices], self.targets[indices],
                         [self.boxes[i] for i in indices], [self.masks[i] for i in indices], self.explain_fn,
                         self.batch_size, self.amp, self.settings)

    def regions(self) -> torch.Tensor:
        """BoolTensor[B,H,W] on the CPU: each image's mask where it has one, else the union of its boxes."""
        regions = metrics.box_masks(self.boxes, tuple(self.maps.shape[-2:]))
        for i, mask in enumerate(self.masks):
            if mask is not None:
                regions[i] = mask
        return regions


@dataclass(frozen=True)
class Family:
    """How to compute one family: `compute(work, params) -> results per image`, `params(settings)` (the rows'
    params and the cache key's settings), `boxes` (only images with boxes get it) and `whole_batch` (an
    image's values depend on the rest of its batch)."""

    compute: Callable[[BatchWork, dict], list[dict]]
    params: Callable[[MetricSettings], dict]
    boxes: bool = False
    whole_batch: bool = False


def scored(settings: MetricSettings, params: dict) -> dict:
    """`params` plus the score where it is not the default softmax (default runs keep their bytes)."""
    return params if settings.score == "softmax" else {**params, "score": settings.score}


def row(metric: str, value, params: dict) -> list:
    """[metric, value, params JSON]; NaN (e.g. the energy of an all-zero map) becomes None -> empty cell."""
    v = float(value)
    return [metric, None if math.isnan(v) else v, json.dumps(params, sort_keys=True)]


def one_value_per_image(family: str, values: torch.Tensor, params: dict) -> list[dict]:
    """Results of a family that writes one metric, one value per image (its params the same for all)."""
    (name,) = family_metrics(family)
    return [{"rows": [row(name, v, params)]} for v in values.tolist()]


# --- the families -------------------------------------------------------------------------------


def _causal(kind: str, order: str) -> Family:
    """deletion / insertion AUC in one pixel order; the result carries the curve for curves.csv."""
    family = kind if order == "morf" else f"{kind}_lerf"

    def params(s: MetricSettings) -> dict:
        base = {"step": s.step, "substrate": getattr(s, f"{kind}_substrate")}
        return scored(s, base if order == "morf" else {**base, "order": order})

    def compute(work: BatchWork, params: dict) -> list[dict]:
        s = work.settings
        substrates = {"deletion_substrate": None, "insertion_substrate": None,
                      f"{kind}_substrate": getattr(s, f"{kind}_substrate")}
        curve = metrics.causal_curves(work.model, work.x, work.maps, work.targets, step=s.step, order=order,
                                      score=s.score, batch_size=work.batch_size, amp=work.amp, **substrates)[kind]
        fraction = (curve.pixels / (work.x.shape[-1] * work.x.shape[-2])).numpy()
        values = curve.curve.numpy()
        (name,) = family_metrics(family)
        return [{"rows": [row(name, curve.auc[i], params)], "curve": family, "fraction": fraction,
                 "values": values[i]} for i in range(work.x.shape[0])]

    return Family(compute, params)


def _confidence(work: BatchWork, params: dict) -> list[dict]:
    change = metrics.confidence_change(work.model, work.x, work.maps, work.targets, score=work.settings.score,
                                       batch_size=work.batch_size, amp=work.amp)
    return [{"rows": [row("average_drop", drop, params), row("increase_in_confidence", up, params)]}
            for drop, up in zip(change.drop.tolist(), change.increase.tolist())]


def _localization(work: BatchWork, params: dict) -> list[dict]:
    """Pointing game, energy pointing game and CAM box localization rows for each map."""
    s = work.settings
    found = metrics.box_localization(work.maps, work.boxes, threshold=s.box_threshold)
    per_metric = [
        ("pointing_game", metrics.pointing_game(work.maps, work.boxes, tolerance=s.tolerance).float(),
         {"tolerance": s.tolerance}),
        ("energy_pointing_game", metrics.energy_pointing_game(work.maps, work.boxes), {}),
        ("box_localization", found.correct.float(), {"threshold": s.box_threshold}),
        ("box_iou", found.iou, {"threshold": s.box_threshold}),
    ]
    return [{"rows": [row(name, values[i], given) for name, values, given in per_metric]}
            for i in range(work.maps.shape[0])]


# The metrics' own defaults (the papers' and captum's), recorded in params and the cache key.
ROAD = {"percentages": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9], "noise": 0.01}
INFIDELITY = {"n_perturbations": 10, "noise": 0.003, "normalize": True}
SENSITIVITY = {"radius": 0.02, "n_samples": 10}


def _road(order: str) -> Family:
    def compute(work: BatchWork, params: dict) -> list[dict]:
        s = work.settings
        result = metrics.road(work.model, work.x, work.maps, work.targets, percentages=ROAD["percentages"],
                              order=order, noise=ROAD["noise"], seed=s.seed, score=s.score,
                              batch_size=work.batch_size, amp=work.amp)
        return one_value_per_image(f"road_{order}", result.mean, params)

    return Family(compute, lambda s: scored(s, {**ROAD, "seed": s.seed}), whole_batch=True)


def _infidelity(work: BatchWork, params: dict) -> list[dict]:
    s = work.settings
    values = metrics.infidelity(work.model, work.x, work.maps, work.targets, seed=s.seed, score=s.score,
                                batch_size=work.batch_size, amp=work.amp, **INFIDELITY)
    return one_value_per_image("infidelity", values, params)


def _max_sensitivity(work: BatchWork, params: dict) -> list[dict]:
    values = metrics.max_sensitivity(work.explain_fn, work.model, work.x, work.targets, seed=work.settings.seed,
                                     batch_size=work.batch_size, **SENSITIVITY)
    return one_value_per_image("max_sensitivity", values, params)


def _against_boxes(name: str) -> Family:
    """relevance mass / rank accuracy against each image's mask, or the union of its boxes (`metrics.box_masks`)."""
    def compute(work: BatchWork, params: dict) -> list[dict]:
        return one_value_per_image(name, getattr(metrics, name)(work.maps.cpu(), work.regions()), params)

    return Family(compute, _none, boxes=True)


def _map_only(name: str) -> Family:
    """sparseness / complexity: the map alone."""
    return Family(lambda work, params: one_value_per_image(name, getattr(metrics, name)(work.maps), params), _none)


def _random_logit(work: BatchWork, params: dict) -> list[dict]:
    s = work.settings
    result = metrics.random_logit(work.explain_fn, work.model, work.x, work.targets, seed=s.seed,
                                  batch_size=work.batch_size)
    return [{"rows": [row("random_logit", v, {**params, "other_class": int(c)})]}
            for v, c in zip(result.similarity.tolist(), result.other.tolist())]


def _sanity_params(s: MetricSettings) -> dict:
    return {"stages": list(s.sanity_stages) if s.sanity_stages else None, "seed": s.seed, "mode": s.sanity_mode}


def _randomization(work: BatchWork, params: dict) -> list[dict]:
    """One row per model-randomisation stage (cascading or independent), params naming the stage and mode."""
    s = work.settings
    result = metrics.randomization_sanity(work.model, work.x, work.targets, work.explain_fn,
                                          stages=s.sanity_stages, seed=s.seed, mode=s.sanity_mode)
    return [{"rows": [row("randomization_spearman", result.rho[i, k],
                          {"stage": stage, "stage_index": k, "seed": s.seed, "mode": s.sanity_mode})
                      for k, stage in enumerate(result.stages)]}
            for i in range(work.x.shape[0])]


def _none(settings: MetricSettings) -> dict:
    return {}


WORK: Mapping[str, Family] = {
    "deletion": _causal("deletion", "morf"),
    "insertion": _causal("insertion", "morf"),
    "confidence": Family(_confidence, lambda s: scored(s, {})),
    "localization": Family(_localization, lambda s: {"tolerance": s.tolerance, "threshold": s.box_threshold},
                           boxes=True),
    "deletion_lerf": _causal("deletion", "lerf"),
    "insertion_lerf": _causal("insertion", "lerf"),
    "road_morf": _road("morf"),
    "road_lerf": _road("lerf"),
    "infidelity": Family(_infidelity, lambda s: scored(s, {**INFIDELITY, "seed": s.seed}), whole_batch=True),
    "max_sensitivity": Family(_max_sensitivity, lambda s: {**SENSITIVITY, "seed": s.seed}, whole_batch=True),
    "relevance_mass_accuracy": _against_boxes("relevance_mass_accuracy"),
    "relevance_rank_accuracy": _against_boxes("relevance_rank_accuracy"),
    "sparseness": _map_only("sparseness"),
    "complexity": _map_only("complexity"),
    "random_logit": Family(_random_logit, lambda s: {"seed": s.seed}, whole_batch=True),
    "randomization_spearman": Family(_randomization, _sanity_params),
}


def as_list(array) -> list:
    """How a fresh result's arrays (curves, pixel fractions) are written to the JSON cache."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"cannot cache a {type(array).__name__} as JSON")
    return array.tolist()
