"""The survey in a real browser: Debian's Chromium driven by Playwright against
`camstudy serve` on 127.0.0.1 — a full run, a reload that resumes, a phone, the admin login, and
the careless participant: corrections on the keyboard, a double click, a long comment, a pilot flag
typed into the link, a lost cookie, a withdrawn link opened again.

The tests photograph every screen they pass. With CAMSTUDY_SCREENSHOTS=docs/screenshots the study
is built with real maps and the pictures land there (the README's screenshots); otherwise in a
temporary folder.
"""
from __future__ import annotations

import re
from urllib.parse import urlparse
from pathlib import Path

import pytest
from sqlalchemy import select

from _ui_fixtures import (CHROMIUM_ARGS, RADIOGROUP, SCREENSHOTS, TRIAL, Server, after_submit, answer,
                          build_study_folder, chromium_path, link, question, settle, shots, take_part, trial_shown)
from study.store.database import Participant

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(chromium_path() is None, reason="Debian's chromium is not installed "
                       "(playwright cannot download its own browser here)"),
]
PASSWORD = "correct horse battery staple"
LAPTOP = {"width": 1366, "height": 768}
# The opening words of every task's prompt in German (study.protocol.messages).
GERMAN_QUESTION = re.compile(r"Das Bild enthält|Welche Karte|Wie gut hebt|Beide Modelle|Dies sind die|Das Modell sagt|"
                             r"Diese Frage prüft")
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    folder = build_study_folder(tmp_path_factory.mktemp("ui") / "study", real_maps=bool(SCREENSHOTS))
    if SCREENSHOTS:  # results for the admin dashboard's picture
        from study.survey.simulator import simulate_participants
        simulate_participants(folder, 12, {"gradcam": 0.85, "cam": 0.6})
    return folder


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
    context = browser.new_context(viewport=LAPTOP)
    context.set_default_timeout(30_000)
    yield context.new_page()
    context.close()


class Camera:
    """A full-page screenshot of the first screen of each kind a participant passes, named as in
    docs/screenshots (trials by task type); and, on every trial, whether its Next button is on
    the first screenful, so that no one has to scroll to find the choices."""

    def __init__(self, study: Path, out: Path, pid: str):
        from study.survey.session import SurveySession
        self.session, self.out, self.pid = SurveySession(study), out, pid
        self.participant: int | None = None
        self.taken: list[str] = []
        self.below_the_fold: list[str] = []

    NAMES = {"consent": "01-consent", "instructions": "02-instructions", "trial": "03-trial",
             "feedback": "04-practice-feedback", "questionnaire": "05-questionnaire",
             "completion": "06-completion"}

    def __call__(self, page, screen: str) -> bool:
        name = self.NAMES[screen]
        if screen == "trial":
            if self.participant is None:
                with self.session.db.read() as s:
                    self.participant = s.scalar(select(Participant.id).where(Participant.external_id == self.pid))
            trial = self.session.next_trial(self.participant)
            kind = ("practice" if trial.is_practice else "attention-check" if trial.is_attention_check
                    else trial.task)
            next_button = page.get_by_role("button", name="Next").bounding_box()
            if next_button["y"] + next_button["height"] > page.viewport_size["height"]:
                self.below_the_fold.append(kind)
            name = f"{name}-{kind}"
        if name not in self.taken:
            self.taken.append(name)
            page.mouse.move(0, 0)  # no hover controls on the pictures
            page.screenshot(path=self.out / f"{name}.png", full_page=True)
        return False


def answers_of(study, pid: str) -> list[int]:
    """Trial indexes stored for one external id, straight from the export."""
    from study.results.export import export_tables
    responses = export_tables(study, n_resamples=10)["responses"]
    return sorted(responses.loc[responses.external_id == pid, "trial_index"].tolist())


