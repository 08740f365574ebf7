"""`camstudy score`: every metric for every (image, method), into faithfulness.csv, curves.csv and plots.

Maps and per-image metric results are cached under `<out>/cache/` keyed by a hash of everything
that determines them (the model's weights, the image's pixels, the method and its options, the
target class, the metric settings), as .npy (maps) and .json (metric values and curves) files, so
a rerun recomputes only what changed. Nothing is ever unpickled.

Metric names in faithfulness.csv (`value` per image and method; `params` is JSON):
deletion_auc, insertion_auc (RISE, lower / higher is better), average_drop (%, lower is better),
increase_in_confidence (100 or 0 per image), pointing_game (1/0), energy_pointing_game (share),
box_localization (1/0, CAM protocol), box_iou, and with `sanity=True` randomization_spearman
(one row per cascading-randomisation stage).
"""
from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

import metrics
from study.explainers import METHODS, check_options, explain, general_methods
from study.figures import curves_figure, table_figure
from study.images import ImageItem
from study.outputs import (CURVE_COLUMNS, CURVES_FILE, CURVES_PLOT, FAITHFULNESS_FILE, TABLE_PLOT, columns,
                           safe_name)

GROUP_SIZE = 16  # images preprocessed and explained together; bounds memory for large sets
TARGETS = ("label", "top1")


def score(
    model: nn.Module,
    items: Sequence[ImageItem],
    methods: Sequence[str] | None = None,
    out_dir: str | Path = "scores",
    *,
    target: str = "label",
    step: int = 224,
    deletion_substrate: str = "zeros",
    insertion_substrate: str = "blur",
    tolerance: float = 15,
    box_threshold: float = 0.2,
    batch_size: int = 32,
    amp: str | None = None,
    seed: int = 0,
    explainer_options: Mapping[str, Mapping] | None = None,
    sanity: bool = False,
    sanity_stages: Sequence[str] | None = None,
    plots: bool = True,
    progress: bool = True,
) -> pd.DataFrame:
    """Score `methods` (default: every method that explains any classifier) of `model` on `items`; write results to `out_dir`.

    `model` is a camstudy Classifier (it preprocesses the images). `target="label"` explains each
    image's main label where it has one and the model's top-1 class otherwise; `"top1"` always the
    top-1 class. `explainer_options` maps a method to extra options for `explain` (e.g.
    `{"rise": {"n_masks": 500}}` for a quick demo). Localization metrics are computed for images
    with boxes only. Returns the faithfulness table (DESIGN.md's columns).
    """
    methods = check_methods(methods, explainer_options)
    items = check_items(items)
    if target not in TARGETS:
        raise ValueError(f"target must be one of {', '.join(TARGETS)}; got {target!r}")
    if not hasattr(model, "preprocess"):
        raise ValueError("score needs a camstudy Classifier (study.load_model), which preprocesses images")
    settings = {
        "step": step, "deletion_substrate": deletion_substrate, "insertion_substrate": insertion_substrate,
        "tolerance": tolerance, "box_threshold": box_threshold, "amp": amp,
    }
    sanity_settings = {"stages": list(sanity_stages) if sanity_stages else None, "seed": seed} if sanity else None
    scorer = _Scorer(model, Path(out_dir), batch_size, amp, seed, dict(explainer_options or {}), settings,
                     sanity_settings)
    groups = [items[i : i + GROUP_SIZE] for i in range(0, len(items), GROUP_SIZE)]
    rows, curves = [], []
    with tqdm(total=len(groups) * len(methods), desc="score", unit="method", disable=not progress) as bar:
        for group in groups:
            x = model.preprocess([item.image for item in group])
            targets = choose_targets(model, x, group, target)
            for method in methods:
                bar.set_postfix_str(method)
                group_rows, group_curves = scorer.method_on_group(method, group, x, targets)
                rows += group_rows
                curves += group_curves
                bar.update()
    table = pd.DataFrame(rows, columns=columns("faithfulness"))
    _write_scores(scorer.out, table, mean_curve_table(curves, scorer.model_name), plots)
    return table


