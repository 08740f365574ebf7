"""`camstudy build CONFIG --out STUDY_DIR`: render the stimuli and write the study database."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", type=Path, help="the study config (TOML), e.g. data/sample_study.toml")
    parser.add_argument("--out", required=True, type=Path, help="the study folder to create or update")
    parser.add_argument("--force-new", action="store_true",
                        help="start a new study version even though the current one already has answers")
    parser.add_argument("--device", default=None, help="where the explainers run: cpu, cuda, ... (default: cpu)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args) -> int:
    from study.stimuli.build import ExplainerRenderer, build_study
    from study.protocol.config import load_config

    config = load_config(args.config)
    study_id = build_study(args.config, args.out, force_new=args.force_new, progress=not args.quiet,
                           renderer=ExplainerRenderer(device=args.device, seed=config.seed))
    print(f"study {config.name!r} (version {study_id}) is ready in {args.out}; "
          f"run `camstudy serve {args.out}` to start the survey")
    return 0
