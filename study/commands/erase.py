"""`camstudy erase STUDY_DIR ID`: delete everything about one participant, on their request."""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study_dir", metavar="STUDY_DIR", help="study folder")
    parser.add_argument("external_id", metavar="ID", help="the participant's id from their link (PROLIFIC_PID or pid)")


def run(args) -> int:
    from study.store import erasure
    from study.store.database import open_study
    from study.store.identity import link_secret

    folder = open_study(args.study_dir)
    if not erasure.erase(folder.database, folder.study_id, args.external_id, "command line",
                         secret=link_secret(folder.path)):
        raise LookupError(f"no participant {args.external_id!r} in this study (nothing was erased)")
    print(f"erased every answer and record of participant {args.external_id!r} from the database; the audit log "
          "notes that an erasure happened, not whose, and a keyed hash of the id keeps the link from starting again. CSV files exported before (camstudy export, the admin "
          "page's STUDY/export/) still hold their rows: export again and delete the old copies")
    return 0