def merge_scores(out: str | Path, folders: Sequence[str | Path], plots: bool = True) -> pd.DataFrame:
    """One faithfulness.csv and curves.csv (and their plots) in `out` from the score folders of several
    models (one `score` call each), so an export or report sees them all; returns the merged table."""
    tables, curves = [], []
    for folder in folders:
        tables.append(pd.read_csv(Path(folder) / FAITHFULNESS_FILE, dtype={"image_id": str, "params": str}))
        curves.append(pd.read_csv(Path(folder) / CURVES_FILE))
    table = pd.concat(tables, ignore_index=True)
    _write_scores(Path(out), table, pd.concat(curves, ignore_index=True), plots)
    return table


def _write_scores(out: Path, table: pd.DataFrame, mean_curves: pd.DataFrame, plots: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / FAITHFULNESS_FILE, index=False)
    mean_curves.to_csv(out / CURVES_FILE, index=False)
    if plots:
        curves_figure(mean_curves, faithfulness=table).savefig(out / CURVES_PLOT, dpi=110)
        table_figure(table).savefig(out / TABLE_PLOT, dpi=110)


SCORE_SETS = frozenset({"batch_size", "seed", "amp"})   # explain() settings score passes to every method


def check_methods(methods: Sequence[str] | None, options: Mapping[str, Mapping] | None) -> list[str]:
    """Known method names (or captum:/gradcam_lib: adapters), each once; options only for those, and
    only options their explainer takes (checked here, before any model or image is loaded)."""
    chosen = general_methods() if methods is None else list(methods)
    unknown = [m for m in chosen if m not in METHODS and ":" not in m]
    if not chosen or unknown:
        raise ValueError(f"unknown method {', '.join(unknown) or '(none given)'}; choose from {', '.join(METHODS)}")
    if len(set(chosen)) != len(chosen):
        raise ValueError(f"methods listed twice: {', '.join(sorted({m for m in chosen if chosen.count(m) > 1}))}")
    stray = sorted(set(options or {}) - set(chosen))
    if stray:
        raise ValueError(f"explainer options given for methods not scored: {', '.join(stray)}")
    for method, method_options in (options or {}).items():
        clash = sorted(set(method_options) & SCORE_SETS)
        if clash:
            raise ValueError(f"option {', '.join(clash)} of {method} is set by score itself for every method "
                             "(--batch-size, --seed, --amp)")
        check_options(method, method_options)
    return chosen


def check_items(items: Sequence[ImageItem]) -> list[ImageItem]:
    items = list(items)
    if not items:
        raise ValueError("no images to score")
    ids = [item.image_id for item in items]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise ValueError(f"image ids must be unique; repeated: {', '.join(repeated)}")
    return items


def choose_targets(model: nn.Module, x: torch.Tensor, items: Sequence[ImageItem], target: str) -> torch.Tensor:
    """Per image the main label (target="label", where known) or the model's top-1 class."""
    with torch.inference_mode():
        top1 = model(x).argmax(1).cpu()
    if target == "label":
        return torch.tensor([item.labels[0] if item.labels else int(t) for item, t in zip(items, top1)])
    return top1


def fingerprint(*parts) -> str:
    """A stable hash of JSON-able parts (sorted keys), for cache file names."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def model_fingerprint(model: nn.Module) -> str:
    """Hash of the model's class, name, input size and every weight: a retrained model misses the cache."""
    digest = hashlib.sha256(f"{type(model).__qualname__}|{getattr(model, 'name', '')}|"
                            f"{getattr(model, 'input_size', '')}".encode())
    for name, tensor in model.state_dict().items():
        digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:24]


def image_fingerprint(item: ImageItem) -> str:
    return hashlib.sha256(f"{item.image.mode}{item.image.size}".encode() + item.image.tobytes()).hexdigest()[:24]


