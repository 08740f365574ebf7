"""`camstudy release STUDY_DIR ID`: let another browser continue one participant's link.

For a participant whose browser lost its resume credential (cleared cookies, a new device) and who
no longer has the resume code shown at consent: the next browser that opens their link continues
where they stopped, and is bound to the link from then on. Their answers stay as they are.
"""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study_dir", metavar="STUDY_DIR", help="study folder")
    parser.add_argument("external_id", metavar="ID", help="the participant's id from their link (PROLIFIC_PID or pid)")


def run(args) -> int:
    from study.store import erasure
    from study.store.database import open_study

    folder = open_study(args.study_dir)
    if not erasure.release(folder.database, folder.study_id, args.external_id):
        raise LookupError(f"no participant {args.external_id!r} in this study (nothing was released)")
    print(f"released {args.external_id!r}: the next browser that opens their link continues it")
    return 0
