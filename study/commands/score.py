"""`camstudy score`: faithfulness, localization and sanity metrics into faithfulness.csv and plots.

The work is done by `study.scoring.scorer.write_scores`; this module only turns arguments into its call.
Under torchrun (`torchrun --nproc_per_node=N --no-python camstudy score ...`) every rank runs this and
`study.scoring.distributed.launched` joins them into one process group for the call.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from study.commands._common import add_model_arguments, parse_methods


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--images", default="bundled",
                        help="'bundled', an image folder, voc:IMAGES:ANNOTATIONS, or "
                             "imagenet:VAL_FOLDER:LOC_val_solution.csv:LOC_synset_mapping.txt")
    parser.add_argument("--workers", type=int, default=0,
                        help="DataLoader processes decoding images (default 0: in the scoring process)")
    parser.add_argument("--methods", default=None, help="comma-separated method names (default: all built-in methods)")
    parser.add_argument("--max-images", type=int, default=None, help="score only the first N images")
    parser.add_argument("--target", choices=("label", "top1"), default="label",
                        help="explain each image's labelled class where known (default), or the top-1 class")
    parser.add_argument("--step", type=int, default=224, help="pixels per deletion/insertion step (default 224)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the randomised methods and the sanity check")
    parser.add_argument("--option", action="append", default=[], metavar="METHOD.KEY=VALUE",
                        help="explainer option, e.g. rise.n_masks=500 (repeatable; VALUE is JSON or a string)")
    parser.add_argument("--metrics", default=None,
                        help="comma-separated metric families or metric names, or 'all' (default: deletion,"
                             "insertion,confidence,localization); see docs/METHODS.md for the names")
    parser.add_argument("--score", choices=("softmax", "sigmoid", "logit"), default="softmax",
                        help="class score of every metric that scores a class (default softmax)")
    parser.add_argument("--sanity", action="store_true",
                        help="also run the model-randomisation sanity check (recomputes every map once per stage)")
    parser.add_argument("--sanity-mode", choices=("cascading", "independent"), default="cascading",
                        help="randomise the layers cumulatively from the top (default) or one stage at a time")
    parser.add_argument("--no-plots", action="store_true", help="write the CSV files only")
    parser.add_argument("--out", required=True, type=Path, help="output folder (cache in OUT/cache)")


def parse_options(texts: list[str]) -> dict[str, dict]:
    """["rise.n_masks=500", ...] -> {"rise": {"n_masks": 500}}."""
    options: dict[str, dict] = {}
    for text in texts:
        key, eq, raw = text.partition("=")
        method, dot, name = key.rpartition(".")
        if not eq or not dot or not method or not name:
            raise ValueError(f"--option takes METHOD.KEY=VALUE (e.g. rise.n_masks=500); got {text!r}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        options.setdefault(method, {})[name] = value
    return options


def run(args) -> int:
    from study.scoring import distributed
    from study import load_model
    from study.images.sets import image_refs
    from study.scoring.files import FAITHFULNESS_FILE
    from study.scoring.catalog import choose_families
    from study.scoring.scorer import check_methods, write_scores

    methods = parse_methods(args.methods) if args.methods else None
    options = parse_options(args.option)
    check_methods(methods, options)  # a misspelt option fails before the model and images are loaded
    metrics = None if args.metrics is None else [m.strip() for m in args.metrics.split(",") if m.strip()]
    choose_families(metrics)  # so does a misspelt metric
    if args.max_images is not None and args.max_images < 1:
        raise ValueError(f"--max-images must be at least 1; got {args.max_images}")
    refs = image_refs(args.images)[: args.max_images]
    with distributed.launched(args.device) as device:
        model = load_model(args.model, weights=args.weights, device=device)
        summary = write_scores(model, refs, methods, args.out, target=args.target, step=args.step,
                               batch_size=args.batch_size, workers=args.workers, amp=args.amp, seed=args.seed,
                               explainer_options=options, metrics=metrics, score=args.score, sanity=args.sanity,
                               sanity_mode=args.sanity_mode, plots=not args.no_plots)
    if summary is not None:
        means = summary.means.pivot(index="method", columns="metric", values="value")
        print(means.to_string(float_format=lambda v: f"{v:.3f}"))
        print(f"wrote {summary.rows} rows for {summary.images} images to {args.out / FAITHFULNESS_FILE}")
    return 0
