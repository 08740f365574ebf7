"""A load generator that is not a browser: simulated participants speak the survey's websocket protocol.

    .venv/bin/python bench/survey_protocol.py --participants 200 --think 5
    .venv/bin/python bench/survey_protocol.py --compare main --postgres postgresql+psycopg://u:p@localhost/db

A browser costs a core; this client costs a few milliseconds per answer, so one machine can hold hundreds
of participants against a server on the same machine. Each participant opens its own websocket to
/_stcore/stream (through nginx for several workers, over HTTPS), sends Streamlit's protobuf BackMsgs and
reads its ForwardMsgs: it consents, starts, answers every trial after a think time (uniform, +-50% around
--think), continues after practice feedback and finishes the questionnaire. It reads the screens it is
sent the way the page does (the trial component's data, or, for the camstudy before the trial component,
the form's radios and Next button), answers from the options it was given, and fetches every stimulus a
new screen shows, as a browser would.

Submit-to-next-trial is the time from sending an answer to having the next screen with its images; the
server's CPU time per answer is its processes' CPU time over the answers in the measured window (after
every participant has arrived). At the end every participant must have exactly one stored answer per
acknowledged trial: none lost, none twice.

--compare REF runs the same loads against REF (main: the code before a change) and this checkout, one
after the other in one run, on 1 worker (SQLite, served directly) and 2 (PostgreSQL behind nginx), and
prints the table of the README: for each, CPU-ms per answer, latency percentiles, and the most
participants (of --ladder) at which p95 stayed under 1 s.
"""
from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import random
import ssl
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode, urlparse

import websockets
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.WidgetStates_pb2 import WidgetState
from streamlit.runtime.state.session_state import STREAMLIT_INTERNAL_KEY_PREFIX

sys.path.insert(0, str(Path(__file__).resolve().parent))
from survey_targets import HERE, Target, commit_of, cpu_seconds, has_nginx, main_checkout, pids_named  # noqa: E402

RERUN_EARLY = 2                   # ScriptFinishedStatus.FINISHED_EARLY_FOR_RERUN: another run follows
TRIAL_COMPONENT = "camstudy_trial"
TLS = ssl.create_default_context()
TLS.check_hostname, TLS.verify_mode = False, ssl.CERT_NONE   # the bench's own self-signed certificate


