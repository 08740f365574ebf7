"""Every metric `camstudy score` can write: its name in faithfulness.csv, the family that makes it,
which way is better, and what it means.

One table, so the codebook (study.results.codebook), the report's labels and `--metrics` cannot disagree about
a name or a direction. A family is what `--metrics` chooses and what is computed (and cached) as one
unit; most families make one metric of the same name. Imports nothing heavy, like study.results.codebook.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    name: str        # the `metric` column of faithfulness.csv
    family: str      # the `--metrics` name that computes it
    better: str      # "lower" or "higher"
    meaning: str


METRICS: tuple[Metric, ...] = (
    Metric("deletion_auc", "deletion", "lower", "RISE deletion AUC, most relevant pixels first"),
    Metric("insertion_auc", "insertion", "higher", "RISE insertion AUC, most relevant pixels first"),
    Metric("average_drop", "confidence", "lower", "Grad-CAM++ average drop (%) of the score on the map-weighted image"),
    Metric("increase_in_confidence", "confidence", "higher", "100 where the map-weighted image scores higher, else 0"),
    Metric("pointing_game", "localization", "higher", "1 when the map's maximum is within the tolerance of a box"),
    Metric("energy_pointing_game", "localization", "higher", "share of the map's energy inside the boxes"),
    Metric("box_localization", "localization", "higher", "1 when the CAM-protocol box has IoU >= 0.5"),
    Metric("box_iou", "localization", "higher", "IoU of the CAM-protocol box with the best box"),
    Metric("deletion_lerf_auc", "deletion_lerf", "higher", "deletion AUC, least relevant pixels first"),
    Metric("insertion_lerf_auc", "insertion_lerf", "lower", "insertion AUC, least relevant pixels first"),
    Metric("road_morf", "road_morf", "lower", "ROAD mean score over the percentages, most relevant removed first"),
    Metric("road_lerf", "road_lerf", "higher", "ROAD mean score over the percentages, least relevant removed first"),
    Metric("infidelity", "infidelity", "lower", "Yeh et al. infidelity under Gaussian perturbations"),
    Metric("max_sensitivity", "max_sensitivity", "lower", "Yeh et al. max-sensitivity of the map to small input changes"),
    Metric("relevance_mass_accuracy", "relevance_mass_accuracy", "higher", "share of positive relevance inside the boxes"),
    Metric("relevance_rank_accuracy", "relevance_rank_accuracy", "higher", "share of the top-|boxes| pixels inside the boxes"),
    Metric("sparseness", "sparseness", "higher", "Gini index of the map"),
    Metric("complexity", "complexity", "lower", "entropy of the map's fractional contributions"),
    Metric("random_logit", "random_logit", "lower", "SSIM of the target's map and a random other class's map"),
    Metric("randomization_spearman", "randomization_spearman", "lower",
           "Spearman correlation with the map after model-randomisation stage `stage`"),
)
BY_NAME = {metric.name: metric for metric in METRICS}
FAMILIES: tuple[str, ...] = tuple(dict.fromkeys(metric.family for metric in METRICS))
DEFAULT_FAMILIES = ("deletion", "insertion", "confidence", "localization")


def family_metrics(family: str) -> list[str]:
    """The metric names a family writes, in table order."""
    return [metric.name for metric in METRICS if metric.family == family]


def choose_families(names: list[str] | None) -> list[str]:
    """Families for `--metrics` names (family or metric names, or "all"), in table order; None: the default.

    Table order, not the caller's, so the rows of faithfulness.csv come in one order whatever was asked."""
    if names is None:
        return list(DEFAULT_FAMILIES)
    if list(names) == ["all"]:
        return list(FAMILIES)
    unknown = [n for n in names if n not in FAMILIES and n not in BY_NAME]
    if not names or unknown:
        raise ValueError(f"unknown metric {', '.join(unknown) or '(none given)'}; choose from all, {', '.join(FAMILIES)}")
    chosen = {n if n in FAMILIES else BY_NAME[n].family for n in names}
    return [family for family in FAMILIES if family in chosen]


def label(name: str) -> str:
    """A metric's name with its direction, for tables and plot axes: "deletion_auc (lower is better)"."""
    metric = BY_NAME.get(name)
    return name if metric is None else f"{name} ({metric.better} is better)"


def codebook_text() -> str:
    """The codebook's description of faithfulness.csv's `metric` column: every name with its direction."""
    listed = "; ".join(f"{m.name} ({m.better} is better: {m.meaning})" for m in METRICS)
    return f"Metric name from `camstudy score`: {listed}."
