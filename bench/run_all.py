"""The whole benchmark in one call: every explainer and metric row, ours and the installed peers', per
model and precision, printed as one table and written as JSON.

    .venv/bin/python bench/run_all.py --device cuda --json bench.json    # ResNet-50, fp32 and bf16+channels_last
    .venv/bin/python bench/run_all.py --device cpu                        # a reduced set, minutes on a laptop

A thin orchestrator: each configuration calls the `main(argv)` of bench_explainers.py and
bench_metrics.py (which own the rows, the peers and the timing: synchronised, autocast, channels_last)
and collects the rows they return, so rows added there appear here without a change.
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

PRECISIONS = {"fp32": [], "bf16+channels_last": ["--amp", "bf16", "--channels-last"]}
# Per device: models, precisions, and the arguments that size each bench's work.
PLANS = {
    "cuda": {
        "models": ["resnet50"],
        "precisions": ["fp32", "bf16+channels_last"],
        "explainers": ["--images", "16", "--batch-size", "64"],
        "metrics": ["--images", "64", "--batch-size", "256", "--naive-images", "1"],
    },
    "cpu": {
        "models": ["resnet18"],
        "precisions": ["fp32"],
        "explainers": ["--images", "2", "--size", "112", "--batch-size", "32", "--repeats", "1",
                       "--rise-masks", "100", "--lime-samples", "50"],
        "metrics": ["--images", "2", "--size", "112", "--batch-size", "64", "--naive-images", "1"],
    },
}
BENCHES = {"explainers": bench_explainers.main, "metrics": bench_metrics.main}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", type=Path, default=Path("bench_results.json"), help="where to write the rows")
    args = parser.parse_args(argv)
    kind = torch.device(args.device).type
    if kind not in PLANS:
        parser.error(f"--device must be cpu or cuda[:N]; got {args.device}")
    if kind == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but torch sees no GPU")
    plan = PLANS[kind]
    results, start = [], time.perf_counter()
    for model in plan["models"]:
        for precision in plan["precisions"]:
            for bench, run in BENCHES.items():
                argv_bench = ["--device", args.device, "--model", model, *PRECISIONS[precision], *plan[bench]]
                print(f"\n== {bench}: {model} {precision} ({' '.join(argv_bench)})", flush=True)
                for row in run(argv_bench):
                    results.append({"bench": bench, "model": model, "precision": precision, **row})
    seconds = time.perf_counter() - start
    print(f"\n{'bench':10s} {'model':9s} {'precision':18s} {'row':44s} {'images/s':>10s} {'ratio':>7s}")
    for r in results:
        ratio = "" if r["ratio_to_limit"] is None else f"{r['ratio_to_limit']:.2f}"
        print(f"{r['bench']:10s} {r['model']:9s} {r['precision']:18s} {r['row'][:44]:44s} "
              f"{r['images_per_s']:10.3f} {ratio:>7s}")
    device_name = torch.cuda.get_device_name(args.device) if kind == "cuda" else platform.processor() or "cpu"
    args.json.write_text(json.dumps({"device": args.device, "device_name": device_name, "torch": torch.__version__,
                                     "seconds": seconds, "rows": results}, indent=1))
    print(f"\n{len(results)} rows in {seconds:.0f} s; wrote {args.json}")


if __name__ == "__main__":
    main()
