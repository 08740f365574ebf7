"""Load, crash and screenshot checks of the survey in real browsers (not run by CI).

    .venv/bin/python bench/survey_load.py load --participants 20
    .venv/bin/python bench/survey_load.py crash --participants 20

`load`: N participants in concurrent contexts of one Chromium complete the 20-trial study of
tests/_ui_fixtures.py against `camstudy serve`; prints the submit-to-next-trial latency (click
until the next trial is drawn with its images) and checks the database: every participant has
exactly one answer per trial. `crash`: the same participants, the server SIGKILLed mid-study
and restarted; every acknowledged answer (its next screen came back) must be stored exactly
once, and every open tab must carry on from the participant's first unanswered trial to the
completion code, with no answer lost or stored twice.
(The screenshots in docs/screenshots come from the browser tests: see tests/test_ui_browser.py.)
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from _ui_fixtures import (CHROMIUM_ARGS, FORM, RADIOGROUP, Server, build_study_folder,  # noqa: E402
                          chromium_path, link, pick, question)

SETTLED = ("() => document.querySelector('[data-testid=\"stApp\"]')"
           "?.getAttribute('data-test-script-state') === 'notRunning'"
           " && document.querySelector('[data-testid=\"stApp\"]')"
           "?.getAttribute('data-test-connection-state') === 'CONNECTED'"
           " && [...document.images].every(i => i.complete)")


class Participant:
    """One simulated participant in its own browser context (async Playwright)."""

    def __init__(self, browser, base_url: str, pid: str, think_s: float, seed: int,
                 arrive_s: float = 0.0):
        self.browser, self.base_url, self.pid, self.arrive_s = browser, base_url, pid, arrive_s
        self.think_s, self.rng = think_s, random.Random(seed)
        self.acknowledged = 0           # answers whose next screen came back from the server
        self.latencies: list[float] = []
        self.stale_screens = 0          # after a restart: screens that needed a click to go on
        self.page = None

    async def _shown(self, locator) -> None:
        try:
            await locator.first.wait_for()
            await self.page.wait_for_function(SETTLED)
        except Exception:
            shot = Path(tempfile.gettempdir()) / f"stuck-{self.pid}.png"
            await self.page.screenshot(path=shot, full_page=True)
            app = self.page.locator('[data-testid="stApp"]')
            state = (await app.get_attribute("data-test-script-state"),
                     await app.get_attribute("data-test-connection-state"),
                     await self.page.locator(f"{FORM} input[type=radio]:disabled").count())
            print(f"{self.pid}: stuck after {self.acknowledged} answers (script, connection, "
                  f"disabled radios: {state}), see {shot}", flush=True)
            raise

    async def run(self) -> None:
        await asyncio.sleep(self.arrive_s)  # people follow a link over a minute, not at once
        context = await self.browser.new_context(viewport={"width": 1280, "height": 800})
        context.set_default_timeout(180_000)
        self.page = page = await context.new_page()
        await page.goto(link(self.base_url, self.pid))
        await page.get_by_role("button", name="I agree to take part").click()
        await page.get_by_role("button", name="Start").click()
        await self._shown(page.get_by_text(question(1)))
        await self.answer_to_the_end(1)

    async def resume(self, first_open: int) -> None:
        """After a server restart: carry on in the same tab from the screen it shows, as a person
        would, to the first unanswered trial: consent and instructions (not started yet), or a
        practice answer's feedback (Continue), or the question whose answer was stored as the
        server died (Next again)."""
        page, target = self.page, self.page.get_by_text(question(first_open + 1))
        names = ("I agree to take part", "Start") if first_open == 0 else ("Continue", "Next")
        buttons = [page.get_by_role("button", name=name) for name in names]
        for _ in range(3):
            await target.or_(buttons[0]).or_(buttons[1]).first.wait_for(timeout=120_000)
            await page.wait_for_function(SETTLED)
            if await target.is_visible():
                break
            self.stale_screens += 1
            for button in buttons:
                if await button.is_visible():
                    await button.click()
                    break
        await self._shown(target)
        await self.answer_to_the_end(first_open + 1)

    async def answer_to_the_end(self, n: int) -> None:
        """Answer question n (on screen) and every one after it, then finish."""
        page = self.page
        finish = page.get_by_role("button", name="Finish")
        cont = page.get_by_role("button", name="Continue")
        while not await finish.is_visible():
            await asyncio.sleep(self.think_s * self.rng.uniform(0.5, 1.5))
            groups = page.locator(FORM).locator(RADIOGROUP)
            for g in range(await groups.count()):
                labels = groups.nth(g).locator("label")
                choice = labels.nth(pick(n, g, await labels.count()))
                # Like a person, look that the choice took before going on (under heavy load
                # a click on a freshly drawn radio is sometimes not taken).
                for attempt in range(10):
                    if attempt % 2:  # the keyboard shortcut, when a pointer click is not taken
                        await choice.focus()
                        await page.keyboard.press(str(pick(n, g, await labels.count()) + 1))
                    else:
                        await choice.click()
                    try:
                        await choice.locator("input:checked").wait_for(timeout=3000)
                        break
                    except Exception:
                        continue
            start = time.perf_counter()
            await page.get_by_role("button", name="Next").click()
            await self._shown(page.get_by_text(question(n + 1)).or_(cont).or_(finish))
            self.acknowledged += 1
            if await cont.is_visible():
                await cont.click()
                await self._shown(page.get_by_text(question(n + 1)).or_(finish))
            else:
                self.latencies.append(time.perf_counter() - start)
            n += 1
        await finish.click()
        await page.get_by_text("Your completion code").wait_for()


def stored_answers(study: Path) -> dict[str, list[int]]:
    from study.results.export import export_tables
    responses = export_tables(study, n_resamples=10)["responses"]
    return {pid: sorted(g["trial_index"]) for pid, g in responses.groupby("external_id")}


async def _with_browser(fn):
    from playwright.async_api import async_playwright
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            return await fn(browser)
        finally:
            await browser.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc), to split the latency into the
    server's share and the browsers' share (all on the same cores here, unlike a real study)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load(study: Path, n: int, think_s: float, budget_s: float) -> int:
    server = Server(study).start()
    server_cpu = cpu_seconds(server.process.pid)
    try:
        people = []

        async def go(browser):
            people.extend(Participant(browser, server.url, f"LOAD-{i:02d}", think_s, i,
                                      arrive_s=1.5 * i) for i in range(n))
            started = time.perf_counter()
            runs = [asyncio.ensure_future(p.run()) for p in people]
            done, pending = await asyncio.wait(runs, timeout=budget_s)
            for run in pending:  # report what was measured, not nothing
                run.cancel()
            await asyncio.gather(*runs, return_exceptions=True)
            return time.perf_counter() - started

        wall = asyncio.run(_with_browser(go))
        server_cpu = cpu_seconds(server.process.pid) - server_cpu
    finally:
        server.stop()
    lat = sorted(x for p in people for x in p.latencies) or [float("nan")]
    p95 = lat[min(len(lat) - 1, round(0.95 * (len(lat) - 1)))]
    stored = stored_answers(study)
    problems = [pid for pid in (p.pid for p in people) if stored.get(pid) != list(range(20))]
    dupes = [pid for pid, have in stored.items() if len(have) != len(set(have))]
    lost = [p.pid for p in people if len(stored.get(p.pid, [])) < p.acknowledged]
    print(f"finished: {n - len(problems)} of {n}; duplicated answers: {dupes or 'none'}; "
          f"acknowledged but not stored: {lost or 'none'}")
    print(f"{n} participants x 20 trials in {wall:.0f} s (think time {think_s} s +-50%); "
          f"submit -> next trial drawn: median {statistics.median(lat) * 1000:.0f} ms, "
          f"p95 {p95 * 1000:.0f} ms, max {lat[-1] * 1000:.0f} ms over {len(lat)} submits")
    answers = sum(len(v) for v in stored.values())
    print(f"database: {answers} answers from {len(stored)} participants")
    print(f"server CPU: {server_cpu:.0f} s in all, {server_cpu / max(answers, 1) * 1000:.0f} ms per answer "
          f"(everything else on these {os.cpu_count()} cores was the {n} browsers)")
    return 1 if problems or dupes or lost else 0


def crash(study: Path, n: int, think_s: float, kill_after: int) -> int:
    server = Server(study).start()
    people = []

    async def go(browser):
        people.extend(Participant(browser, server.url, f"CRASH-{i:02d}", think_s, i,
                                  arrive_s=1.5 * i) for i in range(n))
        tasks = [asyncio.ensure_future(p.run()) for p in people]
        while sum(p.acknowledged for p in people) < kill_after:
            await asyncio.sleep(0.2)
        server.kill()
        print(f"SIGKILL after {sum(p.acknowledged for p in people)} acknowledged answers")
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        acknowledged = {p.pid: p.acknowledged for p in people}
        stored = stored_answers(study)
        server.start()
        # The open tabs reconnect by themselves; each carries on from its first unanswered trial
        # to the completion code.
        async def carry_on(p: Participant) -> bool:
            try:
                await p.resume(len(stored.get(p.pid, [])))
                return True
            except Exception as err:  # reported below, not raised: the check is the report
                shot = Path(tempfile.gettempdir()) / f"not-back-{p.pid}.png"
                await p.page.screenshot(path=shot, full_page=True)
                print(f"{p.pid}: did not carry on after the restart ({err!s:.120}); see {shot}")
                return False
        restarted = time.perf_counter()
        carried = await asyncio.gather(*(carry_on(p) for p in people))
        print(f"all tabs finished {time.perf_counter() - restarted:.0f} s after the restart; "
              f"{sum(p.stale_screens for p in people)} of them went on from the screen they were on "
              f"with one more click (Continue or Next), the others showed their first unanswered question")
        return acknowledged, stored, [p.pid for p, ok in zip(people, carried) if ok]

    try:
        acknowledged, stored, resumed = asyncio.run(_with_browser(go))
    finally:
        server.stop()
    final = stored_answers(study)
    bad = []
    for pid, ack in acknowledged.items():
        have = stored.get(pid, [])
        if have != list(range(len(have))) or len(have) < ack:
            bad.append((pid, ack, have))
    print(f"acknowledged before the kill {sum(acknowledged.values())}, stored then "
          f"{sum(len(v) for v in stored.values())} (an answer stored but not yet acknowledged when the "
          f"server died is fine); lost or duplicated: {bad or 'none'}")
    unfinished = {pid: final.get(pid) for pid in acknowledged if final.get(pid) != list(range(20))}
    print(f"tabs that carried on from their first unanswered trial to the completion code: "
          f"{len(resumed)} of {n}; participants without exactly one answer per trial at the end: "
          f"{unfinished or 'none'}")
    return 1 if bad or unfinished or len(resumed) != n else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("check", choices=["load", "crash"])
    parser.add_argument("--participants", type=int, default=20)
    parser.add_argument("--think", type=float, default=1.0, help="mean seconds per answer")
    parser.add_argument("--budget", type=float, default=1800, help="load: stop after this many s")
    parser.add_argument("--study", type=Path, help="a study folder built from tests/_ui_fixtures.py "
                        "STUDY_TOML (default: a fresh one in a temporary folder)")
    parser.add_argument("--real-maps", action="store_true", help="build with real Grad-CAM/CAM maps")
    args = parser.parse_args()
    if chromium_path() is None:
        print("survey_load: Debian's chromium is not installed", file=sys.stderr)
        return 2
    study = args.study
    if study is None:
        started = time.perf_counter()
        study = build_study_folder(Path(tempfile.mkdtemp(prefix="camstudy-bench-")) / "study",
                                   real_maps=args.real_maps)
        print(f"built {study} in {time.perf_counter() - started:.0f} s")
    if args.check == "load":
        return load(study, args.participants, args.think, args.budget)
    return crash(study, args.participants, args.think, kill_after=args.participants * 3)


if __name__ == "__main__":
    sys.exit(main())
