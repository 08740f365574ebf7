"""`camstudy links STUDY_DIR --n N`: signed participant links for a lab study (`signed_links = true`)."""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study_dir", metavar="STUDY_DIR", help="study folder (its signing secret is kept there)")
    parser.add_argument("--n", type=int, required=True, help="how many links")
    parser.add_argument("--base-url", default="http://localhost:8501/",
                        help="the survey's address as participants reach it (default http://localhost:8501/)")


def run(args) -> int:
    from study.identity import signed_links
    from study.storage import open_study

    folder = open_study(args.study_dir)
    for link in signed_links(folder.path, args.n, args.base_url):
        print(link)
    return 0
