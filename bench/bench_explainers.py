"""Explainer throughput against the model's raw batched forward (and forward+backward) pass, in one run.

    .venv/bin/python bench/bench_explainers.py                      # CPU, resnet18, 2 images at 224
    .venv/bin/python bench/bench_explainers.py --device cuda --amp bf16 --channels-last --model resnet50 --images 32

DESIGN.md's unit: the limit for a method is (passes it needs per image) / (raw batched throughput of
the model on this device). Each row below names the method, a callable doing the work for all images,
the passes per image it needs, and which raw rate bounds it ("forward", or "backward" for one
forward+backward). Printed per row: images/s, the forward-pass equivalents it spent per image, and the
ratio to its limit (1.0 = at the limit; above 1.0 = fewer passes than the naive count, e.g. Ablation-CAM's
head-only recomputation). Rows for the established libraries run the same work when they are installed.
ResNets are torchvision's with random init (no downloads); efficientnet_lite0 is camstudy's embedded default
with its real ImageNet weights (`study.load_model`, offline). Peers that need hundreds of full passes per
image (pytorch-grad-cam's Score-CAM and Ablation-CAM) can be timed on fewer images (--peer-images) and
their rows report images/s for the images they ran on.
"""
from __future__ import annotations

import argparse
import contextlib
import time
from typing import Callable, NamedTuple

import torch
import torchvision

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
CLOCK = time.perf_counter  # main() switches to process CPU time with --cpu-time


class Row(NamedTuple):
    name: str
    run: Callable[[], object]  # does the work for every image of the run (or for `images` of them)
    passes: float | None  # passes per image the method needs (its limit); None: no limit to compare with
    baseline: str = "forward"  # "forward" or "backward" (one forward+backward per pass)
    peer_of: str | None = None  # for a peer's row: the name of our row doing the same work
    images: int | None = None  # images `run` covers when fewer than the run's (slow peers)


class Subject(NamedTuple):
    """A benchmarked model and where its explainers look: the CAM layer (its name for camstudy, the module
    for the peers), the layer's channels, and the last convolution (Ablation-CAM's fx split)."""

    model: torch.nn.Module
    layer_name: str
    layer: torch.nn.Module
    channels: int
    last_conv: str


MODELS = ("resnet18", "resnet50", "efficientnet_lite0")


def load_subject(name: str, device: torch.device) -> Subject:
    """A torchvision ResNet with random weights, or the embedded EfficientNet-Lite0 with its real ones."""
    if name == "efficientnet_lite0":
        from study import load_model

        model = load_model(name).to(device).eval()
        net = model.network
        return Subject(model, "network._head_act", net._head_act, net._conv_head.out_channels, "network._conv_head")
    model = getattr(torchvision.models, name)(weights=None).eval().to(device)
    block = model.layer4[-1]
    last_conv = f"layer4.{len(model.layer4) - 1}.{'conv3' if hasattr(block, 'conv3') else 'conv2'}"
    return Subject(model, "layer4", model.layer4, model.fc.in_features, last_conv)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, repeats: int = 1, warmup: bool = True) -> float:
    """Seconds of the fastest of `repeats` calls, after one warm-up call (cudnn autotuning, allocator, lazy
    imports) unless `warmup` is False. The fastest, not the mean: on a shared machine the other load only
    ever adds time."""
    if warmup:
        fn()
    best = float("inf")
    for _ in range(repeats):
        synchronize(device)
        start = CLOCK()
        fn()
        synchronize(device)
        best = min(best, CLOCK() - start)
    return best


def autocast(device: torch.device, amp: str | None):
    return torch.autocast(device.type, dtype=AMP_DTYPES[amp]) if amp else contextlib.nullcontext()


def raw_rates(model, batch: torch.Tensor, amp: str | None, repeats: int) -> dict[str, float]:
    """Images per second of plain batched inference, and of one forward+backward (input gradient)."""

    def forward():
        with torch.inference_mode(), autocast(batch.device, amp):
            model(batch)

    def backward():
        with autocast(batch.device, amp):
            x = batch.detach().requires_grad_(True)
            model(x).float().max(1).values.sum().backward()

    n = batch.shape[0]
    return {"forward": n / timed(forward, batch.device, repeats), "backward": n / timed(backward, batch.device, repeats)}