def test_full_run_from_link_to_completion_code(server, study, browser, page, shots):
    requested = []
    page.context.on("request", lambda request: requested.append(request.url))
    camera = Camera(study, shots, "P-full")

    def look(page, screen):
        if screen == "trial" and not hasattr(look, "checked"):
            look.checked = True
            images = page.locator(".cs-stimulus img")
            assert images.count() and all(images.nth(i).get_attribute("alt") for i in range(images.count()))
            page.locator(".keyboard-hint").wait_for(state="visible", timeout=10_000)   # a laptop has keys
        return camera(page, screen)

    stimuli = []
    page.context.on("response", lambda r: stimuli.append(r) if "/stimuli/" in r.url else None)
    answered = take_part(page, server.url, "P-full", keyboard_every=2, on_screen=look, comment="long " * 1200)
    assert answered == 20
    assert {f"03-trial-{task}" for task in ("class_discrimination", "compare", "rating", "trust",
                                            "distinction", "agreement")} <= set(camera.taken)
    assert camera.below_the_fold == [], "the choices are below the fold on a 1366x768 laptop"
    assert page.locator('[data-testid="stCode"]').inner_text().strip() == "CAMSTUDY-OK"
    href = page.get_by_role("link", name="Return to the study platform").get_attribute("href")
    assert href == "https://app.prolific.com/submissions/complete?cc=CAMSTUDY-OK"
    assert answers_of(study, "P-full") == list(range(20))
    # A 6,000-character comment does not stop anyone finishing: the first 5,000 (the limit the box shows) are kept.
    from study.results.export import export_tables
    comments = export_tables(study, n_resamples=10)["questionnaire"].query("external_id == 'P-full' and key == 'comments'")
    assert comments["value"].str.len().tolist() == [5000]
    # The stimuli are static files of the server: opaque names, cacheable for a year, no 404.
    assert stimuli and all(r.status == 200 and re.fullmatch(r".*/stimuli/[0-9a-f]{32}\.jpg", r.url)
                           and "immutable" in r.headers["cache-control"] for r in stimuli)
    # A participant sees a study, not a developer tool.
    assert page.get_by_text("Deploy").count() == 0
    for chrome in ("stToolbar", "stMainMenu", "stHeader", "stAppDeployButton"):
        assert page.get_by_test_id(chrome).is_hidden(), chrome
    page.goto(link(server.url, "P-full"))   # a reload after finishing: the code again
    page.get_by_text("already been used").wait_for()
    assert page.locator('[data-testid="stCode"]').inner_text().strip() == "CAMSTUDY-OK"
    # No request of a participant's page leaves the study server (no fonts, icons or trackers).
    hosts = {urlparse(url).netloc for url in requested if urlparse(url).scheme in ("http", "https", "ws", "wss")}
    assert hosts == {urlparse(server.url).netloc}, hosts
    # Whoever else opens the finished link sees neither the code nor anything of the participant's.
    stranger = browser.new_context().new_page()
    stranger.goto(link(server.url, "P-full"))
    stranger.get_by_text("This link has already been used").wait_for()
    assert stranger.locator('[data-testid="stCode"]').count() == 0
    stranger.context.close()


def test_reload_in_the_middle_resumes(server, study, browser, page, shots):
    assert take_part(page, server.url, "P-reload", stop_after=5) == 5
    page.reload()
    page.get_by_text(question(6)).wait_for()
    assert answers_of(study, "P-reload") == [0, 1, 2, 3, 4]
    second_tab = page.context.new_page()   # the same browser keeps its credential: it resumes
    second_tab.goto(link(server.url, "P-reload"))
    second_tab.get_by_text(question(6)).wait_for()
    page.close()
    other = browser.new_context(viewport=LAPTOP).new_page()   # another browser with the link: in use, nothing shown
    other.goto(link(server.url, "P-reload"))
    other.get_by_text("This link is in use in another browser").wait_for()
    other.get_by_label("Resume code").wait_for()               # the way on: the code shown at consent
    settle(other)
    assert other.get_by_text(question(6)).count() == 0 and other.locator(TRIAL).count() == 0
    other.screenshot(path=shots / "11-link-in-use.png", full_page=True)
    other.context.close()


def test_a_link_without_a_personal_id_is_refused(server, browser):
    shared = browser.new_context().new_page()     # Prolific's STUDY_ID is the same for everyone
    shared.goto(f"{server.url}/?STUDY_ID=ui-test&SESSION_ID=s-1")
    shared.get_by_text("Please use your study link").wait_for()
    assert shared.get_by_role("button", name="I agree to take part").count() == 0
    shared.context.close()


def test_a_stale_tab_is_told_the_question_was_answered(server, study, page):
    assert take_part(page, server.url, "P-stale", stop_after=3) == 3
    stale = page.context.new_page()
    stale.goto(link(server.url, "P-stale"))
    stale.get_by_text(question(4)).wait_for()
    settle(stale)
    answer(page, 4)                                # answered in the first tab ...
    after_submit(page, 4).wait_for()
    answer(stale, 4)                               # ... then again in the stale one
    stale.get_by_text("already been answered in another tab").wait_for()
    stale.get_by_text(question(5)).wait_for()
    assert answers_of(study, "P-stale") == [0, 1, 2, 3]


def test_withdrawal_ends_the_study_deletes_the_answers_and_the_link_cannot_start_again(server, study, page, shots):
    assert take_part(page, server.url, "P-withdraw", stop_after=2) == 2
    assert answers_of(study, "P-withdraw") == [0, 1]
    page.get_by_role("button", name="Withdraw from the study").click()
    page.get_by_text("all your answers are deleted").wait_for()
    settle(page)
    page.screenshot(path=shots / "10-withdraw-confirmation.png", full_page=True)
    page.get_by_role("button", name="Withdraw", exact=True).click()
    page.get_by_text("You have withdrawn").wait_for()
    assert answers_of(study, "P-withdraw") == []
    page.goto(link(server.url, "P-withdraw"))          # the same link again: it does not start over
    page.get_by_text("This link has already been used").wait_for()
    assert page.get_by_role("button", name="I agree to take part").count() == 0


