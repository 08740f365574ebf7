"""`camstudy report STUDY_DIR --out DIR`: DIR/index.html, one self-contained page about a study."""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study_dir", metavar="STUDY_DIR", help="study folder (study.toml, study.db, stimuli/)")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for index.html (created if missing)")


def run(args: argparse.Namespace) -> int:
    from study.report import write_report

    print(write_report(args.study_dir, args.out))
    return 0
