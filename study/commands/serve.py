"""`camstudy serve STUDY_DIR`: run the survey with Streamlit, set up for participants.

The study is opened once here so that a broken folder or config fails with a one-line error
before a server starts. Then this process becomes the Streamlit server (exec), so signals and
the process id belong to the server itself.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import ui
from study.store.identity import PILOT_ENV
from study.survey.session import SurveySession

APP = Path(ui.__file__).with_name("app.py")

# Participants see a study: no toolbar, menu or tracebacks; nothing phones home.
STREAMLIT_FLAGS = {
    "server.headless": "true",
    "server.fileWatcherType": "none",
    "server.runOnSave": "false",
    "client.toolbarMode": "viewer",
    "client.showErrorDetails": "none",
    "client.showSidebarNavigation": "false",
    "browser.gatherUsageStats": "false",
    "theme.base": "light",
    # Streamlit runs a full gc.collect(2) after every script run by default: two thirds of the
    # server's CPU per answer here (py-spy), for memory Python's own collector frees anyway.
    "runner.postScriptGC": "false",
}


def add_arguments(parser) -> None:
    parser.add_argument("study_dir", type=Path, help="study folder made by `camstudy build`")
    parser.add_argument("--port", type=int, default=8501, help="port (default 8501)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1; 0.0.0.0 for all)")
    parser.add_argument("--pilot", action="store_true",
                        help="a pilot run: everyone who takes part is marked is_pilot (left out of the analysis; "
                             "`camstudy reset-pilot` removes them)")


def command(study_dir: Path, port: int, host: str) -> list[str]:
    flags = [f"--{k}={v}" for k, v in STREAMLIT_FLAGS.items()]
    return [sys.executable, "-m", "streamlit", "run", str(APP), *flags,
            f"--server.port={port}", f"--server.address={host}", "--", "--study", str(study_dir)]


def run(args) -> None:
    study_dir = args.study_dir.resolve()
    if not (study_dir / "study.toml").is_file():
        raise FileNotFoundError(f"{study_dir} is not a study folder (no study.toml); "
                                "make one with `camstudy build`")
    SurveySession(study_dir)  # validates the config and database now, not at the first visitor
    env = dict(os.environ)
    root = str(APP.parent.parent)  # `ui` importable when run from a source tree
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    env[PILOT_ENV] = "1" if args.pilot else ""
    print(f"camstudy serve: http://{host_for_url(args.host)}:{args.port}/  "
          f"(admin page: /admin){'  PILOT RUN: participants are marked is_pilot' if args.pilot else ''}", flush=True)
    cmd = command(study_dir, args.port, args.host)
    os.execve(cmd[0], cmd, env)


def host_for_url(host: str) -> str:
    return "localhost" if host in ("0.0.0.0", "::") else host
