"""What the survey benches run against: a study built and served by a given camstudy checkout (this one,
or another such as main before a change, for a comparison in one run), on one worker (SQLite, served
directly, as `camstudy serve` does by default) or several (PostgreSQL, behind nginx configured by this
checkout's `camstudy deploy`). Everything listens on 127.0.0.1 only.

A checkout is any folder with study/ and tests/_ui_fixtures.py; its code runs in child processes with it
on PYTHONPATH, so two versions never share a process.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(HERE), str(HERE / "tests")]

from _ui_fixtures import Proxy, drop_postgres_database, free_ports, fresh_postgres_database  # noqa: E402

BUILD = """
import sys
from pathlib import Path
from _ui_fixtures import STUDY_TOML, SketchRenderer
from study.stimuli.build import build_study
out, url = Path(sys.argv[1]), sys.argv[2]
out.mkdir(parents=True, exist_ok=True)
config = out.parent / f"{out.name}.toml"
config.write_text((f'database_url = "{url}"\\n' if url else "") + STUDY_TOML)
build_study(config, out, progress=False, renderer=SketchRenderer())
"""


def checkout_env(checkout: Path) -> dict[str, str]:
    extra = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(checkout), str(checkout / "tests"), *extra])}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pids_named(name: str) -> list[int]:
    """Processes whose command is `name` (nginx, postgres), for their CPU time."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/comm"):
        try:
            if stat.read_text().strip() == name:
                found.append(int(stat.parent.name))
        except OSError:
            continue
    return found


@dataclass
class Target:
    """One checkout's survey on `workers` processes; `url` is where participants go."""
    checkout: Path
    workers: int
    folder: Path
    postgres: str | None = None       # needed for workers > 1
    processes: list[subprocess.Popen] = field(default_factory=list)
    url: str = ""
    database: str | None = None

    @property
    def study(self) -> Path:
        return self.folder / "study"

    def build(self) -> "Target":
        if self.workers > 1:
            if not self.postgres:
                raise SystemExit("several workers need PostgreSQL: --postgres URL (a role with CREATEDB)")
            self.database = f"camstudy_bench_{os.getpid()}_{self.folder.name}".replace("-", "_")
            url = fresh_postgres_database(self.postgres, self.database)
        else:
            url = ""
        subprocess.run([sys.executable, "-c", BUILD, str(self.study), url], cwd=self.checkout,
                       env=checkout_env(self.checkout), check=True)
        return self

    def start(self) -> "Target":
        port = free_ports(self.workers)[0]
        log = open(self.folder / "serve.log", "ab")
        command = [sys.executable, "-m", "study.cli", "serve", str(self.study), "--port"]
        if self.new_serve:
            self.processes = [subprocess.Popen(command + [str(port)] + (["--workers", str(self.workers)]
                                                                        if self.workers > 1 else []),
                                               cwd=self.checkout, env=checkout_env(self.checkout),
                                               stdout=log, stderr=subprocess.STDOUT)]
        else:   # a camstudy without --workers: one serve per port
            self.processes = [subprocess.Popen(command + [str(port + i)], cwd=self.checkout,
                                               env=checkout_env(self.checkout), stdout=log, stderr=subprocess.STDOUT)
                              for i in range(self.workers)]
        self.ports = list(range(port, port + self.workers))
        for p in self.ports:
            _wait_for(f"http://127.0.0.1:{p}/_stcore/health", self.processes)
        self.url = f"http://127.0.0.1:{port}"
        if self.workers > 1:
            self.url = self._proxy()
        return self

    @property
    def new_serve(self) -> bool:
        """Whether this checkout's `camstudy serve` takes --workers."""
        return "--workers" in (self.checkout / "study" / "commands" / "serve.py").read_text()

    def worker_pids(self) -> list[int]:
        """The server processes whose CPU time is the survey's: the workers (not a supervisor)."""
        if self.new_serve and self.workers > 1:
            serve = self.processes[0].pid
            return [int(p) for p in Path(f"/proc/{serve}/task/{serve}/children").read_text().split()]
        return [p.pid for p in self.processes]

    def _proxy(self) -> str:
        """nginx, as this checkout's `camstudy deploy` writes it, in front of the workers (HTTPS)."""
        self.nginx = Proxy(self.folder / "proxy", self.study, self.ports).start()
        return self.nginx.url

    def stored(self) -> dict[str, list[int]]:
        """{external id: stored trial indexes}, read by the checkout's own export."""
        code = ("import json, sys; from study.results.export import export_tables; "
                "r = export_tables(sys.argv[1], n_resamples=10)['responses']; "
                "print(json.dumps({p: sorted(map(int, g['trial_index'])) for p, g in r.groupby('external_id')}))")
        out = subprocess.run([sys.executable, "-c", code, str(self.study)], cwd=self.checkout,
                             env=checkout_env(self.checkout), check=True, capture_output=True, text=True)
        import json
        return json.loads(out.stdout.strip().splitlines()[-1])

    def stop(self) -> None:
        if getattr(self, "nginx", None) is not None:
            self.nginx.stop()
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()

    def drop(self) -> None:
        if self.database:
            drop_postgres_database(self.postgres, self.database)


def _wait_for(url: str, processes: list[subprocess.Popen], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in processes):
            raise RuntimeError("a server exited at start; see serve.log")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


def main_checkout(into: Path, ref: str = "main") -> Path:
    """A copy of `ref`'s files (git archive), for the comparison with the code before a change."""
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(HERE), "archive", ref], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def commit_of(ref: str) -> str:
    return subprocess.run(["git", "-C", str(HERE), "rev-parse", "--short", ref], check=True, capture_output=True,
                          text=True).stdout.strip()


def has_nginx() -> bool:
    return bool(shutil.which("nginx") and shutil.which("openssl"))
