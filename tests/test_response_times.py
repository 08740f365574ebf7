"""Response times are measured in the browser: a participant who answers at known intervals after the
stimuli are on screen has those intervals stored, quiet and with both cores busy.

The stimuli arrive late on purpose (each is held back 300-600 ms, as on a slow connection), so a time
taken from anything but the moment they are on screen (the page drawn, the server making the trial)
would be off by that much. What counts as the truth is observed by a script of the test's own in the
page, apart from trial.js: the frame in which every image of the trial is decoded, and the timeStamp
of the trusted click or key press that submits. The participant clicks (or presses Enter) at 0.9-1.7 s.
The stored rt_ms must be within 20 ms of the truth (median) and 35 ms (worst); the server's own
interval, kept as server_rt_ms, is reported beside it.
"""
from __future__ import annotations

import os
import random
import statistics
import subprocess
import sys
import time

import pytest

from _ui_fixtures import (CHROMIUM_ARGS, TRIAL, RADIOGROUP, Server, build_study_folder, chromium_path, link,
                          question, settle, trial_shown)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(chromium_path() is None, reason="Debian's chromium is not installed "
                       "(playwright cannot download its own browser here)"),
]
INTERVALS_MS = [900, 1300, 1700, 1100, 1500, 1000]
TOLERANCE_MEDIAN_MS, TOLERANCE_WORST_MS = 20, 35

# The test's own observer, installed before any script of the page runs.
OBSERVER = """
window.__truth = {shown: {}, submitted: {}};
new MutationObserver(() => {
  for (const trial of document.querySelectorAll('.cs-trial:not([data-watched])')) {
    trial.dataset.watched = "1";
    const images = [...trial.querySelectorAll('img')];
    Promise.allSettled(images.map((img) => img.decode())).then(() =>
      requestAnimationFrame((frame) => { window.__truth.shown[trial.dataset.trial] = frame; }));
  }
}).observe(document, {childList: true, subtree: true});
for (const kind of ['click', 'keydown']) {
  window.addEventListener(kind, (event) => {
    if (!event.isTrusted || (kind === 'keydown' && event.key !== 'Enter')) return;
    const trial = document.querySelector('.cs-trial');
    if (trial && !(trial.dataset.trial in window.__truth.submitted)
        && (kind === 'keydown' || event.target.closest('.cs-next'))) {
      window.__truth.submitted[trial.dataset.trial] = event.timeStamp;
    }
  }, true);
}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = Server(build_study_folder(tmp_path_factory.mktemp("rt") / "study")).start()
    yield s
    s.stop()


def stored_times(study, pid: str) -> dict[int, tuple[int, int]]:
    from study.results.export import export_tables
    responses = export_tables(study, n_resamples=10)["responses"]
    mine = responses[responses.external_id == pid]
    return {int(r.trial_index): (int(r.rt_ms), int(r.server_rt_ms)) for r in mine.itertuples()}


def answer_at_known_intervals(server, pid: str) -> list[tuple[float, int, int]]:
    """(true interval, stored rt_ms, stored server_rt_ms) of each answer."""
    from playwright.sync_api import sync_playwright

    delays = random.Random(pid)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1366, "height": 768})
        context.set_default_timeout(60_000)
        context.add_init_script(OBSERVER)

        def late(route):                                 # a slow connection: every stimulus 300-600 ms late
            time.sleep(delays.uniform(0.3, 0.6))
            route.continue_()
        context.route("**/stimuli/*", late)
        page = context.new_page()
        page.goto(link(server.url, pid))
        page.get_by_role("button", name="I agree to take part").click()
        page.get_by_role("button", name="Start").click()
        submitted = []
        for n, target in enumerate(INTERVALS_MS, start=1):
            page.get_by_text(question(n)).wait_for()
            page.locator(trial_shown(n)).wait_for()
            shown = page.wait_for_function(f"() => window.__truth.shown['{n - 1}']").json_value()
            groups = page.locator(TRIAL).locator(RADIOGROUP)
            page.keyboard.press("1")                       # choose (answer, and a confidence where asked)
            if groups.count() > 1:
                page.keyboard.press("a")
            next_button = page.locator(TRIAL).get_by_role("button", name="Next").bounding_box()
            page.mouse.move(next_button["x"] + 10, next_button["y"] + 10)
            now = page.evaluate("performance.now()")
            time.sleep(max(0.0, (shown + target - now) / 1000) - 0.003)
            if n % 2:
                page.mouse.down()
                page.mouse.up()
            else:
                page.keyboard.press("Enter")
            page.get_by_text(question(n + 1)).or_(page.get_by_role("button", name="Continue")).first.wait_for()
            settle(page)
            truth = page.evaluate(f"window.__truth.submitted['{n - 1}'] - window.__truth.shown['{n - 1}']")
            submitted.append((n - 1, truth))
            if page.get_by_role("button", name="Continue").is_visible():
                page.get_by_role("button", name="Continue").click()
        browser.close()
    stored = stored_times(server.study_dir, pid)
    return [(truth, *stored[index]) for index, truth in submitted]


def check(results: list[tuple[float, int, int]], label: str) -> None:
    errors = [abs(rt - truth) for truth, rt, _ in results]
    server_errors = [server_rt - truth for truth, _, server_rt in results]
    print(f"\n{label}: true intervals {[round(t) for t, _, _ in results]} ms; stored rt_ms off by median "
          f"{statistics.median(errors):.1f} ms, worst {max(errors):.1f} ms; server_rt_ms off by median "
          f"{statistics.median(server_errors):+.0f} ms, worst {max(server_errors):+.0f} ms")
    assert all(800 <= truth <= 2500 for truth, _, _ in results), results    # the participant kept to the plan
    assert statistics.median(errors) <= TOLERANCE_MEDIAN_MS, results
    assert max(errors) <= TOLERANCE_WORST_MS, results


def test_stored_response_times_are_the_intervals_on_screen_when_quiet(server):
    check(answer_at_known_intervals(server, "P-rt-quiet"), "quiet")


def test_stored_response_times_are_the_intervals_on_screen_with_both_cores_busy(server):
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 2)]
    try:
        results = answer_at_known_intervals(server, "P-rt-busy")
    finally:
        for process in busy:
            process.kill()
            process.wait()
    check(results, f"{len(busy)} cores busy")
