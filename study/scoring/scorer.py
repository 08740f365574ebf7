"""`camstudy score`: every metric for every (image, method), into faithfulness.csv, curves.csv and plots.

Maps and per-image metric results are cached under `<out>/cache/` keyed by a hash of everything
that determines them (the model's weights, the image's pixels, the method and its options, the
target class, the metric settings), as .npy (maps) and .json (metric values and curves) files, so
a rerun recomputes only what changed. Nothing is ever unpickled. Each cache file is written under a
temporary name and renamed into place, so a killed run never leaves a file a rerun would take as done.

Images stream through a DataLoader (`study.images.streaming`) and results leave memory as they are made:
faithfulness.csv is written a row at a time in the set's order, and the mean curves and metric means
are running sums, so memory does not grow with the number of images.

Under torchrun (`study.scoring.distributed`) each rank scores its strided shard of the images into the shared
cache (strided by batches, so every batch holds the images it holds in one process) and records
which cache files hold each image's results; after a barrier rank 0 writes the
outputs from those files in the set's order, the same bytes a one-process run writes. The cache key
never depends on the rank or the number of ranks, so a run resumes at any world size.

Which metrics run is chosen by family (`metrics=`, `study.scoring.catalog`: names, directions, meanings);
how each family is computed is `study.scoring.families`. Each family's per-image results are a cache file of
their own, keyed by its own settings, so a rerun that adds a family computes only that family. The
default families (deletion, insertion, confidence, localization) write the rows they always wrote;
rows come in the catalog's order whatever order the families were asked in.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from metrics.model_calls import chunk_size
from study.scoring import distributed
from study.scoring.distributed import Ranks
from study.explainers import METHODS, check_options, explain, general_methods, resolve_method
from study.scoring.figures import curves_figure, table_figure
from study.images.items import ImageItem, ImageRef
from study.scoring.catalog import choose_families
from study.scoring.families import WORK, BatchWork, MetricSettings, as_list
from study.scoring.files import (CURVE_COLUMNS, CURVES_FILE, CURVES_PLOT, FAITHFULNESS_FILE, TABLE_PLOT,
                                 faithfulness_header, safe_name)
from study.images.streaming import Batch, image_batches

TARGETS = ("label", "top1")
SHARDS = ".shards"  # inside --out: per rank, which cache files hold each of its images' results


@dataclass(frozen=True)
class Summary:
    """What a finished run wrote, small enough to print: mean of every metric per method (`means`: model,
    method, metric, value, n), the mean curves (curves.csv rows), and how many images and rows."""

    means: pd.DataFrame
    curves: pd.DataFrame
    images: int
    rows: int


def score(model: nn.Module, items: Sequence[ImageItem | ImageRef], methods: Sequence[str] | None = None,
          out_dir: str | Path = "scores", **options) -> pd.DataFrame | None:
    """`write_scores` (same arguments), then the faithfulness table it wrote (DESIGN.md's columns).

    For sets whose table fits in memory (the demo, a study's stimuli); a benchmark-sized run uses
    `write_scores`, which keeps nothing per image. Under torchrun only rank 0 returns the table."""
    summary = write_scores(model, items, methods, out_dir, **options)
    if summary is None:
        return None
    text = {name: str for name in ("image_id", "model", "method", "metric", "params")}
    return pd.read_csv(Path(out_dir) / FAITHFULNESS_FILE, dtype=text)


def write_scores(
    model: nn.Module,
    items: Sequence[ImageItem | ImageRef],
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
    workers: int = 0,
    amp: str | None = None,
    seed: int = 0,
    explainer_options: Mapping[str, Mapping] | None = None,
    metrics: Sequence[str] | None = None,
    score: str = "softmax",
    sanity: bool = False,
    sanity_stages: Sequence[str] | None = None,
    sanity_mode: str = "cascading",
    plots: bool = True,
    progress: bool = True,
) -> Summary | None:
    """Score `methods` (default: every method that explains any classifier) of `model` on `items`; write
    the results to `out_dir`.

    `model` is a camstudy Classifier (it preprocesses the images). `items` are ImageItems (photos in
    memory) or ImageRefs (read by `workers` DataLoader processes, `batch_size` images at a time, which
    is also the most inputs an explainer or a metric runs at once: fewer on a CPU, where smaller
    chunks stay in cache, see `metrics`). `target="label"` explains each image's main label where
    it has one and the model's top-1 class otherwise; `"top1"` always the top-1 class.
    `explainer_options` maps a method to extra options for `explain` (e.g. `{"rise": {"n_masks": 500}}`
    for a quick demo). `metrics` names the metric families (or metric names, or ["all"]; default
    deletion, insertion, confidence, localization); `sanity=True` adds randomization_spearman, whose
    randomisation is `sanity_mode` ("cascading" or "independent"). `score` ("softmax", "sigmoid",
    "logit") is the class score of every metric that scores a class. Localization and relevance metrics
    are computed for images with boxes only. Returns the `Summary` (None on ranks other than 0 under
    torchrun).
    """
    methods = check_methods(methods, explainer_options)
    families = choose_families(None if metrics is None else list(metrics))
    if sanity and "randomization_spearman" not in families:
        families.append("randomization_spearman")  # the catalog's last family
    entries = check_items(items)
    if target not in TARGETS:
        raise ValueError(f"target must be one of {', '.join(TARGETS)}; got {target!r}")
    if not hasattr(model, "from_pixels"):
        raise ValueError("score needs a camstudy Classifier (study.load_model), which preprocesses images")
    settings = MetricSettings(step=step, deletion_substrate=deletion_substrate, insertion_substrate=insertion_substrate,
                              tolerance=tolerance, box_threshold=box_threshold, score=score, seed=seed,
                              sanity_stages=tuple(sanity_stages) if sanity_stages else None, sanity_mode=sanity_mode)
    out = Path(out_dir)
    scorer = _Scorer(model, out, batch_size, amp, seed, dict(explainer_options or {}), settings, families)
    ranks = distributed.current()
    out.mkdir(parents=True, exist_ok=True)
    batches = image_batches(entries, ranks.shard(len(entries), block=batch_size), model.input_size,
                            batch_size=batch_size,
                            workers=workers, pin_memory=model.device.type == "cuda")
    sink = _TableWriter(out, scorer.model_name) if ranks.world == 1 else _ShardIndex(out, ranks)
    with _Progress(len(entries), ranks, progress) as bar:
        with sink:
            for batch in batches:
                group = [entries[i] for i in batch.indices]
                x = model.from_pixels(batch.pixels)
                targets = choose_targets(model, x, group, target)
                done = [scorer.method_on_group(method, group, batch, x, targets) for method in methods]
                for j, (index, item) in enumerate(zip(batch.indices, group)):
                    sink.add(index, item.image_id, int(targets[j]), [(m, *d[j]) for m, d in zip(methods, done)])
                bar.advance(len(group))
        distributed.barrier()
        bar.finish()
    if not ranks.main:
        return None
    writer = sink
    if ranks.world > 1:  # rank 0 writes every rank's results, from the cache, in the set's order
        writer = _TableWriter(out, scorer.model_name)
        with writer:
            for record in _merged(out, ranks.world, len(entries), batch_size):
                writer.add(*record)
    summary = writer.summary()
    summary.curves.to_csv(out / CURVES_FILE, index=False)
    if plots:
        curves_figure(summary.curves, faithfulness=summary.means).savefig(out / CURVES_PLOT, dpi=110)
        table_figure(summary.means, n_images=summary.images).savefig(out / TABLE_PLOT, dpi=110)
    return summary


def merge_scores(out: str | Path, folders: Sequence[str | Path], plots: bool = True) -> pd.DataFrame:
    """One faithfulness.csv and curves.csv (and their plots) in `out` from the score folders of several
    models (one `score` call each), so an export or report sees them all; returns the merged table."""
    table = pd.concat([pd.read_csv(Path(f) / FAITHFULNESS_FILE, dtype={"image_id": str, "params": str})
                       for f in folders], ignore_index=True)
    curves = pd.concat([pd.read_csv(Path(f) / CURVES_FILE) for f in folders], ignore_index=True)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _write_atomically(out / FAITHFULNESS_FILE, lambda path: table.to_csv(path, index=False))
    _write_atomically(out / CURVES_FILE, lambda path: curves.to_csv(path, index=False))
    if plots:
        curves_figure(curves, faithfulness=table).savefig(out / CURVES_PLOT, dpi=110)
        table_figure(table).savefig(out / TABLE_PLOT, dpi=110)
    return table


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


def check_items(items: Sequence[ImageItem | ImageRef]) -> list[ImageItem | ImageRef]:
    items = list(items)
    if not items:
        raise ValueError("no images to score")
    counts = Counter(item.image_id for item in items)
    repeated = sorted(i for i, n in counts.items() if n > 1)
    if repeated:
        raise ValueError(f"image ids must be unique; repeated: {', '.join(repeated)}")
    return items


def choose_targets(model: nn.Module, x: torch.Tensor, items: Sequence[ImageItem | ImageRef], target: str) -> torch.Tensor:
    """Per image the main label (target="label", where known) or the model's top-1 class."""
    with torch.inference_mode():
        top1 = model(x).argmax(1).cpu()
    if target == "label":
        return torch.tensor([item.labels[0] if item.labels else int(t) for item, t in zip(items, top1)])
    return top1


def _regions_key(boxes, mask) -> object:
    """What a family that scores against boxes depends on: the boxes, and the mask where there is one."""
    if mask is None:
        return boxes
    return [boxes, hashlib.sha256(mask.numpy().tobytes()).hexdigest()[:24]]


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


class _Scorer:
    """The per-(method, group) work with its caches; holds what every call shares."""

    def __init__(self, model, out: Path, batch_size, amp, seed, options, settings: MetricSettings, families):
        self.model, self.out = model, out
        self.batch_size, self.amp, self.seed = batch_size, amp, seed
        self.options, self.settings, self.families = options, settings, families
        self.model_name = str(getattr(model, "name", type(model).__name__))
        self.model_key = model_fingerprint(model)
        self.cache = out / "cache"

    def method_on_group(self, method, items, batch: Batch, x, targets) -> list[tuple[list[dict], list[Path]]]:
        """Per image, its results for `method` (one per family it gets, in catalog order) and their cache files."""
        options = dict(self.options.get(method, {}))
        chunk = chunk_size(x, self.batch_size)  # what explainers and metrics run at once on this device
        # a randomised method's maps may depend on its chunks (captum's samplers are seeded per chunk)
        chunked = (chunk,) if resolve_method(method).randomised else ()
        map_keys = [fingerprint(self.model_key, digest, method, options, self.seed, int(t), self.amp, *chunked)
                    for digest, t in zip(batch.digests, targets)]
        maps = self._maps(method, items, x, targets, map_keys, options, chunk)
        work = BatchWork(self.model, x, maps, targets, batch.boxes, batch.masks,
                         self._explainer(method, options, chunk), chunk, self.amp, self.settings)
        per_image: list[tuple[list[dict], list[Path]]] = [([], []) for _ in items]
        for family in self.families:
            chosen = [i for i, b in enumerate(batch.boxes) if b] if WORK[family].boxes else list(range(len(items)))
            if not chosen:
                continue
            results, paths = self._family(family, method, [items[i] for i in chosen], map_keys, chosen, work)
            for i, result, path in zip(chosen, results, paths):
                per_image[i][0].append(result)
                per_image[i][1].append(path)
        return per_image

    def _family(self, family, method, items, map_keys, chosen, work: BatchWork) -> tuple[list[dict], list[Path]]:
        """One family's results for the images `chosen` of the batch, from the cache or computed.

        The key holds the family's settings (and the boxes where it uses them); for a family whose values
        depend on the whole batch it also holds the batch's maps, and a miss recomputes the whole batch."""
        spec = WORK[family]
        params = spec.params(self.settings)
        context = fingerprint(map_keys, work.batch_size) if spec.whole_batch else None
        keys = [fingerprint(map_keys[i], family, params, self.amp,
                            _regions_key(work.boxes[i], work.masks[i]) if spec.boxes else None, context)
                for i in chosen]
        def compute(missing: list[int]) -> list[dict]:
            if spec.whole_batch:
                every = spec.compute(work.subset(chosen), params)
                return [every[i] for i in missing]
            return spec.compute(work.subset([chosen[i] for i in missing]), params)

        return self._cached(family, method, items, keys, compute)

    def _explainer(self, method, options, chunk: int):
        """`explain_fn(model, x, targets)` for the metrics that explain again (sanity, max-sensitivity,
        random logit), with the method's options, the batch's chunk size and the run's seed and amp."""
        def explain_fn(model, images, classes):
            return explain(method, model, images, classes, batch_size=chunk, seed=self.seed, amp=self.amp,
                           **options)

        return explain_fn

    def _maps(self, method, items, x, targets, keys, options, chunk: int) -> torch.Tensor:
        """Maps [B,H,W] on the model's device: read from the .npy cache where there, explained (and cached)
        where not. Fresh maps are used as computed; the cache is written for the next run, not read back."""
        folder = self.cache / "maps" / safe_name(method)
        paths = [folder / f"{safe_name(item.image_id)}-{key}.npy" for item, key in zip(items, keys)]
        maps = {i: torch.from_numpy(np.load(p, allow_pickle=False)).to(x.device)
                for i, p in enumerate(paths) if p.is_file()}
        missing = [i for i in range(len(paths)) if i not in maps]
        if missing:
            fresh = explain(method, self.model, x[missing], targets[missing], batch_size=chunk, seed=self.seed,
                            amp=self.amp, **options).float()
            folder.mkdir(parents=True, exist_ok=True)
            for i, saliency, on_host in zip(missing, fresh, fresh.cpu()):
                _write_atomically(paths[i], lambda f, a=on_host.numpy(): np.save(f, a, allow_pickle=False))
                maps[i] = saliency
        return torch.stack([maps[i] for i in range(len(paths))])

    def _cached(self, kind, method, items, keys, compute) -> tuple[list[dict], list[Path]]:
        """Per-image results and their files: read from the JSON cache where there, `compute(indices)` (and
        cached) where not.

        Fresh results are used as computed, their arrays still arrays; they become JSON lists only
        in the file written for the next run."""
        folder = self.cache / kind / safe_name(method)
        paths = [folder / f"{safe_name(item.image_id)}-{key}.json" for item, key in zip(items, keys)]
        results = [json.loads(p.read_text()) if p.is_file() else None for p in paths]
        missing = [i for i, result in enumerate(results) if result is None]
        if missing:
            folder.mkdir(parents=True, exist_ok=True)
            for i, result in zip(missing, compute(missing)):
                text = json.dumps(result, default=as_list).encode()
                _write_atomically(paths[i], lambda f, t=text: f.write(t))
                results[i] = result
        return results, paths


class _TableWriter:
    """faithfulness.csv written a row at a time in the set's order, with running sums for the mean curves
    (curves.csv) and the per-method metric means, so nothing per image stays in memory.

    Rows go to a temporary file renamed into place when the run completes: an interrupted run leaves no
    faithfulness.csv that looks finished."""

    def __init__(self, out: Path, model_name: str):
        self.path, self.model_name = out / FAITHFULNESS_FILE, model_name
        self.temporary = _temporary(self.path)
        self.metric_sums: dict[tuple[str, str], list] = {}     # (method, metric) -> [sum, count]
        self.curve_sums: dict[tuple[str, str], list] = {}      # (method, curve) -> [fraction, sum, count]
        self.images = self.rows = 0

    def __enter__(self):
        self.file = self.temporary.open("w", newline="")
        self.csv = csv.writer(self.file, lineterminator="\n")
        self.csv.writerow(faithfulness_header())
        return self

    def __exit__(self, kind, error, trace):
        self.file.close()
        if kind is None:
            os.replace(self.temporary, self.path)
        else:
            self.temporary.unlink(missing_ok=True)

    def add(self, index: int, image_id: str, target: int, per_method: list[tuple[str, list[dict], list]]) -> None:
        """One image's results: per method, its result dicts (metrics, then sanity) and their cache files."""
        for method, results, _ in per_method:
            for result in results:
                for metric, value, params in result["rows"]:
                    self.csv.writerow([image_id, self.model_name, method, target, metric,
                                       "" if value is None else repr(float(value)), params])
                    self.rows += 1
                    if value is not None:
                        sums = self.metric_sums.setdefault((method, metric), [0.0, 0])
                        sums[0] += value
                        sums[1] += 1
            # float64, whether fresh (float32 arrays) or cached (JSON lists): the sums do not depend on which
            for result in results:
                if "curve" in result:
                    curve = np.asarray(result["values"], np.float64)
                    sums = self.curve_sums.setdefault(
                        (method, result["curve"]), [np.asarray(result["fraction"], np.float64), np.zeros_like(curve), 0])
                    sums[1] += curve
                    sums[2] += 1
        self.images += 1

    def summary(self) -> Summary:
        means = pd.DataFrame([[self.model_name, method, metric, total / n, n]
                              for (method, metric), (total, n) in self.metric_sums.items()],
                             columns=["model", "method", "metric", "value", "n"])
        curves = pd.DataFrame([[self.model_name, method, kind, float(f), float(v)]
                               for (method, kind), (fraction, total, n) in self.curve_sums.items()
                               for f, v in zip(fraction, total / n)], columns=CURVE_COLUMNS)
        return Summary(means, curves, self.images, self.rows)


class _ShardIndex:
    """A rank's record of its images under torchrun: per image (in shard order), its target and the
    cache files of its results, which rank 0 reads back (`_merged`) once every rank is done."""

    def __init__(self, out: Path, ranks: Ranks):
        self.out, self.path = out, _shard_path(out, ranks.rank, ranks.world)

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = self.path.open("w")
        return self

    def __exit__(self, *exc):
        self.file.close()

    def add(self, index: int, image_id: str, target: int, per_method: list[tuple[str, list[dict], list]]) -> None:
        files = [[method, [p.relative_to(self.out).as_posix() for p in paths]] for method, _, paths in per_method]
        self.file.write(json.dumps({"index": index, "image_id": image_id, "target": target, "results": files}) + "\n")


def _merged(out: Path, world: int, n: int, block: int) -> Iterator[tuple]:
    """Every image's (index, id, target, per-method results) in the set's order, from the ranks' records.

    Each rank's record is in the set's order and the shards are blocks dealt round robin, so reading
    the record of each image's owner in turn is one pass that holds one image's results at a time."""
    files = [_shard_path(out, rank, world).open() for rank in range(world)]
    try:
        for i in range(n):
            owner = distributed.owner(i, world, block)
            line = files[owner].readline()
            record = json.loads(line) if line else {}
            if record.get("index") != i:
                raise RuntimeError(f"rank {owner} of {world} has no record of image {i}; was it stopped?")
            per_method = [(method, [json.loads((out / p).read_text()) for p in paths], paths)
                          for method, paths in record["results"]]
            yield i, record["image_id"], record["target"], per_method
    finally:
        for f in files:
            f.close()


def _shard_path(out: Path, rank: int, world: int) -> Path:
    return out / SHARDS / f"rank{rank}-of-{world}.jsonl"


class _Progress:
    """One bar, on rank 0, over the whole set, with images/s.

    Rank 0 counts its own images times the world size: shards differ by at most one batch, so this is
    the run's progress, and it needs no collective call (an all_reduce every few batches would have to
    be made equally often by every rank, which unequal shards do not guarantee)."""

    def __init__(self, total: int, ranks: Ranks, show: bool):
        self.total, self.world = total, ranks.world
        self.bar = tqdm(total=total, desc="score", unit="image", disable=not (show and ranks.main))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.bar.close()

    def advance(self, images: int) -> None:
        self.bar.update(min(images * self.world, self.total - self.bar.n))
        elapsed = self.bar.format_dict["elapsed"]
        if elapsed > 0:
            self.bar.set_postfix_str(f"{self.bar.n / elapsed:.1f} images/s")

    def finish(self) -> None:
        """Every rank is done: the bar is full."""
        self.bar.update(self.total - self.bar.n)


def _temporary(path: Path) -> Path:
    """A name beside `path` that no other process (rank) writing the same file uses."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def _write_atomically(path: Path, write) -> None:
    """`write(binary file)` to a temporary name, then rename it to `path` (atomic on one file system): a
    killed run never leaves a half-written cache file that a rerun would read as complete."""
    temporary = _temporary(path)
    with temporary.open("wb") as f:
        write(f)
    os.replace(temporary, path)
