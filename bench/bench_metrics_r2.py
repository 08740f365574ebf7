"""Round-2 metrics next to Quantus on the same model and inputs, in one run (images per second).

    .venv/bin/python bench/bench_metrics_r2.py --quick        # CPU, a couple of minutes
    .venv/bin/python bench/bench_metrics_r2.py --device cuda --images 16 --model efficientnet_lite0
    .venv/bin/python bench/bench_metrics_r2.py --chunks     # forward images/s by chunk size

Times are this process's CPU time on the CPU (other load on the machine does not skew them, but work
spread over threads shows as no faster), wall clock on a GPU or with --wall. Both libraries run with
their default chunking unless --batch-size is given: camstudy's is chosen for the device
(metrics.model_calls.chunk_size), Quantus's is the batch of the given images. Each row also prints the ratio
to its limit, the forward passes it needs per image over the model's raw forward rate measured in the
same run, in chunks of --batch-size or of camstudy's CPU default for the RGB images (1.0 = at the
limit), and the speed-up over Quantus. What each side does, so that the comparison is the same work:

- ROAD: the same one-channel images (Quantus's ROAD only runs on one channel; the model sees the gray
  image repeated on its three input channels), the same percentages, noise 0.01, the same given targets.
  Quantus, per percentage: one noisy linear imputation per image (a sparse solve each), then one batched
  prediction of the batch (argmax only). camstudy: the imputations of `batch_size` (image, percentage)
  pairs in one block-diagonal sparse solve, scored in one forward pass (score and top-1). Both need one
  forward pass per (image, percentage); neither runs the unperturbed images (the targets are given).
- Infidelity: the same number of perturbations per image. Quantus's Infidelity replaces square patches
  by a baseline, one forward pass per patch and draw; one patch of the image's size gives it the same
  number of passes as camstudy's Gaussian perturbations, not the same values.
- Max-sensitivity: the same explainer (input gradient, `gradient_map`), the same number of uniform
  perturbations of radius 0.02 per image, the same targets and the same unperturbed maps (Quantus's
  a_batch, camstudy's maps=), so neither side explains the unperturbed images. Quantus explains the
  batch once per draw (n_samples calls of B images), normalising and taking the absolute value of each
  map; camstudy explains `batch_size` perturbed copies per call. Both: n_samples forward+backward passes
  per image.
- Deletion in the LeRF order against RegionPerturbation with --regions x --regions square regions
  (baseline 0): the same steps, one forward pass per step and image on both sides.
- Map-only metrics (sparseness, complexity, relevance mass and rank accuracy) on the same maps.
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

import bench_explainers
from bench_explainers import MODELS, load_subject, raw_rates
from bench_metrics import timed
from metrics.model_calls import chunk_size
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


class GrayInput(torch.nn.Module):
    """The model on one-channel images, repeated on its three input channels (Quantus's ROAD needs one)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, gray: torch.Tensor) -> torch.Tensor:
        return self.model(gray.expand(-1, 3, -1, -1))


def quantus_rows(model, gray_model, x, gray, maps, reference, targets, masks, args, device, names):
    """(name, seconds) of the same work done by Quantus for the metrics in `names`, skipping what fails or is
    missing."""
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
            model=model, x_batch=xs, y_batch=ys, a_batch=reference[:, None].cpu().numpy(), explain_func=explain,
            device=str(device)),
        "deletion lerf": lambda: quantus.RegionPerturbation(
            patch_size=args.size // args.regions, regions_evaluation=args.regions**2, order="lerf",
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
        if name not in names:
            continue
        try:
            seconds[name] = timed(fn, device, args.wall)
            print(f"Quantus {name}: {seconds[name]:.2f} s", flush=True)
        except Exception as err:  # a peer's API drift must not hide our own figures
            print(f"Quantus {name} failed ({type(err).__name__}: {err}); skipped")
    return seconds


def chunk_rates(model, x, device) -> list[dict]:
    """Raw forward images/s of the model at chunk sizes 2..128: where a CPU's caches stop keeping up."""
    rows = []
    for size in (2, 4, 8, 16, 32, 64, 128):
        rate = raw_rates(model, x[:1].expand(size, -1, -1, -1).contiguous(), None, 2)["forward"]
        print(f"chunk {size:4d}: {rate:8.1f} images/s", flush=True)
        rows.append({"row": f"forward, chunks of {size}", "images_per_s": rate, "ratio_to_limit": None,
                     "raw_forward_per_s": None, "peer_of": None})
    print(f"camstudy's default chunk here: {chunk_size(x, 256)} images")
    return rows


def main(argv=None) -> list[dict]:
    """Print the table; return its rows (ours and Quantus's, for bench/run_all.py's JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", default="resnet18", choices=MODELS)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--samples", type=int, default=10, help="perturbations per image")
    parser.add_argument("--percentages", type=int, default=9, help="ROAD percentages, evenly spaced in (0, 1)")
    parser.add_argument("--regions", type=int, default=14, help="deletion lerf: regions per side")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="camstudy's inputs per chunk (default: its own choice for the device)")
    parser.add_argument("--wall", action="store_true",
                        help="wall-clock time on the CPU too (what a user waits; needs an otherwise idle machine)")
    parser.add_argument("--chunks", action="store_true", help="only the raw forward rate at chunk sizes 2..128")
    parser.add_argument("--only", default="", help="comma-separated metric-name prefixes to run (default: all)")
    parser.add_argument("--quick", action="store_true", help="4 images of 112x112, 5 percentages, 5 samples")
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.size, args.samples, args.percentages = 4, 112, 5, 5
    args.percentages = tuple((k + 1) / (args.percentages + 1) for k in range(args.percentages))
    if args.percentages == tuple((k + 1) / 10 for k in range(9)):
        args.percentages = tuple(p / 100 for p in range(10, 100, 10))  # exact tenths
    elif len(args.percentages) == 5 and args.quick:
        args.percentages = (0.1, 0.3, 0.5, 0.7, 0.9)
    region = args.size // args.regions
    args.size = region * args.regions  # whole regions, as RegionPerturbation cuts them

    device = torch.device(args.device)
    torch.manual_seed(0)
    model = load_subject(args.model, device).model
    gray_model = GrayInput(model).eval()
    x = torch.randn(args.images, 3, args.size, args.size, device=device)
    gray = x[:, :1].contiguous()
    coarse = torch.rand(args.images, 1, 7, 7, device=device)
    maps = F.interpolate(coarse, size=(args.size, args.size), mode="bilinear", align_corners=False)[:, 0]
    with torch.no_grad():
        targets = model(x).argmax(1)
        gray_targets = gray_model(gray).argmax(1)
    reference = gradient_map(model, x, targets)  # the unperturbed explanation both sides are given
    quarter = args.size // 4
    masks = box_masks([[(quarter, quarter, 3 * quarter, 3 * quarter)]] * args.images, (args.size, args.size))
    batch = args.batch_size
    # (work, passes per image it needs, the raw rate that bounds them)
    ours = {
        "road": (lambda: road(gray_model, gray, maps, gray_targets, percentages=args.percentages, seed=0,
                              batch_size=batch), len(args.percentages), "forward"),
        "infidelity": (lambda: infidelity(model, x, maps, targets, n_perturbations=args.samples, seed=0,
                                          batch_size=batch), args.samples, "forward"),
        "max_sensitivity": (lambda: max_sensitivity(gradient_map, model, x, targets, n_samples=args.samples, seed=0,
                                                    maps=reference, batch_size=batch), args.samples, "backward"),
        "deletion lerf": (lambda: deletion(model, x, maps, targets, step=region**2, order="lerf", batch_size=batch),
                          args.regions**2 + 1, "forward"),
        "sparseness": (lambda: sparseness(maps), None, None),
        "complexity": (lambda: complexity(maps), None, None),
        "relevance_mass_accuracy": (lambda: relevance_mass_accuracy(maps, masks), None, None),
        "relevance_rank_accuracy": (lambda: relevance_rank_accuracy(maps, masks), None, None),
    }
    only = tuple(name for name in args.only.split(",") if name)
    ours = {name: work for name, work in ours.items() if not only or name.startswith(only)}
    if device.type == "cpu" and not args.wall:
        bench_explainers.CLOCK = time.process_time  # as `timed` here: this process's CPU time
    if args.chunks:
        return chunk_rates(model, x, device)
    probe = x[:1].expand(batch or chunk_size(x, 64), -1, -1, -1).contiguous()
    rates = raw_rates(model, probe, None, 2)  # also the warm-up: neither side pays for first-call setup
    raw = rates["forward"]
    camstudy = {}
    for name, (fn, _, _) in ours.items():
        camstudy[name] = timed(fn, device, args.wall)
        print(f"camstudy {name}: {camstudy[name]:.2f} s", flush=True)
    quantus = quantus_rows(model, gray_model, x, gray, maps, reference, targets, masks, args, device, set(ours))
    print(f"{args.model} {args.size}x{args.size} on {device}, {args.images} images, {args.samples} perturbations, "
          f"ROAD at {len(args.percentages)} percentages (one channel), deletion lerf {args.regions}x{args.regions} "
          f"regions; raw forward {raw:.1f}, forward+backward {rates['backward']:.1f} images/s")
    print(f"{'metric':26s} {'camstudy img/s':>15s} {'ratio to limit':>15s} {'Quantus img/s':>14s} {'speed-up':>9s}")
    rows = []
    for name, seconds in camstudy.items():
        _, passes, bound = ours[name]
        limit = None if passes is None else (passes / rates[bound]) / (seconds / args.images)
        theirs = quantus.get(name)
        other = f"{args.images / theirs:14.2f} {theirs / seconds:8.1f}x" if theirs else f"{'-':>14s} {'-':>9s}"
        print(f"{name:26s} {args.images / seconds:15.2f} {'' if limit is None else f'{limit:.3f}':>15s} {other}")
        rows.append({"row": name, "images_per_s": args.images / seconds, "ratio_to_limit": limit,
                     "raw_forward_per_s": raw, "peer_of": None})
        if theirs:
            rows.append({"row": f"Quantus {name}", "images_per_s": args.images / theirs,
                         "ratio_to_limit": None if passes is None else (passes / rates[bound]) / (theirs / args.images),
                         "raw_forward_per_s": raw, "peer_of": name})
    return rows


if __name__ == "__main__":
    main()