def test_a_keyboard_correction_stores_the_final_choice_with_its_confidence(server, study, page):
    """1, then 2 (a correction of the answer), then D (the fourth confidence), then Enter."""
    def with_confidence(page, screen):
        return screen == "trial" and page.locator(TRIAL).locator(RADIOGROUP).count() == 2
    n = take_part(page, server.url, "P-keys", on_screen=with_confidence) + 1
    page.locator(trial_shown(n)).wait_for()
    second = page.locator(TRIAL).locator(RADIOGROUP).nth(0).locator("input").nth(1).get_attribute("value")
    for key in ("1", "2", "d", "Enter"):
        page.keyboard.press(key)
    after_submit(page, n).wait_for()
    from study.results.export import export_tables
    responses = export_tables(study, n_resamples=10)["responses"].set_index(["external_id", "trial_index"])
    stored = responses.loc[("P-keys", n - 1)]
    assert (stored["response"], stored["confidence"]) == (second, 4)


def test_a_double_click_on_next_is_stored_once_and_not_called_another_tab(server, study, page):
    assert take_part(page, server.url, "P-double", stop_after=2) == 2
    page.locator(trial_shown(3)).wait_for()
    page.locator(TRIAL).locator(RADIOGROUP).first.locator("label").first.click()
    page.locator(TRIAL).get_by_role("button", name="Next").dblclick()
    page.locator(trial_shown(4)).wait_for()            # the component drawn: it is what hears the keys
    page.keyboard.press("1")
    if page.locator(TRIAL).locator(RADIOGROUP).count() > 1:
        page.keyboard.press("a")
    page.keyboard.press("Enter")                       # Enter twice, quickly
    page.keyboard.press("Enter")
    after_submit(page, 4).wait_for()
    settle(page)
    assert page.get_by_text("another tab").count() == 0
    assert answers_of(study, "P-double") == [0, 1, 2, 3]


def test_a_pilot_flag_typed_into_a_link_does_nothing(server, study, page):
    page.goto(link(server.url, "P-not-a-pilot") + "&pilot=1")
    page.get_by_role("button", name="I agree to take part").wait_for()
    settle(page)
    assert page.get_by_text("Pilot run").count() == 0
    page.get_by_role("button", name="I agree to take part").click()
    page.get_by_role("button", name="Start").wait_for()
    from study.results.export import export_tables
    people = export_tables(study, n_resamples=10, include_pilot=True)["participants"].set_index("external_id")
    assert not people.loc["P-not-a-pilot", "is_pilot"]


def test_a_participant_whose_cookie_is_gone_continues_with_the_resume_code(server, study, browser, page):
    assert take_part(page, server.url, "P-cookie", stop_after=2) == 2
    code = page.get_by_text(re.compile(r"^Your resume code: ")).inner_text().split(": ")[1]
    fresh = browser.new_context(viewport=LAPTOP).new_page()      # cookies cleared, or another device
    fresh.goto(link(server.url, "P-cookie"))
    fresh.get_by_text("This link is in use in another browser").wait_for()
    fresh.get_by_label("Resume code").fill("WRONG-CODE")
    fresh.get_by_role("button", name="Continue in this browser").click()
    fresh.get_by_text("tries left").wait_for()
    fresh.get_by_label("Resume code").fill(code.lower())
    fresh.get_by_role("button", name="Continue in this browser").click()
    fresh.get_by_text(question(3)).wait_for()                   # where they stopped
    answer(fresh, 3)
    after_submit(fresh, 3).wait_for()
    assert answers_of(study, "P-cookie") == [0, 1, 2]
    page.reload()                                               # the first browser no longer holds the link
    page.get_by_text("This link is in use in another browser").wait_for()
    fresh.context.close()


def test_a_phone_stacks_side_by_side_maps(server, browser, shots):
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    context.set_default_timeout(30_000)
    phone = context.new_page()
    maps = phone.locator(".cs-stimulus img")
    take_part(phone, server.url, "P-phone", on_screen=lambda page, screen: screen == "trial" and maps.count() == 2)
    assert maps.count() == 2, "the study has side-by-side trials"
    assert all(maps.nth(i).get_attribute("alt") for i in range(2)), "stimuli need alt text"
    assert phone.locator(".keyboard-hint").is_hidden(), "no keyboard hint on a touch screen"
    first, second = maps.nth(0).bounding_box(), maps.nth(1).bounding_box()
    assert second["y"] >= first["y"] + first["height"] - 1, "the two maps should stack on a phone"
    assert first["x"] >= 0 and first["x"] + first["width"] <= PHONE["width"]
    phone.screenshot(path=shots / "07-phone-side-by-side.png", full_page=True)
    context.close()


