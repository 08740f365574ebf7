"""`camstudy report STUDY_DIR --out DIR`: DIR/index.html, one self-contained page about a study."""
from __future__ import annotations

import argparse

from study.commands._common import add_study_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_study_arguments(parser, out_help="folder for index.html (created if missing)")


def run(args: argparse.Namespace) -> int:
    from study.results.report import write_report

    print(write_report(args.study_dir, args.out, scores_dir=args.scores))
    return 0
