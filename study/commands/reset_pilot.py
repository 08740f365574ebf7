"""`camstudy reset-pilot STUDY_DIR`: remove every pilot participant's data before the real launch."""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study_dir", metavar="STUDY_DIR", help="study folder")


def run(args) -> int:
    from study.store import erasure
    from study.store.database import open_study

    folder = open_study(args.study_dir)
    n = erasure.reset_pilot(folder.database, folder.study_id)
    print(f"removed {n} pilot participant{'s' if n != 1 else ''} and their answers")
    return 0
