"""`camstudy report STUDY_DIR --out DIR`: DIR/index.html, one self-contained page about a study."""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study_dir", metavar="STUDY_DIR", help="study folder (study.toml, study.db, stimuli/)")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for index.html (created if missing)")
    parser.add_argument("--scores", metavar="SCORE_DIR", default=None,
                        help="output folder of `camstudy score` holding faithfulness.csv "
                             "(default: the study folder or its scores/ subfolder, if scored)")


def run(args: argparse.Namespace) -> int:
    from study.report import write_report

    print(write_report(args.study_dir, args.out, scores_dir=args.scores))
    return 0
