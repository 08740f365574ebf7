"""`camstudy explain`: saliency maps (.npy) and overlays (.png) for a set of images and methods.

Under torchrun each rank explains its shard of the images (`study.scoring.distributed`) and writes their files;
rank 0 gathers the maps and draws the grid of all of them.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from study.commands._common import add_model_arguments, parse_methods
from study.scoring.files import safe_name


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--images", default="bundled",
                        help="'bundled', an image folder, voc:IMAGES:ANNOTATIONS, or "
                             "imagenet:VAL_FOLDER:LOC_val_solution.csv:LOC_synset_mapping.txt")
    parser.add_argument("--methods", default="gradcam", help="comma-separated, e.g. gradcam,scorecam,rise")
    parser.add_argument("--max-images", type=int, default=None, help="explain only the first N images")
    parser.add_argument("--target", choices=("top1", "label"), default="top1",
                        help="explain the model's top-1 class, or the image's labelled class where known")
    parser.add_argument("--target-layer", default=None, help="dotted module path (default: the model's CAM layer)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the randomised methods")
    parser.add_argument("--out", required=True, type=Path, help="output folder")


def run(args) -> int:
    from study.scoring import distributed
    from study import load_model
    from study.images.sets import image_refs
    from study.models.layers import resolve_layer
    from study.stimuli.render import grid_figure

    methods = parse_methods(args.methods)
    if args.max_images is not None and args.max_images < 1:
        raise ValueError(f"--max-images must be at least 1; got {args.max_images}")
    refs = image_refs(args.images)[: args.max_images]
    with distributed.launched(args.device) as device:
        model = load_model(args.model, weights=args.weights, device=device)
        layer = args.target_layer or model.target_layer
        if args.target_layer:
            layer = resolve_layer(model, _in_classifier(args.target_layer, model))
        mine = distributed.current().shard(len(refs))
        args.out.mkdir(parents=True, exist_ok=True)
        explained = _explain_shard([refs[i].load() for i in mine], model, layer, methods, args) if mine else None
        shards = distributed.gather((mine, explained))
    if shards is None:
        return 0
    order = [i for indices, _ in shards for i in indices]
    targets = torch.cat([e[0] for _, e in shards if e is not None])[np.argsort(order)]
    shown_maps = {m: torch.cat([e[1][m] for _, e in shards if e is not None])[np.argsort(order)] for m in methods}
    items = [ref.load() for ref in refs]
    photos = [item.image.resize(model.input_size[::-1]) for item in items]
    grid_figure(photos, shown_maps, titles=[item.image_id for item in items]).savefig(args.out / "grid.png", dpi=110)
    names = [model.categories[t] for t in targets.tolist()]
    print(f"wrote {len(items)} images x {len(methods)} methods to {args.out} "
          f"(targets: {', '.join(f'{i.image_id}={n}' for i, n in zip(items, names))}); overview: {args.out / 'grid.png'}")
    return 0


def _explain_shard(items, model, layer, methods, args) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Explain `items` with every method, write each image's .npy and .png; return the targets and the maps
    as shown (guided methods: RGB) on the CPU, for the grid."""
    from metrics.model_calls import chunk_size
    from study.explainers import explain, min_max, reduce_guided, resolve_method
    from study.stimuli.render import picture

    x = model.preprocess([item.image for item in items])
    targets = _targets(args.target, model, x, items)
    shown_maps = {}
    for method in tqdm(methods, desc="explain", unit="method"):
        options = dict(target_layer=layer, batch_size=chunk_size(x, args.batch_size), seed=args.seed, amp=args.amp)
        if resolve_method(method).guided:   # one pass: the RGB map is shown, its reduction saved
            shown = explain(method, model, x, targets, reduce="none", normalize=False, **options).cpu()
            maps = min_max(reduce_guided(shown))
        else:
            maps = shown = explain(method, model, x, targets, **options).cpu()
        shown_maps[method] = shown
        for i, item in enumerate(items):
            folder = args.out / safe_name(item.image_id)
            folder.mkdir(exist_ok=True)
            np.save(folder / f"{safe_name(method)}.npy", maps[i].numpy())
            picture(item.image, shown[i]).save(folder / f"{safe_name(method)}.png")
    return targets, shown_maps


def _in_classifier(path: str, model) -> str:
    """Let users name layers as in their own network; camstudy's Classifier keeps it under `network.`."""
    names = dict(model.named_modules())
    return path if path in names or f"network.{path}" not in names else f"network.{path}"


def _targets(kind: str, model, x: torch.Tensor, items) -> torch.Tensor:
    with torch.no_grad():
        top1 = model(x).argmax(1).cpu()
    if kind == "label":
        return torch.tensor([item.labels[0] if item.labels else int(t) for item, t in zip(items, top1)])
    return top1