def ours(method: str, model, x, targets, args, **options) -> Callable[[], object]:
    from study.explainers import explain

    return lambda: explain(method, model, x, targets, batch_size=args.batch_size, amp=args.amp,
                           channels_last=args.channels_last, **options)


def gradient_rows(subject: Subject, x, targets, args) -> list[Row]:
    """CAM (bounded by a forward pass), the gradient and guided methods (one forward+backward), and peers."""
    model, layer, at = subject.model, subject.layer, subject.layer_name
    rows = [Row("cam", ours("cam", model, x, targets, args, target_layer=at), 1, "forward")]
    for name in ("gradcam", "gradcam++", "guided_backprop", "guided_gradcam"):
        rows.append(Row(name, ours(name, model, x, targets, args, target_layer=at), 1, "backward"))
    with contextlib.suppress(ImportError):
        import pytorch_grad_cam
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        def grad_cam_lib(cls):
            def run():
                cam = cls(model=model, target_layers=[layer])
                try:
                    for xb, tb in zip(x.split(args.batch_size), targets.split(args.batch_size)):
                        cam(xb, [ClassifierOutputTarget(c) for c in tb.tolist()])
                finally:
                    cam.activations_and_grads.release()
            return run

        rows.append(Row("pytorch-grad-cam GradCAM", grad_cam_lib(pytorch_grad_cam.GradCAM), 1, "backward", "gradcam"))
        rows.append(Row("pytorch-grad-cam GradCAMPlusPlus", grad_cam_lib(pytorch_grad_cam.GradCAMPlusPlus), 1,
                        "backward", "gradcam++"))
    with contextlib.suppress(ImportError):
        from captum.attr import GuidedBackprop, GuidedGradCam, LayerGradCam

        def captum(method):
            return lambda: [method.attribute(xb, target=tb) for xb, tb in zip(x.split(args.batch_size), targets.split(args.batch_size))]

        rows.append(Row("captum LayerGradCam (no upsampling)", captum(LayerGradCam(model, layer)), 1, "backward",
                        "gradcam"))
        rows.append(Row("captum GuidedBackprop", captum(GuidedBackprop(model)), 1, "backward", "guided_backprop"))
        rows.append(Row("captum GuidedGradCam", captum(GuidedGradCam(model, layer)), 1, "backward", "guided_gradcam"))
    return rows


def perturbation_rows(subject: Subject, x, targets, args) -> list[Row]:
    """Score-CAM, Ablation-CAM (closed form, and the fx split at the last conv), RISE, LIME, random, and peers.

    Limits: Score-CAM K+1 passes (K the layer's channels); Ablation-CAM one pass (its ablated copies
    only run the head); RISE n_masks passes whatever the number of classes; LIME num_samples passes.
    The peers run on the first --peer-images images: each needs hundreds of full passes per image.
    """
    model, at, channels, last_conv = subject.model, subject.layer_name, subject.channels, subject.last_conv
    five = torch.cat([targets[:, None], torch.randint(0, 1000, (len(targets), 4), device=x.device)], 1)
    masks, samples = args.rise_masks, args.lime_samples
    rows = [
        Row("scorecam", ours("scorecam", model, x, targets, args, target_layer=at), channels + 1),
        Row(f"ablationcam (closed form, {at})", ours("ablationcam", model, x, targets, args, target_layer=at), 1),
        Row(f"ablationcam (fx split, {last_conv})", ours("ablationcam", model, x, targets, args, target_layer=last_conv), 1),
        Row(f"rise ({masks} masks)", ours("rise", model, x, targets, args, n_masks=masks), masks),
        Row(f"rise ({masks} masks, 5 classes)", ours("rise", model, x, five, args, n_masks=masks), masks),
        Row(f"lime ({samples} samples)", ours("lime", model, x, targets, args, num_samples=samples), samples),
        Row("random", ours("random", model, x, targets, args), None),
    ]
    with contextlib.suppress(ImportError):
        import pytorch_grad_cam
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        few = min(args.peer_images or len(x), len(x))

        def peer(cls):
            def run():
                with cls(model=model, target_layers=[subject.layer]) as cam:
                    cam.batch_size = args.batch_size
                    cam(x[:few], [ClassifierOutputTarget(c) for c in targets[:few].tolist()])
            return run

        rows.append(Row("pytorch-grad-cam ScoreCAM", peer(pytorch_grad_cam.ScoreCAM), channels + 1, "forward",
                        "scorecam", few))
        rows.append(Row("pytorch-grad-cam AblationCAM", peer(pytorch_grad_cam.AblationCAM), 1, "forward",
                        f"ablationcam (closed form, {at})", few))
    return rows


