"""Load and crash checks of the survey in real browsers (not run by CI).

    .venv/bin/python bench/survey_load.py load --participants 20
    .venv/bin/python bench/survey_load.py load --participants 20 --compare main
    .venv/bin/python bench/survey_load.py crash --participants 20

`load`: N participants in concurrent contexts of one Chromium complete the 20-trial study of
tests/_ui_fixtures.py against `camstudy serve` (one worker, SQLite); prints the submit-to-next-trial
latency percentiles (click until the next trial is drawn with its images), the server's CPU time per
answer, and checks the database: every participant has exactly one answer per trial. With --compare REF
the same load runs first against REF's code (main: before a change), then this checkout's, in one run.
Browsers cost a core each, so this measures tens of participants; bench/survey_protocol.py measures
hundreds. `crash`: the same participants, the server SIGKILLed mid-study and restarted; every
acknowledged answer (its next screen came back) must be stored exactly once, and every open tab must
carry on from the participant's first unanswered trial to the completion code, with no answer lost
or stored twice. (The screenshots in docs/screenshots come from the browser tests.)
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
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

from _ui_fixtures import (CHROMIUM_ARGS, RADIOGROUP, TRIAL, Server, build_study_folder,  # noqa: E402
                          chromium_path, link, pick, question)
from survey_targets import Target, commit_of, cpu_seconds, main_checkout  # noqa: E402

# A screen is settled when the script is done, the page connected, its images loaded and, on a trial
# screen, the trial component shows its stimuli; FORM is the trial form of the camstudy before the component.
FORM = '[data-testid="stForm"]'
SETTLED = ("() => document.querySelector('[data-testid=\"stApp\"]')"
           "?.getAttribute('data-test-script-state') === 'notRunning'"
           " && document.querySelector('[data-testid=\"stApp\"]')"
           "?.getAttribute('data-test-connection-state') === 'CONNECTED'"
           " && [...document.images].every(i => i.complete)"
           f" && [...document.querySelectorAll('{TRIAL}')].every(t => t.dataset.shownAt)")


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
                     await app.get_attribute("data-test-connection-state"))
            print(f"{self.pid}: stuck after {self.acknowledged} answers (script, connection: {state}), "
                  f"see {shot}", flush=True)
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
            form = page.locator(TRIAL) if await page.locator(TRIAL).count() else page.locator(FORM)
            groups = form.locator(RADIOGROUP)
            for g in range(await groups.count()):
                labels = groups.nth(g).locator("label")
                choice = labels.nth(pick(n, g, await labels.count()))
                # Like a person, look that the choice took before going on (under heavy load a click on
                # a radio of the form before the trial component was sometimes not taken).
                for attempt in range(10):
                    await choice.click()
                    try:
                        await choice.locator("input:checked").wait_for(timeout=3000)
                        break
                    except Exception:
                        continue
            start = time.perf_counter()
            await form.get_by_role("button", name="Next").click()
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


def percentiles(latencies: list[float]) -> str:
    lat = sorted(latencies) or [float("nan")]
    at = {q: lat[min(len(lat) - 1, round(q * (len(lat) - 1)))] * 1000 for q in (0.5, 0.9, 0.95, 0.99)}
    return (f"p50 {at[0.5]:.0f} ms, p90 {at[0.9]:.0f} ms, p95 {at[0.95]:.0f} ms, p99 {at[0.99]:.0f} ms, "
            f"max {lat[-1] * 1000:.0f} ms over {len(lat)} submits")


def load(checkout: Path, folder: Path, label: str, n: int, think_s: float, budget_s: float) -> int:
    """N browsers through the whole study against `checkout`'s code on one worker; returns 1 on a problem."""
    target = Target(checkout, 1, folder).build().start()
    servers = target.worker_pids()
    server_cpu = sum(map(cpu_seconds, servers))
    try:
        people = []

        async def go(browser):
            people.extend(Participant(browser, target.url, f"LOAD-{i:02d}", think_s, i,
                                      arrive_s=1.5 * i) for i in range(n))
            started = time.perf_counter()
            runs = [asyncio.ensure_future(p.run()) for p in people]
            done, pending = await asyncio.wait(runs, timeout=budget_s)
            for run in pending:  # report what was measured, not nothing
                run.cancel()
            await asyncio.gather(*runs, return_exceptions=True)
            return time.perf_counter() - started

        wall = asyncio.run(_with_browser(go))
        server_cpu = sum(map(cpu_seconds, servers)) - server_cpu
        stored = target.stored()
    finally:
        target.stop()
    problems = [pid for pid in (p.pid for p in people) if stored.get(pid) != list(range(20))]
    dupes = [pid for pid, have in stored.items() if len(have) != len(set(have))]
    lost = [p.pid for p in people if len(stored.get(p.pid, [])) < p.acknowledged]
    answers = sum(len(v) for v in stored.values())
    print(f"{label}: {n} participants x 20 trials in {wall:.0f} s (think time {think_s} s +-50%); finished "
          f"{n - len(problems)} of {n}; duplicated {dupes or 'none'}; acknowledged but not stored {lost or 'none'}")
    print(f"  submit -> next trial drawn with its images: {percentiles([x for p in people for x in p.latencies])}")
    print(f"  server CPU: {server_cpu:.0f} s for {answers} answers = {server_cpu / max(answers, 1) * 1000:.1f} ms "
          f"per answer (the browsers used the rest of these {os.cpu_count()} cores)", flush=True)
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
    parser.add_argument("--compare", metavar="REF", help="load: first the same load against REF's code (e.g. main)")
    args = parser.parse_args()
    if chromium_path() is None:
        print("survey_load: Debian's chromium is not installed", file=sys.stderr)
        return 2
    folder = Path(tempfile.mkdtemp(prefix="camstudy-bench-"))
    if args.check == "load":
        failed = 0
        if args.compare:
            old = main_checkout(folder / "old-code", args.compare)
            failed |= load(old, folder / "old", f"{args.compare} ({commit_of(args.compare)})", args.participants,
                           args.think, args.budget)
        return failed | load(ROOT, folder / "new", f"this ({commit_of('HEAD')})", args.participants, args.think,
                             args.budget)
    study = build_study_folder(folder / "study")
    return crash(study, args.participants, args.think, kill_after=args.participants * 3)


if __name__ == "__main__":
    sys.exit(main())