class _Scorer:
    """The per-(method, group) work with its caches; holds what every call shares."""

    def __init__(self, model, out: Path, batch_size, amp, seed, options, settings, sanity_settings):
        self.model, self.out = model, out
        self.batch_size, self.amp, self.seed = batch_size, amp, seed
        self.options, self.settings, self.sanity_settings = options, settings, sanity_settings
        self.model_name = str(getattr(model, "name", type(model).__name__))
        self.model_key = model_fingerprint(model)
        self.cache = out / "cache"

    def method_on_group(self, method, items, x, targets) -> tuple[list[list], list[tuple]]:
        """Rows of faithfulness.csv and (method, kind, pixels fraction, curve) for one method."""
        options = dict(self.options.get(method, {}))
        map_keys = [fingerprint(self.model_key, image_fingerprint(item), method, options, self.seed,
                                int(t), self.amp) for item, t in zip(items, targets)]
        maps = self._maps(method, items, x, targets, map_keys, options)
        size = tuple(x.shape[-2:])
        boxes = [item.boxes_at(size[::-1]) for item in items]
        results = self._cached(
            "metrics", method, items,
            [fingerprint(k, self.settings, b) for k, b in zip(map_keys, boxes)],
            lambda idx: self._metrics(x[idx], maps[idx], targets[idx], [boxes[i] for i in idx]),
        )
        if self.sanity_settings is not None:
            sanity = self._cached(
                "sanity", method, items, [fingerprint(k, self.sanity_settings) for k in map_keys],
                lambda idx: self._sanity(method, options, x[idx], targets[idx]),
            )
            results = [{**r, "rows": r["rows"] + s["rows"]} for r, s in zip(results, sanity)]
        rows, curves = [], []
        for item, t, result in zip(items, targets.tolist(), results):
            rows += [[item.image_id, self.model_name, method, t, m, v, p] for m, v, p in result["rows"]]
            # float64, whether fresh (float32 arrays) or cached (JSON lists): the means do not depend on which
            curves += [(method, kind, np.asarray(result["fraction"], np.float64), np.asarray(result[kind], np.float64))
                       for kind in ("deletion", "insertion")]
        return rows, curves

    def _maps(self, method, items, x, targets, keys, options) -> torch.Tensor:
        """Maps [B,H,W] on the CPU: read from the .npy cache where there, explained (and cached) where not.

        Fresh maps are used as computed; the cache is written for the next run, not read back."""
        folder = self.cache / "maps" / safe_name(method)
        paths = [folder / f"{safe_name(item.image_id)}-{key}.npy" for item, key in zip(items, keys)]
        maps = {i: torch.from_numpy(np.load(p, allow_pickle=False)) for i, p in enumerate(paths) if p.is_file()}
        missing = [i for i in range(len(paths)) if i not in maps]
        if missing:
            fresh = explain(method, self.model, x[missing], targets[missing], batch_size=self.batch_size,
                            seed=self.seed, amp=self.amp, **options).float().cpu()
            folder.mkdir(parents=True, exist_ok=True)
            for i, saliency in zip(missing, fresh):
                np.save(paths[i], saliency.numpy(), allow_pickle=False)
                maps[i] = saliency
        return torch.stack([maps[i] for i in range(len(paths))])

    def _cached(self, kind, method, items, keys, compute) -> list[dict]:
        """Per-image results: read from the JSON cache where there, `compute(indices)` (and cached) where not.

        Fresh results are used as computed, their arrays still arrays; they become JSON lists only
        in the file written for the next run."""
        folder = self.cache / kind / safe_name(method)
        paths = [folder / f"{safe_name(item.image_id)}-{key}.json" for item, key in zip(items, keys)]
        results = [json.loads(p.read_text()) if p.is_file() else None for p in paths]
        missing = [i for i, result in enumerate(results) if result is None]
        if missing:
            folder.mkdir(parents=True, exist_ok=True)
            for i, result in zip(missing, compute(missing)):
                paths[i].write_text(json.dumps(result, default=_as_list))
                results[i] = result
        return results

    def _metrics(self, x, maps, targets, boxes) -> list[dict]:
        """Per image: faithfulness rows (plus localization where it has boxes) and both curves."""
        s = self.settings
        run = dict(batch_size=self.batch_size, amp=self.amp)
        causal = metrics.causal_curves(self.model, x, maps, targets, step=s["step"],
                                       deletion_substrate=s["deletion_substrate"],
                                       insertion_substrate=s["insertion_substrate"], **run)
        confidence = metrics.confidence_change(self.model, x, maps, targets, **run)
        columns = [
            ("deletion_auc", causal["deletion"].auc, {"step": s["step"], "substrate": s["deletion_substrate"]}),
            ("insertion_auc", causal["insertion"].auc, {"step": s["step"], "substrate": s["insertion_substrate"]}),
            ("average_drop", confidence.drop, {}),
            ("increase_in_confidence", confidence.increase, {}),
        ]
        rows = [[_row(name, values[i], params) for name, values, params in columns] for i in range(x.shape[0])]
        located = [i for i, b in enumerate(boxes) if b]
        if located:
            for j, local in enumerate(_localization_rows(maps[located], [boxes[i] for i in located], s)):
                rows[located[j]] += local
        fraction = (causal["deletion"].pixels / (x.shape[-1] * x.shape[-2])).numpy()
        deletion, insertion = causal["deletion"].curve.numpy(), causal["insertion"].curve.numpy()
        return [{"rows": rows[i], "fraction": fraction, "deletion": deletion[i], "insertion": insertion[i]}
                for i in range(x.shape[0])]

    def _sanity(self, method, options, x, targets) -> list[dict]:
        def explain_fn(model, images, classes):
            return explain(method, model, images, classes, batch_size=self.batch_size, seed=self.seed,
                           amp=self.amp, **options)

        result = metrics.randomization_sanity(self.model, x, targets, explain_fn,
                                              stages=self.sanity_settings["stages"], seed=self.seed)
        return [
            {"rows": [_row("randomization_spearman", result.rho[i, k],
                           {"stage": stage, "stage_index": k, "seed": self.seed})
                      for k, stage in enumerate(result.stages)]}
            for i in range(x.shape[0])
        ]


