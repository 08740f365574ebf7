"""`camstudy export STUDY_DIR --out DIR`: the tidy CSVs and codebook of a study."""
from __future__ import annotations

import argparse

from study.commands._common import add_study_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_study_arguments(parser, out_help="folder for the CSV files (created if missing)")
    parser.add_argument("--include-pilot", action="store_true",
                        help="analyse pilot participants too (they are flagged excluded by default)")


def run(args: argparse.Namespace) -> int:
    from study.results.export import write_exports

    for path in write_exports(args.study_dir, args.out, scores_dir=args.scores, include_pilot=args.include_pilot):
        print(path)
    return 0