def rows_for(subject: Subject, x, targets, args) -> list[Row]:
    """Every benchmarked method: append a Row per method (ours and the peers doing the same work)."""
    rows: list[Row] = []
    rows += gradient_rows(subject, x, targets, args)
    rows += perturbation_rows(subject, x, targets, args)
    return rows


def main(argv=None) -> list[dict]:
    """Print the table; return its rows (for bench/run_all.py's JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--model", default="resnet18", choices=MODELS)
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--amp", choices=sorted(AMP_DTYPES), default=None)
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats of the raw passes")
    parser.add_argument("--rise-masks", type=int, default=4000)
    parser.add_argument("--lime-samples", type=int, default=1000)
    parser.add_argument("--peer-images", type=int, default=None,
                        help="images for the peers that need hundreds of passes per image (default: all)")
    parser.add_argument("--no-warmup", action="store_true",
                        help="time each row's first call (CPU: no autotuning to wait for; halves the run)")
    parser.add_argument("--remeasure", action="store_true",
                        help="measure the raw rates again right after each row (for machines with other load)")
    parser.add_argument("--cpu-time", action="store_true",
                        help="CPU only: time with this process's CPU time, not wall time, so other processes' "
                             "load does not count (run with OMP_NUM_THREADS=1 so spinning threads do not either)")
    parser.add_argument("--only", default="", help="comma-separated row-name prefixes to run (default: all)")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    if args.cpu_time:
        if device.type != "cpu":
            parser.error("--cpu-time measures CPU work; it cannot time a GPU")
        global CLOCK
        CLOCK = time.process_time
    torch.manual_seed(0)
    subject = load_subject(args.model, device)
    model = subject.model
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    x = torch.randn(args.images, 3, args.size, args.size, device=device)
    targets = torch.randint(0, 1000, (args.images,), device=device)
    batch = torch.randn(args.batch_size, 3, args.size, args.size, device=device)
    if args.channels_last:
        batch = batch.contiguous(memory_format=torch.channels_last)

    rates = raw_rates(model, batch, args.amp, args.repeats)
    print(f"{args.model} {args.size}x{args.size} on {device} amp={args.amp} channels_last={args.channels_last} "
          f"batch={args.batch_size} images={args.images}")
    print(f"raw forward: {rates['forward']:.1f} images/s   raw forward+backward: {rates['backward']:.1f} images/s")
    print(f"{'method':38s} {'images/s':>10s} {'fwd-equiv/img':>14s} {'limit passes':>13s} {'ratio to limit':>15s}"
          f"{'  raw fwd/s' if args.remeasure else ''}")
    only = {name for name in args.only.split(",") if name}
    measured = []
    for row in rows_for(subject, x, targets, args):
        if only and not any(row.name.startswith(prefix) for prefix in only):
            continue
        try:
            seconds = timed(row.run, device, warmup=not args.no_warmup)
        except Exception as err:  # one failing row (a peer's API drift, an unsupported layer) must not hide the rest
            print(f"{row.name:38s} failed ({type(err).__name__}: {str(err)[:120]}); skipped", flush=True)
            continue
        if args.remeasure:  # the limit under the same conditions as the row, on a machine others share
            rates = raw_rates(model, batch, args.amp, args.repeats)
        per_image = seconds / (row.images or args.images)
        equivalents = per_image * rates["forward"]
        limit = "" if row.passes is None else f"{row.passes:g} {row.baseline[:3]}"
        ratio = "" if row.passes is None else f"{row.passes / rates[row.baseline] / per_image:.2f}"
        raw = f"{rates['forward']:11.1f}" if args.remeasure else ""
        print(f"{row.name:38s} {1 / per_image:10.3f} {equivalents:14.1f} {limit:>13s} {ratio:>15s}{raw}", flush=True)
        measured.append({"row": row.name, "images_per_s": 1 / per_image, "ratio_to_limit": float(ratio) if ratio else None,
                         "raw_forward_per_s": rates["forward"], "peer_of": row.peer_of})
    return measured


if __name__ == "__main__":
    main()
