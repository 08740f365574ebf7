"""Explainer throughput against the model's raw batched forward (and forward+backward) pass, in one run.

    .venv/bin/python bench/bench_explainers.py                      # CPU, resnet18, 2 images at 224
    .venv/bin/python bench/bench_explainers.py --device cuda --amp bf16 --channels-last --model resnet50 --images 32
    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_explainers.py --ablation-layers --cpu-time --images 4

DESIGN.md's unit: the limit for a method is (passes it needs per image) / (raw batched throughput of
the model on this device). Each row below names the method, a callable doing the work for all images,
the passes per image it must spend, and which raw rate bounds it ("forward", or "backward" for one
forward+backward). Printed per row: images/s, the forward passes it spent per image, and the ratio to
its limit (1.0 = at the limit, below = slower than the work it must do). A limit counts the work the
method cannot avoid: Score-CAM one pass plus one per non-constant channel map (its masks); Ablation-CAM
one pass plus, for each channel it must copy (none on its per-channel path, the channels that are not
zero everywhere otherwise), what runs on the copy (the layers after the first channel-mixing one on the
rank-1 path, the whole tail on the split), measured here on the un-ablated images; RISE and LIME their
masks and samples. A row that can read above 1 says why (Grad-CAM's backward stops at the target layer;
the limit's goes down to the input and the weights). Rows for the established libraries run the same
work when they are installed. ResNets are torchvision's with random init (no downloads); efficientnet_lite0
is camstudy's embedded default with its real ImageNet weights (`study.load_model`, offline). Peers that
need hundreds of full passes per image (pytorch-grad-cam's Score-CAM and Ablation-CAM) can be timed on
fewer images (--peer-images) and their rows report images/s for the images they ran on.

`--ablation-layers` instead times Ablation-CAM at the last block's layers of ResNet-18/50 and
EfficientNet-Lite0 (the block's output, its last convolution and norm, the head convolution's input and
output), as forward passes per image: the CPU time of `explain("ablationcam", ...)` over that of one
plain batched forward of the same images, in the same process; today's code (`--baseline-rev`, run from
git) and the current one side by side, with the path taken, its limit, and each map's largest difference
from the definition (every ablated copy through the whole cut model, in float64).
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Callable, NamedTuple
from unittest import mock

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
    note: str = ""  # why the row may read above 1 of its limit


class Subject(NamedTuple):
    """A benchmarked model and where its explainers look: the CAM layer (its name for camstudy, the module
    for the peers) and the last convolution (Ablation-CAM's second row)."""

    model: torch.nn.Module
    layer_name: str
    layer: torch.nn.Module
    last_conv: str


MODELS = ("resnet18", "resnet50", "efficientnet_lite0")
TO_THE_LAYER = "its backward stops at the target layer; the limit's runs to the input and the weights"
# Ablation-CAM's layers for --ablation-layers: the last block's output (for ResNets, layer4's), its last
# convolution and norm; EfficientNet-Lite0's default layer and its head convolution's output and input.
ABLATION_LAYERS = {
    "resnet18": ("layer4", "layer4.1.conv2", "layer4.1.bn2"),
    "resnet50": ("layer4", "layer4.2.conv3", "layer4.2.bn3"),
    "efficientnet_lite0": ("network._head_act", "network._conv_head", "network._blocks.15",
                           "network._blocks.15._project_conv", "network._blocks.15._bn2"),
}
BASELINE_REV = "db8e1ea"  # the last commit before Ablation-CAM followed one channel through the tail


def load_subject(name: str, device: torch.device) -> Subject:
    """A torchvision ResNet with random weights, or the embedded EfficientNet-Lite0 with its real ones."""
    if name == "efficientnet_lite0":
        from study import load_model

        model = load_model(name).to(device).eval()
        net = model.network
        return Subject(model, "network._head_act", net._head_act, "network._conv_head")
    model = getattr(torchvision.models, name)(weights=None).eval().to(device)
    block = model.layer4[-1]
    last_conv = f"layer4.{len(model.layer4) - 1}.{'conv3' if hasattr(block, 'conv3') else 'conv2'}"
    return Subject(model, "layer4", model.layer4, last_conv)


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


def scorecam_limit(model, x, layer: str) -> float:
    """Passes per image Score-CAM must spend: one for the activations, one per mask, i.e. per channel map
    that is not constant (a constant one masks nothing and costs no pass: see scorecam.py)."""
    from study.explainers.core import capture
    from study.explainers.reshape import FeatureLayer

    with torch.inference_mode(), capture(FeatureLayer(model.get_submodule(layer), layer), x.shape[-2:]) as store:
        model(x)
    flat = store.activations.flatten(2)
    return 1 + float((flat.amax(2) > flat.amin(2)).sum()) / len(x)


def ablation_limit(model, x, layer: str, amp: str | None = None) -> tuple[str, float]:
    """(path, passes per image) Ablation-CAM must spend at `layer`: one forward pass, plus, per channel it
    must copy (those not zero everywhere; none on the per-channel path), one run of what the copies run (the
    rank-1 path's suffix, the split's whole tail), timed here on the un-ablated images."""
    from study.explainers import ablation
    from study.explainers.reshape import FeatureLayer

    split = ablation.split_at(model, model.get_submodule(layer))
    if split is None:
        return "not traced", 1.0
    with torch.no_grad():
        tail = ablation.probe(split, FeatureLayer(model.get_submodule(layer), layer), x)
        if tail is None or tail.path == "per-channel":
            return "not traced" if tail is None else tail.path, 1.0
        suffix = tail.suffix()
        values = [tail.env[n] for n in suffix.inputs]
        # clones: the suffix may write its inputs in place
        seconds = timed(lambda: suffix.module(*(v.clone() for v in values)), x.device, repeats=3)
        with autocast(x.device, amp):  # the front runs under amp, the copies in float32 (see ablation_tail.py)
            forward = timed(lambda: model(x), x.device, repeats=3)
    return tail.path, 1 + len(tail.pairs) / len(x) * seconds / forward


def gradient_rows(subject: Subject, x, targets, args) -> list[Row]:
    """CAM (bounded by a forward pass), the gradient and guided methods (one forward+backward), and peers."""
    model, layer, at = subject.model, subject.layer, subject.layer_name
    rows = [Row("cam", ours("cam", model, x, targets, args, target_layer=at), 1, "forward")]
    for name in ("gradcam", "gradcam++", "guided_backprop", "guided_gradcam"):
        note = "" if name.startswith("guided") else TO_THE_LAYER
        rows.append(Row(name, ours(name, model, x, targets, args, target_layer=at), 1, "backward", note=note))
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
                        "gradcam", note=TO_THE_LAYER))
        rows.append(Row("captum GuidedBackprop", captum(GuidedBackprop(model)), 1, "backward", "guided_backprop"))
        rows.append(Row("captum GuidedGradCam", captum(GuidedGradCam(model, layer)), 1, "backward", "guided_gradcam"))
    return rows


