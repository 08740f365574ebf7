"""The survey in a real browser: Debian's Chromium driven by Playwright against
`camstudy serve` on 127.0.0.1 — a full run, a reload that resumes, the admin login."""
from __future__ import annotations

import pytest

from _ui_fixtures import (CHROMIUM_ARGS, Server, build_study_folder, chromium_path, link,
                          question, take_part)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(chromium_path() is None, reason="Debian's chromium is not installed "
                       "(playwright cannot download its own browser here)"),
]
PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return build_study_folder(tmp_path_factory.mktemp("ui") / "study")


@pytest.fixture(scope="module")
def server(study):
    s = Server(study, password=PASSWORD).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def browser():
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(30_000)
    yield context.new_page()
    context.close()


def answers_of(study, pid: str) -> list[int]:
    """Trial indexes stored for one external id, straight from the export."""
    from study.export import export_tables
    responses = export_tables(study, n_resamples=10)["responses"]
    return sorted(responses.loc[responses.external_id == pid, "trial_index"].tolist())


def test_full_run_from_link_to_completion_code(server, study, page):
    answered = take_part(page, server.url, "P-full", keyboard_every=2)
    assert answered == 20
    assert page.locator('[data-testid="stCode"]').inner_text().strip() == "CAMSTUDY-OK"
    href = page.get_by_role("link", name="Return to the study platform").get_attribute("href")
    assert href == "https://app.prolific.com/submissions/complete?cc=CAMSTUDY-OK"
    assert answers_of(study, "P-full") == list(range(20))
    # A participant sees a study, not a developer tool.
    assert page.get_by_text("Deploy").count() == 0
    for chrome in ("stToolbar", "stMainMenu", "stHeader", "stAppDeployButton"):
        assert page.get_by_test_id(chrome).is_hidden(), chrome
    page.goto(link(server.url, "P-full"))   # a reload after finishing: the code again
    page.get_by_text("already been used").wait_for()
    assert page.locator('[data-testid="stCode"]').inner_text().strip() == "CAMSTUDY-OK"


def test_reload_in_the_middle_resumes(server, study, browser, page):
    assert take_part(page, server.url, "P-reload", stop_after=5) == 5
    page.reload()
    page.get_by_text(question(6)).wait_for()
    assert answers_of(study, "P-reload") == [0, 1, 2, 3, 4]
    page.close()  # the tab is closed; the same link in a fresh browser resumes as well
    other = browser.new_context().new_page()
    other.goto(link(server.url, "P-reload"))
    other.get_by_text(question(6)).wait_for()
    other.context.close()


def test_admin_login_refuses_a_wrong_password_and_accepts_the_right_one(server, page):
    page.goto(f"{server.url}/admin")
    password = page.locator('input[type="password"]')
    password.fill("wrong")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text("Wrong password.").wait_for()
    assert page.get_by_text("Results per method").count() == 0
    password.fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text("Results per method").wait_for()
    page.get_by_role("button", name="responses.csv").wait_for()
    assert PASSWORD not in page.url
