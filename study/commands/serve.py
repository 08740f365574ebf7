"""`camstudy serve STUDY_DIR`: run the survey with Streamlit, set up for participants.

The study is opened once here so that a broken folder or config fails with a one-line error
before a server starts, and its stimuli are published as static files (`study.survey.stimulus_files`).
With one worker this process then becomes the Streamlit server (exec), so signals and the process
id belong to the server itself. With `--workers N` (N > 1) it starts N server processes on ports
PORT .. PORT+N-1, all on the study's one database, and restarts any that dies; a reverse proxy in front
(`camstudy deploy` writes one) gives each participant's websocket to one of them and serves the
stimuli. Several processes need a database server: SQLite takes one writer at a time and its file
would be shared by processes the proxy treats as independent, so N > 1 on SQLite is refused.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import ui
from study.store.identity import PILOT_ENV
from study.survey.session import SurveySession

APP = Path(ui.__file__).with_name("study_server.py")
DEFAULT_TRUSTED_PROXIES = "127.0.0.1,::1"
TRUSTED_PROXIES_ENV = "FORWARDED_ALLOW_IPS"   # read by uvicorn, the web server under Streamlit
STARTUP_S = 20          # a worker that fails sooner did not start (a port in use, say): give up, not loop

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
    parser.add_argument("--port", type=int, default=8501,
                        help="port (default 8501); with --workers N, the first of N consecutive ports")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1; 0.0.0.0 for all)")
    parser.add_argument("--workers", type=int, default=1,
                        help="server processes (default 1); more than one needs a PostgreSQL database_url and a "
                             "reverse proxy in front (`camstudy deploy`)")
    parser.add_argument("--trusted-proxies", default=DEFAULT_TRUSTED_PROXIES, metavar="ADDRESSES",
                        help="comma-separated addresses or networks of reverse proxies whose X-Forwarded-For "
                             f"names the client (default {DEFAULT_TRUSTED_PROXIES}: a proxy on this machine); the "
                             "admin page's sign-in throttle counts failures per client address")
    parser.add_argument("--pilot", action="store_true",
                        help="a pilot run: everyone who takes part is marked is_pilot (left out of the analysis; "
                             "`camstudy reset-pilot` removes them)")


def command(study_dir: Path, port: int, host: str) -> list[str]:
    flags = [f"--{k}={v}" for k, v in STREAMLIT_FLAGS.items()]
    return [sys.executable, "-m", "streamlit", "run", str(APP), *flags,
            f"--server.port={port}", f"--server.address={host}", "--", "--study", str(study_dir)]


def run(args) -> int:
    study_dir = args.study_dir.resolve()
    if not (study_dir / "study.toml").is_file():
        raise FileNotFoundError(f"{study_dir} is not a study folder (no study.toml); "
                                "make one with `camstudy build`")
    if args.workers < 1:
        raise ValueError(f"--workers must be at least 1, got {args.workers}")
    session = SurveySession(study_dir)  # validates the config and database now, not at the first visitor
    if args.workers > 1 and session.db.engine.dialect.name == "sqlite":
        raise ValueError(f"--workers {args.workers} needs a database server: this study's database is SQLite "
                         "(one writer at a time, one machine). Set database_url to a PostgreSQL URL in the "
                         "study's config and build it there, or serve with one worker")
    session.stimuli.publish(session.built.stimulus_path(i) for i in session.built.stimuli)
    env = dict(os.environ)
    root = str(APP.parent.parent)  # `ui` importable when run from a source tree
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    env[PILOT_ENV] = "1" if args.pilot else ""
    env[TRUSTED_PROXIES_ENV] = args.trusted_proxies
    pilot = "  PILOT RUN: participants are marked is_pilot" if args.pilot else ""
    if args.workers == 1:
        print(f"camstudy serve: http://{host_for_url(args.host)}:{args.port}/  (admin page: /admin){pilot}", flush=True)
        cmd = command(study_dir, args.port, args.host)
        os.execve(cmd[0], cmd, env)
    ports = range(args.port, args.port + args.workers)
    print(f"camstudy serve: {args.workers} workers on http://{host_for_url(args.host)}:{ports[0]}-{ports[-1]}/ "
          f"(behind a reverse proxy: `camstudy deploy`){pilot}", flush=True)
    return supervise([command(study_dir, port, args.host) for port in ports], env)


def supervise(commands: list[list[str]], env: dict[str, str]) -> int:
    """Run one server process per command until SIGTERM or SIGINT; restart one that dies (its
    participants' browsers reconnect, to it or, through the proxy, to another). A process that exits
    with an error within STARTUP_S of being started did not start at all: then stop everything and
    report it (one killed by a signal is restarted)."""
    stopping = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda number, _frame: stopping.append(number))
    workers = [(subprocess.Popen(cmd, env=env), time.monotonic()) for cmd in commands]
    failed = None
    while not stopping and failed is None:
        time.sleep(0.5)
        for i, (process, started) in enumerate(workers):
            if process.poll() is None:
                continue
            if process.returncode > 0 and time.monotonic() - started < STARTUP_S:
                failed = f"worker {i} exited with {process.returncode} at start (its messages are above)"
                break
            print(f"camstudy serve: worker {i} exited with {process.returncode}; starting it again", flush=True)
            workers[i] = (subprocess.Popen(commands[i], env=env), time.monotonic())
    for process, _ in workers:
        if process.poll() is None:
            process.terminate()
    for process, _ in workers:
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
    if failed:
        print(f"camstudy serve: {failed}; stopped the others", file=sys.stderr, flush=True)
        return 1
    return 0


def host_for_url(host: str) -> str:
    return "localhost" if host in ("0.0.0.0", "::") else host
