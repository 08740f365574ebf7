"""`camstudy admin-unlock STUDY_DIR`: lift the admin page's sign-in lockout now.

Failed sign-ins lock the address they came from (and, past a ceiling, everyone) for a few minutes;
a researcher who locked themselves out, or who wants the page open again after an attack from many
addresses, lifts every lockout with this (failures before it no longer count).
"""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study_dir", metavar="STUDY_DIR", help="study folder")


def run(args) -> int:
    from study.store.database import open_study
    from study.survey.admin_login import AdminLogin

    folder = open_study(args.study_dir)
    AdminLogin(folder.database, folder.study_id).unlock()
    print("the admin page's sign-in is open again (earlier failed attempts no longer count)")
    return 0