class Http:
    """A keep-alive HTTP/1.1 connection for GETs (the page, the stimuli), keeping cookies like a browser."""

    def __init__(self, base: str, cookies: dict[str, str]):
        parsed = urlparse(base)
        self.host, self.port, self.tls = parsed.hostname, parsed.port, parsed.scheme == "https"
        self.cookies, self.streams = cookies, None

    async def get(self, path: str) -> int:
        for attempt in range(2):        # a keep-alive connection the server closed: open another
            try:
                if self.streams is None:
                    self.streams = await asyncio.open_connection(self.host, self.port, ssl=TLS if self.tls else None)
                reader, writer = self.streams
                cookie = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
                writer.write(f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nCookie: {cookie}\r\n\r\n".encode())
                status = int((await reader.readline()).split()[1])
                length, chunked = 0, False
                while (line := (await reader.readline()).decode("latin1").strip()):
                    name, _, value = line.partition(":")
                    name = name.lower()
                    if name == "content-length":
                        length = int(value)
                    elif name == "transfer-encoding" and "chunked" in value:
                        chunked = True
                    elif name == "set-cookie":
                        key, _, rest = value.strip().partition("=")
                        self.cookies[key] = rest.split(";")[0]
                if chunked:
                    while (size := int((await reader.readline()).strip(), 16)):
                        await reader.readexactly(size + 2)
                    await reader.readline()
                else:
                    await reader.readexactly(length)
                return status
            except (ConnectionError, asyncio.IncompleteReadError, ValueError, IndexError):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.streams is not None:
            self.streams[1].close()
            self.streams = None


@dataclass
class Screen:
    """The elements of the page as the last script runs drew them: (element, fragment id) by delta path."""
    elements: dict = field(default_factory=dict)

    def of(self, kind: str) -> list:
        return [(e, f) for e, f in self.elements.values() if e.WhichOneof("type") == kind]

    def button(self, label: str):
        return next(((e.button, f) for e, f in self.of("button") if e.button.label == label), None)

    def component(self):
        return next(((e.bidi_component, f) for e, f in self.of("bidi_component")
                     if e.bidi_component.component_name == TRIAL_COMPONENT), None)

    def radios(self) -> list:
        return [e.radio for e, _ in self.of("radio")]

    def images(self) -> list[str]:
        """The stimuli the screen shows: the trial component's, or Streamlit images' (before the component)."""
        found = self.component()
        shown = [i["src"] for i in json.loads(found[0].json)["images"]] if found else []
        return shown + [i.url for e, _ in self.of("imgs") for i in e.imgs.imgs]

    def text(self) -> str:
        return " ".join(e.markdown.body for e, _ in self.of("markdown")) + " ".join(
            e.progress.text for e, _ in self.of("progress"))


class Participant:
    """One simulated participant on its own websocket."""

    def __init__(self, base: str, pid: str, think_s: float, seed: int):
        self.base, self.pid, self.think_s, self.rng = base, pid, think_s, random.Random(seed)
        self.cookies: dict[str, str] = {}
        self.http = Http(base, self.cookies)
        self.screen = Screen()
        self.page_hash = ""
        self.fetched: set[str] = set()
        self.latencies: list[tuple[float, float]] = []     # (when, seconds)
        self.acknowledged = 0
        self.done = False

    async def run(self, stop_at: float) -> None:
        await self.http.get("/?" + urlencode({"PROLIFIC_PID": self.pid}))
        ws_url = self.base.replace("http", "ws", 1) + "/_stcore/stream"
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        async with websockets.connect(ws_url, subprotocols=["streamlit"], origin=self.base, max_size=None,
                                      additional_headers=headers, ssl=TLS if ws_url.startswith("wss") else None,
                                      open_timeout=60, ping_interval=None) as self.ws:
            await self._rerun([])
            while not self.done and time.monotonic() < stop_at:
                await self._step()
        self.http.close()

    async def _rerun(self, widgets: list[WidgetState], fragment: str = "") -> None:
        msg = BackMsg()
        state = msg.rerun_script
        state.query_string = urlencode({"PROLIFIC_PID": self.pid})
        state.page_script_hash = self.page_hash
        state.fragment_id = fragment
        state.widget_states.widgets.extend(widgets)
        await self.ws.send(msg.SerializeToString())
        while True:
            forward = ForwardMsg()
            forward.ParseFromString(await self.ws.recv())
            kind = forward.WhichOneof("type")
            if kind == "new_session":
                self.page_hash = forward.new_session.page_script_hash or self.page_hash
                if not fragment:
                    self.screen = Screen()
            elif kind == "delta" and forward.delta.WhichOneof("type") == "new_element":
                self.screen.elements[tuple(forward.metadata.delta_path)] = (forward.delta.new_element,
                                                                            forward.delta.fragment_id)
            elif kind == "script_finished" and forward.script_finished != RERUN_EARLY:
                return

    async def _click(self, label: str, extra: list[WidgetState] = ()) -> None:
        button, fragment = self.screen.button(label)
        await self._rerun([*extra, WidgetState(id=button.id, trigger_value=True)], fragment)

    async def _fetch_images(self) -> None:
        new = [src for src in self.screen.images() if src not in self.fetched]
        for src in new:                           # a browser loads them over its connections; one here
            status = await self.http.get(src)
            if status != 200:
                raise RuntimeError(f"{self.pid}: {src} answered {status}")
            self.fetched.add(src)

    async def _think(self) -> None:
        await asyncio.sleep(self.think_s * self.rng.uniform(0.5, 1.5))

    async def _step(self) -> None:
        screen = self.screen
        if screen.button("I agree to take part"):
            await self._click("I agree to take part")
        elif screen.button("Start"):
            await self._click("Start")
        elif screen.button("Continue"):
            await self._click("Continue")
        elif screen.button("Finish"):
            choices = [WidgetState(id=r.id, string_value=r.options[0]) for r in screen.radios()]
            await self._click("Finish", choices)
        elif screen.of("code"):                  # the completion code
            self.done = True
            return
        elif screen.component() or screen.button("Next"):
            await self._answer()
        else:
            raise RuntimeError(f"{self.pid}: a screen the bench does not know: {screen.text()[:200]}")
        await self._fetch_images()

    async def _answer(self) -> None:
        await self._fetch_images()
        await self._think()
        before = self.screen.text()
        started = time.perf_counter()
        found = self.screen.component()
        if found is not None:                     # the trial component: one JSON trigger
            component, fragment = found
            data = json.loads(component.json)
            value = {"trial": data["trial"], "response": self.rng.choice(data["options"])[0] if data["options"] else "",
                     "confidence": self.rng.choice(data["confidence"])[0] if data["confidence"] else None,
                     "rt_ms": int(self.think_s * 1000)}
            trigger = WidgetState(id=f"{STREAMLIT_INTERNAL_KEY_PREFIX}_{component.id}__events",
                                  json_trigger_value=json.dumps([{"event": "submit", "value": value}]))
            await self._rerun([trigger], fragment)
        else:                                     # the form of radios and Next before it
            choices = [WidgetState(id=r.id, string_value=self.rng.choice(list(r.options))) for r in self.screen.radios()]
            await self._click("Next", choices)
        await self._fetch_images()
        if self.screen.text() == before and not self.screen.button("Continue"):
            raise RuntimeError(f"{self.pid}: the answer did not move the survey on")
        self.acknowledged += 1
        self.latencies.append((time.monotonic(), time.perf_counter() - started))


@dataclass
class Result:
    participants: int
    answers: int
    cpu_ms: float              # server processes' CPU per answer in the window
    p50: float
    p95: float
    p99: float
    rate: float                # answers per second in the window
    extra_cpu_ms: dict         # nginx, postgres and this load generator, per answer
    lost: list
    duplicated: list

    @property
    def ok(self) -> bool:
        return self.p95 < 1.0 and not self.lost and not self.duplicated


def percentile(values: list[float], q: float) -> float:
    values = sorted(values) or [float("nan")]
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


async def _drive(target: Target, n: int, think_s: float, ramp_s: float, window_s: float, prefix: str):
    people = [Participant(target.url, f"{prefix}-{i:04d}", think_s, i) for i in range(n)]
    begin = time.monotonic()
    window_start, stop_at = begin + ramp_s + think_s * 2, begin + ramp_s + think_s * 2 + window_s
    servers = target.worker_pids()

    async def arrive(p: Participant, delay: float) -> None:
        await asyncio.sleep(delay)
        await p.run(stop_at)

    tasks = [asyncio.ensure_future(arrive(p, ramp_s * i / max(n, 1))) for i, p in enumerate(people)]
    await asyncio.sleep(max(0.0, window_start - time.monotonic()))
    before = _cpu(servers)
    await asyncio.sleep(max(0.0, stop_at - time.monotonic()))
    after = _cpu(servers)
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    failures = [(p.pid, repr(o)[:200]) for p, o in zip(people, outcomes) if isinstance(o, BaseException)]
    return people, before, after, window_start, stop_at, failures


def _cpu(servers: list[int]) -> dict[str, float]:
    """CPU seconds so far of the workers, nginx, PostgreSQL and this load generator."""
    return {"server": sum(map(cpu_seconds, servers)), "nginx": sum(map(cpu_seconds, pids_named("nginx"))),
            "postgres": sum(map(cpu_seconds, pids_named("postgres"))), "client": time.process_time()}


def load(target: Target, n: int, think_s: float, ramp_s: float, window_s: float, prefix: str) -> Result:
    people, before, after, start, stop, failures = asyncio.run(_drive(target, n, think_s, ramp_s, window_s, prefix))
    in_window = [s for p in people for when, s in p.latencies if start <= when <= stop]
    stored = target.stored()
    lost = [p.pid for p in people if len(stored.get(p.pid, [])) < p.acknowledged]
    duplicated = [pid for pid, have in stored.items() if len(have) != len(set(have))]
    answers = max(len(in_window), 1)
    for pid, error in failures[:5]:
        print(f"  {pid}: {error}", flush=True)
    return Result(n, len(in_window), (after["server"] - before["server"]) * 1000 / answers,
                  percentile(in_window, 0.5), percentile(in_window, 0.95), percentile(in_window, 0.99),
                  len(in_window) / (stop - start),
                  {k: (after[k] - before[k]) * 1000 / answers for k in ("nginx", "postgres", "client")},
                  lost + [pid for pid, _ in failures], duplicated)


def report(label: str, r: Result) -> str:
    return (f"{label:<28} {r.participants:>5} {r.rate:>7.1f} {r.cpu_ms:>8.1f} {r.p50 * 1000:>7.0f} {r.p95 * 1000:>7.0f} "
            f"{r.p99 * 1000:>7.0f}   nginx {r.extra_cpu_ms['nginx']:.1f} / postgres {r.extra_cpu_ms['postgres']:.1f} / "
            f"load generator {r.extra_cpu_ms['client']:.1f} ms; "
            f"lost {len(r.lost)}, twice {len(r.duplicated)}")


HEADER = (f"{'code, workers':<28} {'n':>5} {'ans/s':>7} {'CPU ms':>8} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7}")


def ladder(checkout: Path, label: str, workers: int, counts: list[int], args, folder: Path) -> list[Result]:
    """Each count of participants against a fresh study (so every run starts empty); stops climbing once p95
    passes 1 s (a bigger crowd can only be slower)."""
    results = []
    for n in counts:
        target = Target(checkout, workers, folder / f"{label}-{workers}-{n}", postgres=args.postgres)
        target.folder.mkdir(parents=True)
        target.build().start()
        try:
            result = load(target, n, args.think, args.ramp, args.window, f"B{n}")
        finally:
            target.stop()
            target.drop()
        print(report(f"{label}, {workers} worker{'s' if workers > 1 else ''}", result), flush=True)
        results.append(result)
        if not result.ok:
            break
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participants", type=int, nargs="+", default=[50], help="participants at once (a ladder)")
    parser.add_argument("--think", type=float, default=5.0, help="mean seconds per answer")
    parser.add_argument("--ramp", type=float, default=20.0, help="seconds over which participants arrive")
    parser.add_argument("--window", type=float, default=40.0, help="seconds measured after all have arrived")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--postgres", help="PostgreSQL URL of a role with CREATEDB (for several workers)")
    parser.add_argument("--compare", metavar="REF", help="also run REF's code (e.g. main), same loads, same run")
    parser.add_argument("--checkout", type=Path, default=HERE, help="the camstudy to load (default: this one)")
    args = parser.parse_args()
    if (args.workers > 1 or args.compare) and not (args.postgres and has_nginx()):
        print("survey_protocol: several workers need --postgres and nginx + openssl", file=sys.stderr)
        return 2
    folder = Path(tempfile.mkdtemp(prefix="camstudy-protocol-"))
    fast = [name for name in ("httptools", "uvloop") if importlib.util.find_spec(name)]
    print(f"think {args.think} s +-50%, arrivals over {args.ramp} s, {args.window} s measured; CPU: the workers' "
          f"processes per answer in that window (nginx, PostgreSQL and this generator beside it); "
          f"{' and '.join(fast) or 'neither httptools nor uvloop'} installed, for every checkout alike\n{HEADER}",
          flush=True)
    runs = []
    if args.compare:
        old = main_checkout(folder / "old", args.compare)
        old_label = f"{args.compare} ({commit_of(args.compare)})"
        new_label = f"this ({commit_of('HEAD')})"
        for workers in (1, 2):
            runs.append((old_label, workers, ladder(old, "old", workers, args.participants, args, folder)))
            runs.append((new_label, workers, ladder(args.checkout, "new", workers, args.participants, args, folder)))
        print("\nmost participants with p95 < 1 s, nothing lost or duplicated (of the ladder):")
        for label, workers, results in runs:
            good = [r for r in results if r.ok]
            best = max(good, key=lambda r: r.participants) if good else None
            print(f"  {label}, {workers} worker(s): {best.participants if best else 'none'}"
                  + (f" (CPU {best.cpu_ms:.1f} ms per answer, p95 {best.p95 * 1000:.0f} ms)" if best else ""))
    else:
        results = ladder(args.checkout, "this", args.workers, args.participants, args, folder)
        runs.append(("this", args.workers, results))
    bad = [r for _, _, results in runs for r in results if r.lost or r.duplicated]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
