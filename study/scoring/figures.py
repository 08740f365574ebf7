"""The figures drawn from score outputs, for `camstudy score`'s PNGs and for the report alike,
and the power curve of `camstudy power`.

One function per figure, so the plot files and the report cannot show the same numbers in two
ways. Matplotlib and pandas only: the report draws these without importing torch.
"""
from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from study.scoring.catalog import BY_NAME

# The report's palette; the curves use it too, so a method keeps its colour across figures.
COLOURS = ["#1b6ca8", "#d1495b", "#66a182", "#edae49", "#6c4f97", "#00798c", "#8d6a9f", "#3d405b",
           "#e07a5f", "#81b29a", "#f2cc8f"]


def curves_figure(curves: pd.DataFrame, faithfulness: pd.DataFrame | None = None) -> Figure:
    """Mean deletion and insertion curves (curves.csv rows), one panel per curve, one line per method.

    Methods are told apart by model too when the rows hold several models. With `faithfulness`
    (faithfulness.csv rows, or one row per method and metric holding the mean), each line's label
    carries the mean AUC of its maps.
    """
    kinds = sorted(curves["curve"].astype(str).unique())
    keys = ["model", "method"] if curves["model"].nunique() > 1 else ["method"]
    figure = Figure(figsize=(4.8 * len(kinds), 3.8), layout="constrained")
    axes = figure.subplots(1, len(kinds), squeeze=False)[0]
    for ax, kind in zip(axes, kinds):
        aucs = {} if faithfulness is None else _mean_aucs(faithfulness, kind, keys)
        rows = curves[curves["curve"].astype(str) == kind]
        for i, (key, group) in enumerate(rows.groupby(keys, sort=True)):
            mean = group.groupby("fraction", sort=True)["value"].mean()
            label = " / ".join(map(str, key))
            if faithfulness is not None:
                label += f" (AUC {aucs.get(key, float('nan')):.3f})"
            ax.plot(mean.index.to_numpy(float), mean.to_numpy(float), label=label, color=COLOURS[i % len(COLOURS)])
        auc = BY_NAME.get(f"{kind}_auc")
        better = f" ({auc.better} AUC is better)" if auc else ""
        ax.set_title(kind + better, loc="left", fontsize=10)
        ax.set_xlabel("fraction of pixels")
        ax.set_ylabel("probability of the target")
        ax.set_ylim(0, 1)
        ax.grid(alpha=.3)
        ax.legend(fontsize=7)
    return figure


def _mean_aucs(faithfulness: pd.DataFrame, kind: str, keys: list[str]) -> dict[tuple, float]:
    """Mean `<kind>_auc` per group of `keys`, keyed by the same tuples as the curves' groups."""
    rows = faithfulness[faithfulness["metric"] == f"{kind}_auc"]
    means = rows.groupby(keys)["value"].mean()
    return {key if isinstance(key, tuple) else (key,): float(value) for key, value in means.items()}


def table_figure(table: pd.DataFrame, n_images: int | None = None) -> Figure:
    """Mean of every metric per method (rows) of faithfulness.csv rows, as a table figure.

    `table` may also hold one row per method and metric whose value is already the mean (what
    `camstudy score` keeps instead of every row of a large run); `n_images` then says over how many
    images (default: the distinct image ids of `table`)."""
    means = table.pivot_table(index="method", columns="metric", values="value", aggfunc="mean", sort=False)
    size = (max(6, 1.5 * (means.shape[1] + 1)), 0.9 + 0.35 * (means.shape[0] + 1))
    figure = Figure(figsize=size, layout="constrained")
    ax = figure.subplots()
    ax.axis("off")
    cells = [[("" if pd.isna(v) else f"{v:.3f}") for v in row] for row in means.to_numpy()]
    shown = ax.table(cellText=cells, rowLabels=list(means.index), colLabels=list(means.columns), loc="center")
    shown.auto_set_font_size(False)
    shown.set_fontsize(8)
    n_images = table["image_id"].nunique() if n_images is None else n_images
    ax.set_title(f"mean per method over {n_images} images", fontsize=10, loc="left")
    return figure