def _localization_rows(maps: torch.Tensor, boxes: list, settings: dict) -> list[list]:
    """Pointing game, energy pointing game and CAM box localization rows for each map."""
    tolerance, threshold = settings["tolerance"], settings["box_threshold"]
    found = metrics.box_localization(maps, boxes, threshold=threshold)
    columns = [
        ("pointing_game", metrics.pointing_game(maps, boxes, tolerance=tolerance).float(), {"tolerance": tolerance}),
        ("energy_pointing_game", metrics.energy_pointing_game(maps, boxes), {}),
        ("box_localization", found.correct.float(), {"threshold": threshold}),
        ("box_iou", found.iou, {"threshold": threshold}),
    ]
    return [[_row(name, values[i], params) for name, values, params in columns] for i in range(maps.shape[0])]


def _as_list(array: np.ndarray) -> list:
    """How a fresh result's arrays (curves, pixel fractions) are written to the JSON cache."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"cannot cache a {type(array).__name__} as JSON")
    return array.tolist()


def _row(metric: str, value, params: dict) -> list:
    """[metric, value, params JSON]; NaN (e.g. the energy of an all-zero map) becomes None -> empty cell."""
    v = float(value)
    return [metric, None if math.isnan(v) else v, json.dumps(params, sort_keys=True)]


def mean_curve_table(curves: list[tuple], model_name: str) -> pd.DataFrame:
    """Mean deletion / insertion curve per method as long rows (curves.csv, read by the report)."""
    rows = []
    by_key: dict[tuple[str, str], list] = {}
    for method, kind, fraction, curve in curves:
        by_key.setdefault((method, kind), []).append((fraction, curve))
    for (method, kind), pairs in by_key.items():
        fraction = pairs[0][0]
        mean = np.mean([c for _, c in pairs], axis=0)
        rows += [[model_name, method, kind, float(f), float(v)] for f, v in zip(fraction, mean)]
    return pd.DataFrame(rows, columns=CURVE_COLUMNS)
