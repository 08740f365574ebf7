"""`camstudy links STUDY_DIR --n N [--pilot]`: signed participant links for a lab study
(`signed_links = true`), or pilot links whose participants are marked is_pilot."""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study_dir", metavar="STUDY_DIR", help="study folder (its signing secret is kept there)")
    parser.add_argument("--n", type=int, required=True, help="how many links")
    parser.add_argument("--base-url", default="http://localhost:8501/",
                        help="the survey's address as participants reach it (default http://localhost:8501/)")
    parser.add_argument("--pilot", action="store_true", help="pilot links: who follows them is marked is_pilot")


def run(args) -> int:
    from study.store.identity import signed_links
    from study.store.database import open_study

    folder = open_study(args.study_dir)
    for link in signed_links(folder.path, args.n, args.base_url, pilot=args.pilot):
        print(link)
    return 0