def test_admin_login_refuses_a_wrong_password_and_accepts_the_right_one(server, page, shots):
    page.goto(f"{server.url}/admin")
    password = page.locator('input[type="password"]')
    password.wait_for()
    settle(page)
    page.screenshot(path=shots / "08-admin-login.png", full_page=True)
    password.fill("wrong")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text("Wrong password.").wait_for()
    assert page.get_by_text("Results per method").count() == 0
    password.fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text("Results per method").wait_for()
    page.get_by_role("button", name="Write the CSV files").wait_for()
    assert page.locator('[data-testid="stDownloadButton"]').count() == 0
    assert PASSWORD not in page.url
    page.set_viewport_size({"width": LAPTOP["width"], "height": 2600})  # the whole dashboard
    settle(page)
    page.screenshot(path=shots / "09-admin-dashboard.png", full_page=True)


def test_admin_sign_in_locks_a_guessing_address_not_the_researcher(server, browser):
    """Last of the admin tests: the guessing address stays locked for five minutes on this server. The
    addresses come as a trusted proxy (127.0.0.1, by default) forwards them."""
    def visitor(address):
        tab = browser.new_context(extra_http_headers={"X-Forwarded-For": address}).new_page()
        tab.goto(f"{server.url}/admin")
        tab.locator('input[type="password"]').wait_for()
        return tab

    guesser = visitor("198.51.100.7")
    for attempt in range(10):
        guesser.locator('input[type="password"]').fill(f"guess {attempt}")
        guesser.get_by_role("button", name="Sign in").click()
        guesser.get_by_text("Wrong password.").or_(guesser.get_by_text("Too many failed attempts")).first.wait_for()
        settle(guesser)
    guesser.locator('input[type="password"]').fill(PASSWORD)
    guesser.get_by_role("button", name="Sign in").click()
    guesser.get_by_text("Too many failed attempts").wait_for()        # the guesser is locked out ...
    researcher = visitor("203.0.113.20")
    researcher.locator('input[type="password"]').fill(PASSWORD)
    researcher.get_by_role("button", name="Sign in").click()
    researcher.get_by_text("Results per method").wait_for()         # ... the researcher is not
    from study.survey.session import SurveySession
    from study.store.database import Event
    with SurveySession(server.study_dir).db.read() as s:
        logged = s.scalars(select(Event.detail).where(Event.kind == "admin_login_failed")).all()
    assert {"address": "198.51.100.7"} in logged                    # the client, not "unknown" or the proxy
    for tab in (guesser, researcher):
        tab.context.close()


@pytest.fixture(scope="module")
def german_server(tmp_path_factory):
    folder = build_study_folder(tmp_path_factory.mktemp("ui-de") / "study", german=True)
    s = Server(folder).start()
    yield s
    s.stop()


def test_the_german_survey_from_consent_to_a_stored_answer(german_server, browser, page):
    page.goto(link(german_server.url, "P-de") + "&lang=de")
    page.get_by_text("visuelle Erklärungen").wait_for()
    page.get_by_role("button", name="Ich bin einverstanden und nehme teil").click()
    page.get_by_role("button", name="Beginnen").wait_for()
    settle(page)
    page.get_by_text("Die ersten Fragen sind Übungsfragen").wait_for()
    page.get_by_role("button", name="Beginnen").click()
    page.get_by_text(re.compile(r"^Frage 1 von \d+$")).wait_for()
    page.locator(trial_shown(1)).wait_for()            # the component is drawn after the script's run
    assert page.get_by_text(GERMAN_QUESTION).count() >= 1         # the trial's own wording is German
    assert page.locator(TRIAL).get_by_text("Ihre Antwort").count() == 1
    assert page.get_by_role("button", name="Weiter").count() == 1
    assert page.get_by_role("button", name="Next").count() == 0
    answer(page, 1, keyboard=True)
    page.get_by_role("button", name="Fortfahren").or_(page.get_by_text(re.compile(r"^Frage 2 von"))).first.wait_for()
    assert answers_of(german_server.study_dir, "P-de") == [0]
    from study.results.export import export_tables
    people = export_tables(german_server.study_dir, n_resamples=10)["participants"]
    assert people.loc[people.external_id == "P-de", "language"].tolist() == ["de"]
    # Without ?lang=, a browser that prefers German gets German; others the default, English.
    for locale, button in (("de-DE", "Ich bin einverstanden und nehme teil"), ("fr-FR", "I agree to take part")):
        other = browser.new_context(locale=locale).new_page()
        other.goto(link(german_server.url, f"P-{locale}"))
        other.get_by_role("button", name=button).wait_for()
        other.context.close()
