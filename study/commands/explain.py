"""`camstudy explain`: saliency maps (.npy) and overlays (.png) for a set of images and methods."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from study.commands._common import add_model_arguments, parse_methods
from study.outputs import safe_name


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--images", default="bundled", help="'bundled', an image folder, or voc:IMAGES:ANNOTATIONS")
    parser.add_argument("--methods", default="gradcam", help="comma-separated, e.g. gradcam,scorecam,rise")
    parser.add_argument("--target", choices=("top1", "label"), default="top1",
                        help="explain the model's top-1 class, or the image's labelled class where known")
    parser.add_argument("--target-layer", default=None, help="dotted module path (default: the model's CAM layer)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the randomised methods")
    parser.add_argument("--out", required=True, type=Path, help="output folder")


def run(args) -> int:
    from study import load_model
    from study.explainers import explain, min_max, reduce_guided, resolve_method
    from study.images import image_set
    from study.layers import resolve_layer
    from study.render import grid_figure, picture

    methods = parse_methods(args.methods)
    items = image_set(args.images)
    model = load_model(args.model, weights=args.weights, device=args.device)
    layer = args.target_layer or model.target_layer
    if args.target_layer:
        layer = resolve_layer(model, _in_classifier(args.target_layer, model))
    x = model.preprocess([item.image for item in items])
    targets = _targets(args.target, model, x, items)
    args.out.mkdir(parents=True, exist_ok=True)
    photos = [item.image.resize(model.input_size[::-1]) for item in items]
    all_maps, shown_maps = {}, {}
    for method in tqdm(methods, desc="explain", unit="method"):
        options = dict(target_layer=layer, batch_size=args.batch_size, seed=args.seed, amp=args.amp)
        if resolve_method(method).guided:   # one pass: the RGB map is shown, its reduction saved
            shown = explain(method, model, x, targets, reduce="none", normalize=False, **options).cpu()
            maps = min_max(reduce_guided(shown))
        else:
            maps = shown = explain(method, model, x, targets, **options).cpu()
        all_maps[method], shown_maps[method] = maps, shown
        for i, item in enumerate(items):
            folder = args.out / safe_name(item.image_id)
            folder.mkdir(exist_ok=True)
            np.save(folder / f"{safe_name(method)}.npy", maps[i].numpy())
            picture(item.image, shown[i]).save(folder / f"{safe_name(method)}.png")
    grid_figure(photos, shown_maps, titles=[item.image_id for item in items]).savefig(args.out / "grid.png", dpi=110)
    names = [model.categories[t] for t in targets.tolist()]
    print(f"wrote {len(items)} images x {len(methods)} methods to {args.out} "
          f"(targets: {', '.join(f'{i.image_id}={n}' for i, n in zip(items, names))}); overview: {args.out / 'grid.png'}")
    return 0


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
