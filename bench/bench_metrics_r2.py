"""Round-2 metrics next to Quantus on the same model and inputs, in one run (images per second).

    .venv/bin/python bench/bench_metrics_r2.py --quick        # CPU, a couple of minutes
    .venv/bin/python bench/bench_metrics_r2.py --device cuda --images 16

Perturbation metrics run the same number of forward passes on both sides: ROAD at the same
percentages (on one-channel images, because Quantus's ROAD only runs on one channel), infidelity and
max-sensitivity with the same number of perturbations (Quantus's Infidelity replaces square patches
by a baseline, one forward pass per patch and draw, instead of adding Gaussian noise: one patch of
the image's size gives it the same number of passes, not the same values), deletion in
the LeRF order against RegionPerturbation with 1-pixel regions. Map-only metrics (sparseness,
complexity, relevance mass and rank accuracy) are timed on the same maps. Times are this process's
CPU time on the CPU (other load on the machine does not skew them), wall clock on a GPU.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F
import torchvision

from bench_metrics import timed
from metrics import (
    box_masks,
    complexity,
    deletion,
    infidelity,
    max_sensitivity,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
    road,
    sparseness,
)


def gradient_map(model, x, targets):
    """|d logit / d x| summed over channels: a cheap explainer both libraries can call."""
    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        (grads,) = torch.autograd.grad(model(x).gather(1, targets[:, None]).sum(), x)
    return grads.abs().sum(1)


def quantus_rows(model, gray_model, x, gray, maps, targets, masks, args, device):
    """(name, seconds) of the same work done by Quantus, skipping what fails or is missing."""
    try:
        import quantus
    except ImportError:
        print("quantus not installed: no comparison")
        return {}
    common = dict(disable_warnings=True, display_progressbar=False)
    xs, ys, a = x.cpu().numpy(), targets.cpu().numpy(), maps[:, None].cpu().numpy()

    def explain(model, inputs, targets, **kwargs):
        inputs = torch.as_tensor(inputs, device=device)
        return gradient_map(model, inputs, torch.as_tensor(targets, device=device)).cpu().numpy()[:, None]

    work = {
        "road": lambda: quantus.ROAD(percentages=[int(100 * p) for p in args.percentages], noise=0.01, **common)(
            model=gray_model, x_batch=gray.cpu().numpy(), y_batch=ys, a_batch=a, device=str(device)),
        "infidelity": lambda: quantus.Infidelity(
            n_perturb_samples=args.samples, perturb_patch_sizes=[args.size], **common)(
            model=model, x_batch=xs, y_batch=ys, a_batch=a, device=str(device)),
        "max_sensitivity": lambda: quantus.MaxSensitivity(nr_samples=args.samples, lower_bound=0.02, **common)(
            model=model, x_batch=xs, y_batch=ys, a_batch=a, explain_func=explain, device=str(device)),
        "deletion lerf, 14x14 regions": lambda: quantus.RegionPerturbation(
            patch_size=args.region, regions_evaluation=(args.size // args.region) ** 2, order="lerf",
            perturb_baseline=0.0, **common)(model=model, x_batch=xs, y_batch=ys, a_batch=a, device=str(device)),
        "sparseness": lambda: quantus.Sparseness(**common)(model=None, x_batch=xs, y_batch=ys, a_batch=a.copy()),
        "complexity": lambda: quantus.Complexity(**common)(model=None, x_batch=xs, y_batch=ys, a_batch=a.copy()),
        "relevance_mass_accuracy": lambda: quantus.RelevanceMassAccuracy(**common)(
            model=None, x_batch=xs, y_batch=ys, a_batch=a.copy(), s_batch=masks[:, None].numpy().astype(float)),
        "relevance_rank_accuracy": lambda: quantus.RelevanceRankAccuracy(**common)(
            model=None, x_batch=xs, y_batch=ys, a_batch=a.copy(), s_batch=masks[:, None].numpy().astype(float)),
    }
    seconds = {}
    for name, fn in work.items():
        try:
            seconds[name] = timed(fn, device)
            print(f"Quantus {name}: {seconds[name]:.2f} s", flush=True)
        except Exception as err:  # a peer's API drift must not hide our own figures
            print(f"Quantus {name} failed ({type(err).__name__}: {err}); skipped")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--samples", type=int, default=10, help="perturbations per image")
    parser.add_argument("--quick", action="store_true", help="4 images of 112x112, 5 percentages, 5 samples")
    args = parser.parse_args()
    args.percentages = (0.1, 0.3, 0.5, 0.7, 0.9) if args.quick else tuple(p / 100 for p in range(10, 100, 10))
    if args.quick:
        args.images, args.size, args.samples = 4, 112, 5
    args.region = args.size // 14  # RegionPerturbation: 14x14 regions, deletion with the same steps

    device = torch.device(args.device)
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval().to(device)
    gray_model = torchvision.models.resnet18(weights=None).eval().to(device)
    gray_model.conv1 = torch.nn.Conv2d(1, 64, 7, 2, 3, bias=False).to(device)
    x = torch.randn(args.images, 3, args.size, args.size, device=device)
    gray = x[:, :1].contiguous()
    coarse = torch.rand(args.images, 1, 7, 7, device=device)
    maps = F.interpolate(coarse, size=(args.size, args.size), mode="bilinear", align_corners=False)[:, 0]
    with torch.no_grad():
        targets = model(x).argmax(1)
    quarter = args.size // 4
    masks = box_masks([[(quarter, quarter, 3 * quarter, 3 * quarter)]] * args.images, (args.size, args.size))

    ours = {
        "road": lambda: road(gray_model, gray, maps, targets, percentages=args.percentages, seed=0),
        "infidelity": lambda: infidelity(model, x, maps, targets, n_perturbations=args.samples, seed=0),
        "max_sensitivity": lambda: max_sensitivity(gradient_map, model, x, targets, n_samples=args.samples, seed=0),
        "deletion lerf, 14x14 regions": lambda: deletion(model, x, maps, targets, step=args.region**2, order="lerf"),
        "sparseness": lambda: sparseness(maps),
        "complexity": lambda: complexity(maps),
        "relevance_mass_accuracy": lambda: relevance_mass_accuracy(maps, masks),
        "relevance_rank_accuracy": lambda: relevance_rank_accuracy(maps, masks),
    }
    with torch.no_grad():  # warm-up, so that neither side pays for first-call initialisation
        gray_model(gray)
    camstudy = {}
    for name, fn in ours.items():
        camstudy[name] = timed(fn, device)
        print(f"camstudy {name}: {camstudy[name]:.2f} s", flush=True)
    quantus = quantus_rows(model, gray_model, x, gray, maps, targets, masks, args, device)
    print(f"resnet18 {args.size}x{args.size} on {device}, {args.images} images, {args.samples} perturbations, "
          f"ROAD at {len(args.percentages)} percentages (one channel)")
    print(f"{'metric':32s} {'camstudy img/s':>15s} {'Quantus img/s':>14s} {'speed-up':>9s}")
    for name, seconds in camstudy.items():
        theirs = quantus.get(name)
        rate = args.images / seconds
        other = f"{args.images / theirs:14.2f} {theirs / seconds:8.1f}x" if theirs else f"{'-':>14s} {'-':>9s}"
        print(f"{name:32s} {rate:15.2f} {other}")


if __name__ == "__main__":
    main()
