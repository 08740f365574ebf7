"""`camstudy serve` and the app's plumbing (no browser)."""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
from argparse import Namespace
from pathlib import Path

import pytest

from study.commands import serve
from ui.context import _Bounded


def test_serve_runs_streamlit_set_up_for_participants(tmp_path):
    cmd = serve.command(tmp_path, 8600, "127.0.0.1")
    assert cmd[1:4] == ["-m", "streamlit", "run"] and cmd[4].endswith("ui/study_server.py")
    for flag in ("--client.toolbarMode=viewer", "--server.headless=true",
                 "--browser.gatherUsageStats=false", "--client.showErrorDetails=none",
                 "--server.port=8600", "--server.address=127.0.0.1"):
        assert flag in cmd
    assert cmd[-3:] == ["--", "--study", str(tmp_path)]


def test_serve_refuses_a_folder_that_is_not_a_study(tmp_path, monkeypatch):
    monkeypatch.setattr(serve.os, "execve", lambda *a: pytest.fail("server started"))
    with pytest.raises(FileNotFoundError, match="not a study folder"):
        serve.run(Namespace(study_dir=tmp_path, port=8600, host="127.0.0.1", workers=1))


def test_the_supervisor_restarts_a_killed_worker_and_gives_up_on_one_that_cannot_start(monkeypatch):
    monkeypatch.setattr(serve, "STARTUP_S", 0.5)
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    started = []
    real_popen = serve.subprocess.Popen

    def popen(cmd, env):
        started.append(real_popen(cmd, env=env))
        return started[-1]
    monkeypatch.setattr(serve.subprocess, "Popen", popen)

    def kill_then_stop():
        time.sleep(1.5)
        os.kill(started[0].pid, signal.SIGKILL)     # a worker dies: it is started again
        time.sleep(1.5)
        os.kill(os.getpid(), signal.SIGTERM)        # the supervisor is told to stop
    threading.Thread(target=kill_then_stop).start()
    previous = signal.getsignal(signal.SIGTERM)
    try:
        assert serve.supervise([sleeper, sleeper], dict(os.environ)) == 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    assert len(started) == 3 and all(p.poll() is not None for p in started)
    monkeypatch.setattr(serve, "STARTUP_S", 30)
    failing = [sys.executable, "-c", "raise SystemExit(3)"]
    assert serve.supervise([sleeper, failing], dict(os.environ)) == 1   # a port in use, say: stop, say so
    signal.signal(signal.SIGTERM, previous)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def test_session_calls_in_flight_are_bounded():
    running, peak, lock = 0, 0, threading.Lock()

    class Slow:
        config = "cfg"

        def next_trial(self, pid):
            nonlocal running, peak
            with lock:
                running += 1
                peak = max(peak, running)
            time.sleep(0.1)
            with lock:
                running -= 1
            return pid

    bounded = _Bounded(Slow(), 3)
    threads = [threading.Thread(target=bounded.next_trial, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak == 3
    assert bounded.config == "cfg" and bounded.next_trial(7) == 7


def test_study_folder_from_the_command_line(monkeypatch):
    from ui import context
    monkeypatch.setattr(context.sys, "argv", ["app.py", "--study", "some/where"])
    assert context.study_dir() == Path("some/where").resolve()
    monkeypatch.setattr(context.sys, "argv", ["app.py"])
    monkeypatch.setenv(context.STUDY_ENV, "else/where")
    assert context.study_dir() == Path("else/where").resolve()
