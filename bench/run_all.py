"""The whole benchmark in one call: every explainer and metric row, ours and the installed peers', per
model and precision, printed as one table and written as JSON.

    .venv/bin/python bench/run_all.py --device cuda --json bench.json    # ResNet-50 and EfficientNet-Lite0, fp32 and bf16+channels_last
    .venv/bin/python bench/run_all.py --device cpu                        # a reduced set, under 10 minutes on 2 cores

A thin orchestrator: each section calls the `main(argv)` of bench_explainers.py, bench_metrics.py,
bench_metrics_r2.py or bench_transformers.py (which own the rows, the peers and the timing: synchronised,
autocast, channels_last) and collects the rows they return, so rows added there appear here without a
change. The JSON is rewritten after every section, so a stopped run keeps what it measured. The table
gives each row's images/s, the forward passes it spent per image (where its bench counts them), its ratio
to its limit (the passes it must spend over the model's raw rate, measured in the same section) and, for
a peer's row, our speed-up over it (our row's images/s over the peer's). The `ablation_layers` section
(bench_explainers.py --ablation-layers) times Ablation-CAM at the last block's layers of every model,
today's code beside the current one, at 224x224 on the CPU too.

On the CPU the set is reduced (one or two images at 96x96, fewer masks, samples and steps; the peers
that need hundreds of full passes per image on one image, without a warm-up call; Ablation-CAM's layers
on four images at 224x224, as they are quoted), torch runs one thread and every section times this
process's CPU time, so that the other load of a shared machine
neither skews the ratios nor stretches the run much. Absolute figures there are not promises; the
ratios within a section are the result.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_explainers  # noqa: E402
import bench_metrics  # noqa: E402
import bench_metrics_r2  # noqa: E402
import bench_transformers  # noqa: E402

PRECISIONS = {"fp32": [], "bf16+channels_last": ["--amp", "bf16", "--channels-last"]}
BENCHES = {"explainers": bench_explainers.main, "ablation_layers": bench_explainers.main,
           "metrics": bench_metrics.main, "metrics_r2": bench_metrics_r2.main, "transformers": bench_transformers.main}
# Per device: models, precisions, and per bench the arguments that size its work. Benches that take no
# --model or --amp (metrics_r2: fp32 only; transformers: their own ViT) run once per model or once at all.
PLANS = {
    "cuda": {
        "models": ["resnet50", "efficientnet_lite0"],
        "precisions": ["fp32", "bf16+channels_last"],
        "explainers": ["--images", "16", "--batch-size", "64"],
        "ablation_layers": ["--images", "16"],
        "metrics": ["--images", "64", "--batch-size", "256", "--naive-images", "1"],
        "metrics_r2": ["--images", "16", "--batch-size", "256"],
        "transformers": ["--images", "32", "--depth", "12", "--dim", "768", "--heads", "12"],
    },
    "cpu": {
        "models": ["resnet18", "efficientnet_lite0"],
        "precisions": ["fp32"],
        "explainers": ["--images", "2", "--size", "96", "--batch-size", "32", "--repeats", "3", "--cpu-time",
                       "--remeasure", "--no-warmup", "--rise-masks", "64", "--lime-samples", "32",
                       "--peer-images", "1"],
        "ablation_layers": ["--images", "4", "--size", "224", "--repeats", "2", "--cpu-time"],
        "metrics": ["--images", "2", "--size", "96", "--batch-size", "64", "--naive-images", "1", "--step", "576"],
        "metrics_r2": ["--images", "2", "--size", "96", "--samples", "4", "--percentages", "3", "--regions", "6"],
        "transformers": ["--images", "1", "--size", "96", "--depth", "4", "--batch-size", "32", "--repeats", "1",
                         "--cpu-time", "--no-warmup"],
    },
}


def sections(plan: dict, device: str):
    """(bench, model, precision, argv) of every section of the plan, in order."""
    for model in plan["models"]:
        for precision in plan["precisions"]:
            for bench in ("explainers", "metrics"):
                yield bench, model, precision, ["--device", device, "--model", model, *PRECISIONS[precision],
                                                *plan[bench]]
        yield "metrics_r2", model, "fp32", ["--device", device, "--model", model, *plan["metrics_r2"]]
    yield "ablation_layers", "all", "fp32", ["--device", device, "--ablation-layers", *plan["ablation_layers"]]
    yield "transformers", "vit", "fp32", ["--device", device, *plan["transformers"]]


def table(results: list[dict]) -> None:
    """One line per row; a peer's row also gives our speed-up over it (same bench, model, precision)."""
    ours = {(r["bench"], r["model"], r["precision"], r["row"]): r["images_per_s"] for r in results}
    print(f"\n{'bench':15s} {'model':18s} {'precision':18s} {'row':40s} {'images/s':>10s} {'fwd/img':>8s} "
          f"{'ratio':>7s} {'ours/peer':>9s}")
    for r in results:
        ratio = "" if r["ratio_to_limit"] is None else f"{r['ratio_to_limit']:.2f}"
        passes = "" if r.get("passes_per_image") is None else f"{r['passes_per_image']:.1f}"
        mine = ours.get((r["bench"], r["model"], r["precision"], r.get("peer_of")))
        speedup = f"{mine / r['images_per_s']:.1f}x" if mine else ""
        print(f"{r['bench']:15s} {r['model']:18s} {r['precision']:18s} {r['row'][:40]:40s} "
              f"{r['images_per_s']:10.3f} {passes:>8s} {ratio:>7s} {speedup:>9s}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", type=Path, default=Path("bench_results.json"), help="where to write the rows")
    parser.add_argument("--only", default="", help="comma-separated benches to run (default: all of "
                                                   f"{', '.join(BENCHES)})")
    args = parser.parse_args(argv)
    kind = torch.device(args.device).type
    if kind not in PLANS:
        parser.error(f"--device must be cpu or cuda[:N]; got {args.device}")
    if kind == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but torch sees no GPU")
    if kind == "cpu":
        torch.set_num_threads(1)  # CPU time then counts work, not threads spinning while others hold the cores
    only = {name for name in args.only.split(",") if name}
    plan = PLANS[kind]
    device_name = torch.cuda.get_device_name(args.device) if kind == "cuda" else platform.processor() or "cpu"
    results, start, done = [], time.perf_counter(), []

    def write(complete: bool) -> None:
        args.json.write_text(json.dumps({
            "device": args.device, "device_name": device_name, "torch": torch.__version__,
            "seconds": time.perf_counter() - start, "complete": complete, "sections": done, "rows": results,
        }, indent=1))

    for bench, model, precision, argv_bench in sections(plan, args.device):
        if only and bench not in only:
            continue
        print(f"\n== {bench}: {model} {precision} ({' '.join(argv_bench)})", flush=True)
        began = time.perf_counter()
        try:
            rows = BENCHES[bench](argv_bench)
        except Exception as err:  # one broken section must not lose the others
            print(f"{bench} {model} {precision} failed ({type(err).__name__}: {err})", flush=True)
            rows = []
        for row in rows:
            results.append({"bench": bench, "model": model, "precision": precision, **row})
        done.append({"bench": bench, "model": model, "precision": precision,
                     "seconds": time.perf_counter() - began, "rows": len(rows)})
        write(complete=False)
        print(f"-- {bench} {model} {precision}: {done[-1]['seconds']:.0f} s wall", flush=True)
    table(results)
    write(complete=True)
    print(f"\n{len(results)} rows in {time.perf_counter() - start:.0f} s; wrote {args.json}")

if __name__ == "__main__":
    main()
