"""`camstudy export STUDY_DIR --out DIR`: the tidy CSVs and codebook of a study."""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study_dir", metavar="STUDY_DIR", help="study folder (study.toml, study.db, stimuli/)")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for the CSV files (created if missing)")
    parser.add_argument("--scores", metavar="SCORE_DIR", default=None,
                        help="output folder of `camstudy score` holding faithfulness.csv "
                             "(default: the study folder or its scores/ subfolder, if scored)")


def run(args: argparse.Namespace) -> int:
    from study.export import write_exports

    for path in write_exports(args.study_dir, args.out, scores_dir=args.scores):
        print(path)
    return 0
