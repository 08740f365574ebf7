"""`camstudy demo`: explain, score, build, simulate, export and report on the embedded default."""
from __future__ import annotations

import argparse
import time
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("demo"), help="study folder to create (default: demo)")
    parser.add_argument("--seed", type=int, default=0, help="seed of everything random (default 0)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--serve", action="store_true", help="start the survey for the demo study afterwards")
    parser.add_argument("--port", type=int, default=8501, help="port for --serve (default 8501)")


def run(args) -> int:
    from study.demo import run_demo, settings_note
    from study.scoring.files import CURVES_FILE, CURVES_PLOT, FAITHFULNESS_FILE, TABLE_PLOT

    started = time.perf_counter()
    print(settings_note())
    result = run_demo(args.out, seed=args.seed, device=args.device)
    minutes, seconds = divmod(round(time.perf_counter() - started), 60)
    print(f"""
camstudy demo finished in {minutes}m{seconds:02d}s. Everything is in {result.study_dir}:
  explanations and scores  {result.scores}/  ({FAITHFULNESS_FILE}, {CURVES_FILE}, {CURVES_PLOT}, {TABLE_PLOT}, cache/)
  the study                {result.study_dir}/study.toml, study.db, stimuli/
  exported CSVs            {result.export}/  (responses, participants, faithfulness, summary, tests,
                           correlations, codebook; the participants are simulated, ids SIM-...)
  the report               {result.report}

To run this survey for real participants:
  CAMSTUDY_ADMIN_PASSWORD=choose-one camstudy serve {result.study_dir} --port {args.port}
""")
    if args.serve:
        from study.commands import serve

        serve.run(argparse.Namespace(study_dir=result.study_dir, port=args.port, host="127.0.0.1"))
    return 0
