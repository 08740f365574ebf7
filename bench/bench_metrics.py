"""Deletion/insertion throughput against the model's raw batched forward pass, measured in one run.

    .venv/bin/python bench/bench_metrics.py                      # CPU, resnet18, 4 images
    .venv/bin/python bench/bench_metrics.py --device cuda --amp bf16 --channels-last --model resnet50 --images 64

The limit for a causal metric is (forward passes it needs) / (raw forward throughput): both curves
at step 224 on 224x224 need 2n+1 = 449 passes per image, one curve n+1 = 225. The ratio printed
is achieved passes per second over raw passes per second (on the CPU, per second of this
process's CPU time, so that other work on the machine does not skew it). For comparison the same work is done by
a one-image-at-a-time loop (the RISE reference structure: one forward per step) and by Quantus
PixelFlipping when Quantus is installed. ResNets are torchvision's with random init (no downloads); efficientnet_lite0 is the embedded default with
its real weights (offline).
"""
from __future__ import annotations

import argparse
import contextlib
import math
import time

import torch
import torch.nn.functional as F

from bench_explainers import MODELS, load_subject
from metrics import causal_curves, deletion
from metrics.model_calls import AMP_DTYPES


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, wall: bool = False) -> float:
    """Seconds `fn` takes: wall clock on a GPU (or with `wall`); on the CPU this process's CPU time,
    which other processes sharing the cores do not inflate (wall-clock ratios there drift with their
    load) but which counts every thread's time, so parallel work shows as no faster."""
    clock = time.process_time if device.type == "cpu" and not wall else time.perf_counter
    synchronize(device)
    start = clock()
    fn()
    synchronize(device)
    return clock() - start


def raw_forward_rate(model, x_batch, amp, repeats: int) -> float:
    """Forward passes per second of plain batched inference on `x_batch`."""
    context = torch.autocast(x_batch.device.type, dtype=AMP_DTYPES[amp]) if amp else contextlib.nullcontext()

    def run():
        with torch.inference_mode(), context:
            for _ in range(repeats):
                model(x_batch)

    run()  # warm-up (cudnn autotuning, allocator)
    return repeats * x_batch.shape[0] / timed(run, x_batch.device)


def one_image_at_a_time(model, x, maps, targets, step: int) -> torch.Tensor:
    """Deletion (zeros) as the RISE reference code does it: one image, one forward per step."""
    curves = []
    with torch.inference_mode():
        for b in range(x.shape[0]):
            image = x[b : b + 1].clone()
            flat = image.view(1, image.shape[1], -1)
            order = torch.argsort(maps[b].flatten(), descending=True, stable=True)
            n = math.ceil(order.numel() / step)
            scores = [torch.softmax(model(image).float(), 1)[0, targets[b]]]
            for k in range(n):
                flat[..., order[k * step : (k + 1) * step]] = 0
                scores.append(torch.softmax(model(image).float(), 1)[0, targets[b]])
            curves.append(torch.stack(scores))
    return torch.stack(curves)


def quantus_pixel_flipping(model, x, maps, targets, step: int, device) -> float | None:
    """Seconds for Quantus PixelFlipping on the same work, or None if Quantus is missing."""
    try:
        import quantus
    except ImportError:
        print("quantus not installed: skipping Quantus PixelFlipping")
        return None
    metric = quantus.PixelFlipping(
        features_in_step=step, perturb_baseline="black", disable_warnings=True, display_progressbar=False
    )
    arrays = dict(
        x_batch=x.float().contiguous().cpu().numpy(), y_batch=targets.cpu().numpy(),
        a_batch=maps[:, None].cpu().numpy(),
    )
    try:
        return timed(lambda: metric(model=model, device=str(device), **arrays), device)
    except Exception as err:  # a peer's API drift must not hide our own figures
        print(f"Quantus PixelFlipping failed ({type(err).__name__}: {err}); skipped")
        return None


def main(argv=None) -> list[dict]:
    """Print the table; return its rows (for bench/run_all.py's JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18", choices=MODELS)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", default=None, choices=["bf16", "fp16"])
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--naive-images", type=int, default=1, help="images for the one-at-a-time loop")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--step", type=int, default=224)
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    torch.manual_seed(0)
    model = load_subject(args.model, device).model
    x = torch.randn(args.images, 3, args.size, args.size, device=device)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    coarse = torch.rand(args.images, 1, 7, 7, device=device)
    maps = F.interpolate(coarse, size=(args.size, args.size), mode="bilinear", align_corners=False)[:, 0]
    targets = torch.randint(0, 1000, (args.images,), device=device)
    n = math.ceil(args.size**2 / args.step)
    batch = x[:1].expand(args.batch_size, -1, -1, -1).contiguous(
        memory_format=torch.channels_last if args.channels_last else torch.contiguous_format
    )
    repeats = max(2, 4 * args.images // args.batch_size)
    opts = dict(step=args.step, batch_size=args.batch_size, amp=args.amp)

    raw_before = raw_forward_rate(model, batch, args.amp, repeats)
    both_s = timed(lambda: causal_curves(model, x, maps, targets, **opts), device)
    one_s = timed(lambda: deletion(model, x, maps, targets, **opts), device)
    raw = (raw_before + raw_forward_rate(model, batch, args.amp, repeats)) / 2

    print(f"{args.model} {args.size}x{args.size} on {device}, amp={args.amp}, channels_last={args.channels_last}, "
          f"batch {args.batch_size}, step {args.step} (n={n}), {args.images} images")
    clock = "CPU-time" if device.type == "cpu" else "wall-clock"
    print(f"raw forward: {raw:,.1f} passes per {clock} second (before {raw_before:,.1f})")
    rows = [
        ("deletion+insertion (ours)", args.images, 2 * n + 1, both_s),
        ("deletion only (ours)", args.images, n + 1, one_s),
    ]
    naive_images = min(args.naive_images, args.images)
    if naive_images:
        sub = slice(0, naive_images)
        naive_s = timed(lambda: one_image_at_a_time(model, x[sub], maps[sub], targets[sub], args.step), device)
        rows.append(("deletion, one image at a time", naive_images, n + 1, naive_s))
    quantus_s = quantus_pixel_flipping(model, x, maps, targets, args.step, device)
    if quantus_s is not None:
        rows.append(("deletion, Quantus PixelFlipping", args.images, n + 1, quantus_s))
    peers = {"deletion, one image at a time": "deletion only (ours)",
             "deletion, Quantus PixelFlipping": "deletion only (ours)"}
    print(f"{'work':34s} {'images/s':>10s} {'passes/s':>10s} {'ratio to raw':>12s}")
    measured = []
    for name, images, passes, seconds in rows:
        rate = images * passes / seconds
        print(f"{name:34s} {images / seconds:10.3f} {rate:10.1f} {rate / raw:12.3f}")
        measured.append({"row": name, "images_per_s": images / seconds, "ratio_to_limit": rate / raw,
                         "raw_forward_per_s": raw, "peer_of": peers.get(name)})
    return measured


if __name__ == "__main__":
    main()
