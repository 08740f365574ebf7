"""One PNG per survey screen (laptop, plus a phone for side-by-side trials), for
docs/screenshots; run through `bench/survey_load.py screenshots`."""
from __future__ import annotations

import time
from pathlib import Path

from _ui_fixtures import (CHROMIUM_ARGS, FORM, RADIOGROUP, Server, answer, chromium_path, link,
                          question, settle)

PASSWORD = "screenshot-only"
LAPTOP = {"width": 1366, "height": 768}
PHONE = {"width": 390, "height": 844}


def _shoot(page, out: Path, name: str) -> None:
    settle(page)
    page.screenshot(path=out / f"{name}.png", full_page=True)
    print(f"  {name}.png")


def take_screenshots(study: Path, out: Path) -> int:
    from playwright.sync_api import sync_playwright
    from study.session import SurveySession
    from study.simulate import simulate_participants

    out.mkdir(parents=True, exist_ok=True)
    run = int(time.time())  # fresh ids, so the script can run again on the same study
    simulate_participants(study, 12, {"gradcam": 0.85, "cam": 0.6}, seed=run)  # admin data
    session = SurveySession(study)
    server = Server(study, password=PASSWORD).start()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport=LAPTOP)
            page.set_default_timeout(120_000)
            _participant(page, session, server.url, out, f"SHOT-{run}")
            phone = browser.new_page(viewport=PHONE, is_mobile=True, has_touch=True)
            phone.set_default_timeout(120_000)
            _phone(phone, session, server.url, out, f"SHOT-{run}-phone")
            _admin(page, server.url, out)
            browser.close()
    finally:
        server.stop()
    return 0


def _participant(page, session, url: str, out: Path, pid: str) -> None:
    page.goto(link(url, pid))
    page.get_by_role("button", name="I agree to take part").wait_for()
    _shoot(page, out, "01-consent")
    page.get_by_role("button", name="I agree to take part").click()
    page.get_by_role("button", name="Start").wait_for()
    _shoot(page, out, "02-instructions")
    page.get_by_role("button", name="Start").click()
    participant = session.enter(pid).participant_id
    seen, n = set(), 1
    while (trial := session.next_trial(participant)) is not None:
        page.get_by_text(question(n)).wait_for()
        settle(page)
        name = ("practice" if trial.is_practice else
                "attention-check" if trial.is_attention_check else trial.task)
        if name not in seen:
            seen.add(name)
            _shoot(page, out, f"03-trial-{name}")
        answer(page, n)
        page.get_by_text(question(n + 1)).or_(page.get_by_role("button", name="Continue")) \
            .or_(page.get_by_role("button", name="Finish")).first.wait_for()
        settle(page)
        if page.get_by_role("button", name="Continue").is_visible():
            if "feedback" not in seen:
                seen.add("feedback")
                _shoot(page, out, "04-practice-feedback")
            page.get_by_role("button", name="Continue").click()
        n += 1
    page.get_by_role("button", name="Finish").wait_for()
    groups = page.locator(FORM).locator(RADIOGROUP)
    for g in range(groups.count()):
        groups.nth(g).locator("label").nth(1).click()
    _shoot(page, out, "05-questionnaire")
    page.get_by_role("button", name="Finish").click()
    page.get_by_text("Your completion code").wait_for()
    _shoot(page, out, "06-completion")


def _phone(page, session, url: str, out: Path, pid: str) -> None:
    """Side-by-side maps stack on a narrow screen: answer on until a two-image trial shows."""
    page.goto(link(url, pid))
    page.get_by_role("button", name="I agree to take part").click()
    page.get_by_role("button", name="Start").click()
    participant = session.enter(pid).participant_id
    n = 1
    while (trial := session.next_trial(participant)) is not None:
        page.get_by_text(question(n)).wait_for()
        settle(page)
        if len(trial.images) == 2 and not trial.is_practice:
            _shoot(page, out, f"07-phone-{trial.task}")
            return
        answer(page, n)
        page.get_by_text(question(n + 1)).or_(page.get_by_role("button", name="Continue")) \
            .first.wait_for()
        settle(page)
        if page.get_by_role("button", name="Continue").is_visible():
            page.get_by_role("button", name="Continue").click()
        n += 1


def _admin(page, url: str, out: Path) -> None:
    page.goto(f"{url}/admin")
    page.locator('input[type="password"]').wait_for()
    _shoot(page, out, "08-admin-login")
    page.locator('input[type="password"]').fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("button", name="responses.csv").wait_for()
    page.set_viewport_size({"width": LAPTOP["width"], "height": 2600})  # the whole dashboard
    _shoot(page, out, "09-admin-dashboard")
