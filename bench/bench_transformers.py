"""Layer explainers on a vision transformer, against the raw forward pass and pytorch-grad-cam's
reshape_transform path, in one run.

    .venv/bin/python bench/bench_transformers.py                     # CPU, a small ViT (6 blocks, dim 192), 2 images at 224
    OMP_NUM_THREADS=1 TQDM_DISABLE=1 .venv/bin/python bench/bench_transformers.py --cpu-time   # on a shared machine
    .venv/bin/python bench/bench_transformers.py --device cuda --images 32 --depth 12 --dim 768 --heads 12

The model is torchvision's VisionTransformer with random weights (no downloads), explained at camstudy's
default layer, the last block's ln_1. Limits as in bench_explainers.py: Grad-CAM one forward+backward;
Ablation-CAM 1 + D/depth passes per image, since its D ablated copies run only the last block and the
head (pytorch-grad-cam reruns the whole model for every chunk of copies: 1 + D); Score-CAM D + 1 passes. Printed per
row: images/s, forward-pass equivalents spent per image, and the ratio to the limit.
"""
from __future__ import annotations

import argparse
import contextlib
import time

import torch
from torchvision.models import VisionTransformer

import bench_explainers
from bench_explainers import Row, raw_rates, timed


def vit_tokens_as_map(tokens: torch.Tensor) -> torch.Tensor:
    """pytorch-grad-cam's reshape_transform for a ViT: drop the class token, [B,D,h,w]."""
    b, n, d = tokens.shape
    side = int((n - 1) ** 0.5)
    return tokens[:, 1:].reshape(b, side, side, d).permute(0, 3, 1, 2)


def rows_for(model, x, targets, args) -> list[Row]:
    from study.explainers import explain

    def ours(method):
        return lambda: explain(method, model, x, targets, batch_size=args.batch_size)

    dim = model.hidden_dim
    rows = [Row("gradcam", ours("gradcam"), 1, "backward"), Row("gradcam++", ours("gradcam++"), 1, "backward"),
            Row("ablationcam", ours("ablationcam"), 1 + dim / args.depth), Row("scorecam", ours("scorecam"), dim + 1)]
    with contextlib.suppress(ImportError):
        import pytorch_grad_cam
        from pytorch_grad_cam.ablation_layer import AblationLayerVit
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        layer = model.encoder.layers[-1].ln_1

        def peer(cls, **extra):
            def run():
                cam = cls(model=model, target_layers=[layer], reshape_transform=vit_tokens_as_map, **extra)
                cam.batch_size = args.batch_size
                try:
                    for xb, tb in zip(x.split(args.batch_size), targets.split(args.batch_size)):
                        cam(xb, [ClassifierOutputTarget(int(c)) for c in tb])
                finally:
                    cam.activations_and_grads.release()
            return run

        rows.append(Row("pytorch-grad-cam GradCAM", peer(pytorch_grad_cam.GradCAM), 1, "backward"))
        rows.append(Row("pytorch-grad-cam AblationCAM", peer(pytorch_grad_cam.AblationCAM,
                                                              ablation_layer=AblationLayerVit()), 1 + dim / args.depth))
        rows.append(Row("pytorch-grad-cam ScoreCAM", peer(pytorch_grad_cam.ScoreCAM), dim + 1))
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--patch", type=int, default=16)
    parser.add_argument("--depth", type=int, default=6)
    parser.add_argument("--dim", type=int, default=192)
    parser.add_argument("--heads", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats of the raw passes")
    parser.add_argument("--cpu-time", action="store_true",
                        help="time with this process's CPU time (run with OMP_NUM_THREADS=1), as bench_explainers.py")
    parser.add_argument("--only", default="", help="comma-separated row-name prefixes to run (default: all)")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    if args.cpu_time:
        bench_explainers.CLOCK = time.process_time
    torch.manual_seed(0)
    model = VisionTransformer(image_size=args.size, patch_size=args.patch, num_layers=args.depth,
                              num_heads=args.heads, hidden_dim=args.dim, mlp_dim=4 * args.dim).eval().to(device)
    torch.nn.init.normal_(model.heads.head.weight, std=0.02)  # torchvision zero-initialises the head
    x = torch.randn(args.images, 3, args.size, args.size, device=device)
    targets = torch.randint(0, 1000, (args.images,), device=device)
    rates = raw_rates(model, torch.randn(args.batch_size, 3, args.size, args.size, device=device), None, args.repeats)
    print(f"ViT depth={args.depth} dim={args.dim} patch={args.patch} {args.size}x{args.size} on {device} "
          f"batch={args.batch_size} images={args.images}")
    print(f"raw forward: {rates['forward']:.1f} images/s   raw forward+backward: {rates['backward']:.1f} images/s")
    print(f"{'method':34s} {'images/s':>10s} {'fwd-equiv/img':>14s} {'limit passes':>13s} {'ratio to limit':>15s}")
    only = {name for name in args.only.split(",") if name}
    for row in rows_for(model, x, targets, args):
        if only and not any(row.name.startswith(prefix) for prefix in only):
            continue
        per_image = timed(row.run, device) / args.images
        limit = f"{row.passes:g} {row.baseline[:3]}"
        ratio = row.passes / rates[row.baseline] / per_image
        print(f"{row.name:34s} {1 / per_image:10.3f} {per_image * rates['forward']:14.1f} {limit:>13s} {ratio:15.2f}",
              flush=True)


if __name__ == "__main__":
    main()