def perturbation_rows(subject: Subject, x, targets, args) -> list[Row]:
    """Score-CAM, Ablation-CAM (at the default layer and at the last conv), RISE, LIME, random, and peers.

    Limits: Score-CAM 1 + its masks (the non-constant channel maps); Ablation-CAM `ablation_limit` (1 on the
    per-channel path); RISE n_masks passes whatever the number of classes; LIME num_samples passes.
    The peers run on the first --peer-images images: each needs hundreds of full passes per image.
    """
    model, at, last_conv = subject.model, subject.layer_name, subject.last_conv
    five = torch.cat([targets[:, None], torch.randint(0, 1000, (len(targets), 4), device=x.device)], 1)
    masks, samples = args.rise_masks, args.lime_samples
    paths = {layer: ablation_limit(model, x, layer, args.amp) for layer in (at, last_conv)}
    rows = [Row("scorecam", ours("scorecam", model, x, targets, args, target_layer=at), scorecam_limit(model, x, at))]
    rows += [Row(f"ablationcam ({path}, {layer})", ours("ablationcam", model, x, targets, args, target_layer=layer),
                 limit) for layer, (path, limit) in paths.items()]
    rows += [
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

        rows.append(Row("pytorch-grad-cam ScoreCAM", peer(pytorch_grad_cam.ScoreCAM), rows[0].passes, "forward",
                        "scorecam", few))
        path, limit = paths[at]
        rows.append(Row("pytorch-grad-cam AblationCAM", peer(pytorch_grad_cam.AblationCAM), limit, "forward",
                        f"ablationcam ({path}, {at})", few))
    return rows


def rows_for(subject: Subject, x, targets, args) -> list[Row]:
    """Every benchmarked method: append a Row per method (ours and the peers doing the same work)."""
    rows: list[Row] = []
    rows += gradient_rows(subject, x, targets, args)
    rows += perturbation_rows(subject, x, targets, args)
    return rows


def baseline_ablationcam(rev: str):
    """The `ablationcam` function of git revision `rev` (study/explainers/ablation.py run from `git show`,
    not registered), or None when git, the revision or the modules it imports are missing."""
    from study.explainers import core

    name = f"ablation_at_{rev}"
    try:
        source = subprocess.run(["git", "show", f"{rev}:study/explainers/ablation.py"], check=True, text=True,
                                capture_output=True, cwd=Path(__file__).resolve().parent).stdout
        module = sys.modules[name] = types.ModuleType(name)  # dataclasses look their module up
        with mock.patch.object(core, "register", lambda *args, **kwargs: lambda fn: fn):
            exec(compile(source, f"{rev}:study/explainers/ablation.py", "exec"), module.__dict__)
    except (OSError, subprocess.CalledProcessError, ImportError) as err:
        print(f"today's figures skipped: {rev}'s ablation.py does not load ({err})")
        return None
    return module.ablationcam


@contextlib.contextmanager
def registered(method: str, fn):
    """`explain(method, ...)` runs `fn` for a while (today's code in the same process as the current one)."""
    from study.explainers import METHODS

    entry = METHODS[method]
    METHODS[method] = dataclasses.replace(entry, fn=fn)
    try:
        yield
    finally:
        METHODS[method] = entry


def split_maps(model, x, targets, layer: str) -> torch.Tensor:
    """Ablation-CAM's maps [B,H,W] as explain() returns them, by the definition: every ablated copy through
    the whole cut model (the split), in the model's and x's precision."""
    from study.explainers import ablation, min_max
    from study.explainers.core import upsample
    from study.explainers.reshape import FeatureLayer

    module = model.get_submodule(layer)
    raw = ablation.ablate(model, x, targets[:, None], FeatureLayer(module, layer), 8, shortcuts=False).maps
    return min_max(upsample(raw, x.shape[-2:]))[:, 0]


def photos(model, n: int, size: int, device) -> torch.Tensor:
    """n real photos (scikit-image's cat, coffee, rocket and astronaut, cycled) as the model takes them: its
    own preprocessing, else size x size with ImageNet's mean and std. On noise a trained model's class maps
    at a late layer can be blank, and blank maps agree whatever computed them."""
    from skimage import data

    arrays = [data.chelsea(), data.coffee(), data.rocket(), data.astronaut()]
    arrays = [arrays[i % len(arrays)] for i in range(n)]
    if hasattr(model, "preprocess"):
        return model.preprocess(arrays).to(device)
    x = torch.cat([torch.nn.functional.interpolate(torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255,
                                                   size=(size, size), mode="bilinear", antialias=True)
                   for a in arrays])
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    return ((x - mean[:, None, None]) / std[:, None, None]).to(device)


def ablation_layer_rows(args) -> list[dict]:
    """Ablation-CAM at the last block's layers (ABLATION_LAYERS): forward passes per image today and now,
    side by side, the path taken, its limit and the maps' largest difference from the definition in float64
    (split32: the definition itself in float32, for the rounding any float32 computation of it shows)."""
    from study.explainers import explain

    device = torch.device(args.device)
    old = baseline_ablationcam(args.baseline_rev)
    print(f"Ablation-CAM, {args.images} images at {args.size}x{args.size} on {device}: forward passes per image "
          f"(explain / one batched forward), today = {args.baseline_rev}")
    print(f"{'model':18s} {'layer':32s} {'path':12s} {'today':>7s} {'now':>7s} {'limit':>7s} {'ratio':>6s} "
          f"{'max|d| today':>13s} {'max|d| now':>11s} {'split32':>8s}")
    measured = []
    for name in args.models.split(","):
        torch.manual_seed(0)  # the ResNets' random weights, the same in every run
        model = load_subject(name, device).model
        x = photos(model, args.images, args.size, device)
        with torch.no_grad():
            targets = model(x).argmax(1)
        for layer in ABLATION_LAYERS[name]:
            maps = {}

            def run():
                maps["last"] = explain("ablationcam", model, x, targets, target_layer=layer)

            def forward():
                with torch.inference_mode():
                    model(x)

            path, limit = ablation_limit(model, x, layer)
            reference = split_maps(copy.deepcopy(model).double(), x.double(), targets, layer)
            rounding = float((split_maps(model, x, targets, layer) - reference).abs().max())
            seconds, once = timed(run, device, args.repeats), timed(forward, device, args.repeats)
            now, diff_now = seconds / once, float((maps["last"] - reference).abs().max())
            today = diff_today = None
            if old is not None:
                with registered("ablationcam", old):
                    today = timed(run, device) / once
                diff_today = float((maps["last"] - reference).abs().max())
            shown = [f"{v:7.2f}" if v is not None else f"{'-':>7s}" for v in (today, now, limit)]
            blank = " blank" if reference.flatten(1).amax(1).eq(0).any() else ""  # any two maps agree: say so
            differences = [f"{v:.1e}" if v is not None else "-" for v in (diff_today, diff_now, rounding)]
            print(f"{name:18s} {layer:32s} {path:12s} {' '.join(shown)} {limit / now:6.2f} {differences[0]:>13s} "
                  f"{differences[1]:>11s} {differences[2]:>8s}{blank}", flush=True)
            measured.append({"row": f"ablationcam {layer} ({path})", "model": name, "layer": layer, "path": path,
                             "images_per_s": args.images / seconds, "passes_per_image": now, "limit": limit,
                             "ratio_to_limit": limit / now, "max_diff": diff_now, "passes_today": today,
                             "max_diff_today": diff_today, "max_diff_split32": rounding, "peer_of": None})
    return measured


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
                        help="measure the raw rates again after each row and keep the best seen (machines with "
                             "other load)")
    parser.add_argument("--cpu-time", action="store_true",
                        help="CPU only: time with this process's CPU time, not wall time, so other processes' "
                             "load does not count (run with OMP_NUM_THREADS=1 so spinning threads do not either)")
    parser.add_argument("--only", default="", help="comma-separated row-name prefixes to run (default: all)")
    parser.add_argument("--ablation-layers", action="store_true",
                        help="time Ablation-CAM at the last block's layers of --models instead (module docstring)")
    parser.add_argument("--models", default=",".join(MODELS), help="for --ablation-layers: comma-separated models")
    parser.add_argument("--baseline-rev", default=BASELINE_REV,
                        help="for --ablation-layers: the git revision whose Ablation-CAM is today's")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    if args.cpu_time:
        if device.type != "cpu":
            parser.error("--cpu-time measures CPU work; it cannot time a GPU")
        global CLOCK
        CLOCK = time.process_time
    if args.ablation_layers:
        return ablation_layer_rows(args)
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
    print(f"{'method':38s} {'images/s':>10s} {'fwd passes/img':>14s} {'limit passes':>13s} {'ratio to limit':>15s}"
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
        if args.remeasure:  # on a machine others share, their load only slows: the best rates seen so far
            rates = {k: max(v, rates[k]) for k, v in raw_rates(model, batch, args.amp, args.repeats).items()}
        per_image = seconds / (row.images or args.images)
        equivalents = per_image * rates["forward"]
        limit = "" if row.passes is None else f"{row.passes:.4g} {row.baseline[:3]}"
        ratio = "" if row.passes is None else f"{row.passes / rates[row.baseline] / per_image:.2f}"
        raw = f"{rates['forward']:11.1f}" if args.remeasure else ""
        note = f"  ({row.note})" if row.note else ""
        print(f"{row.name:38s} {1 / per_image:10.3f} {equivalents:14.1f} {limit:>13s} {ratio:>15s}{raw}{note}",
              flush=True)
        measured.append({"row": row.name, "images_per_s": 1 / per_image, "ratio_to_limit": float(ratio) if ratio else None,
                         "passes_per_image": equivalents, "raw_forward_per_s": rates["forward"],
                         "peer_of": row.peer_of, "note": row.note})
    return measured


if __name__ == "__main__":
    main()
