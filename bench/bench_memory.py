"""Peak memory of `camstudy score` against the number of images: it should not grow with the set.

    .venv/bin/python bench/bench_memory.py                       # 200 and 2,000 generated 64x64 JPEGs
    .venv/bin/python bench/bench_memory.py --sizes 200,2000,20000 --workers 2

Each size is scored in a fresh subprocess (a tiny random ResNet-18 at 64x64, the cheap `random`
method, one deletion/insertion step), which reports its own peak resident set size
(resource.getrusage, ru_maxrss) when it is done; the images are generated once into a temporary
folder and the runs take the first N of them. Printed: images, peak RSS, seconds, and the peak's
ratio to the smallest run's. DataLoader worker processes (--workers) are not counted: they hold one
batch each whatever the set's size.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def write_images(folder: Path, n: int, size: int) -> None:
    """n random size x size JPEGs (smooth noise, so they compress like photos rather than static)."""
    rng = np.random.default_rng(0)
    for i in range(n):
        coarse = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
        Image.fromarray(coarse).resize((size, size), Image.BILINEAR).save(folder / f"img{i:06d}.jpg", quality=90)


def child(args) -> None:
    """Score the first `args.child` images and print this process's peak RSS (KiB on Linux) as JSON."""
    from study import load_model
    from study.images import image_refs
    from study.scoring.scorer import write_scores

    model = load_model(f"resnet18@{args.size}", weights="random")
    start = time.perf_counter()
    summary = write_scores(model, image_refs(str(args.folder))[: args.child], ["random"], args.out,
                           step=args.size * args.size, batch_size=args.batch_size, workers=args.workers,
                           plots=False, progress=False)
    print(json.dumps({"images": summary.images, "seconds": time.perf_counter() - start,
                      "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="200,2000", help="comma-separated numbers of images")
    parser.add_argument("--size", type=int, default=64, help="image and model input side in pixels")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        return child(args)

    sizes = sorted(int(n) for n in args.sizes.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        folder.mkdir()
        write_images(folder, sizes[-1], args.size)
        results = []
        for n in sizes:
            command = [sys.executable, __file__, "--child", str(n), "--folder", str(folder), "--size", str(args.size),
                       "--batch-size", str(args.batch_size), "--workers", str(args.workers),
                       "--out", str(Path(tmp) / f"scores{n}")]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    base = results[0]["peak_kib"]
    print(f"resnet18@{args.size}, method random, batch {args.batch_size}, workers {args.workers}")
    print(f"{'images':>8s} {'peak RSS MiB':>13s} {'seconds':>8s} {'ratio':>6s}")
    for r in results:
        print(f"{r['images']:8d} {r['peak_kib'] / 1024:13.1f} {r['seconds']:8.1f} {r['peak_kib'] / base:6.3f}")


if __name__ == "__main__":
    main()
