"""Every screen of the survey and every task type, driven with Streamlit's AppTest against an
in-memory session (tests/_ui_fixtures.py). The trial component's page side (trial.js) runs only in a
browser; here its submissions are sent as the browser sends them (`submit`)."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from streamlit.proto.WidgetStates_pb2 import WidgetState
from streamlit.runtime.state.session_state import STREAMLIT_INTERNAL_KEY_PREFIX
from streamlit.testing.v1 import AppTest

from _ui_fixtures import PILOT_TOKEN, TRIALS, FakeSurveySession, make_config, use_fake
from study.survey.session import LinkInUse
from ui.tasks_view import _keyboard_hint

APP = str(Path(__file__).resolve().parents[1] / "ui" / "app.py")


@pytest.fixture
def fake(tmp_path, monkeypatch):
    s = FakeSurveySession(tmp_path / "stimuli")
    use_fake(monkeypatch, s)
    return s


def open_app(**params) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=30)
    for key, value in params.items():
        at.query_params[key] = value
    return at.run()


def texts(at) -> str:
    parts = [e.value for kind in ("markdown", "header", "title", "info", "success", "error",
                                  "warning", "caption", "code")
             for e in getattr(at, kind)]
    return "\n".join(str(p) for p in parts)


def click(at, label: str) -> AppTest:
    [button] = [b for b in at.button if b.label == label]
    return button.click().run()


def trial_data(at) -> dict:
    """What the trial component on screen was given (ui/tasks_view.py)."""
    [component] = at.get("bidi_component")
    return json.loads(component.proto.json)


def submit(at, response: str, confidence: str | None = None, rt_ms=1000, trial: int | None = None) -> AppTest:
    """The component's submission, as the browser sends it: a JSON trigger, the other widgets as they are."""
    [component] = at.get("bidi_component")
    trial = trial_data(at)["trial"] if trial is None else trial
    states = at._tree.get_widget_states()
    states.widgets.append(WidgetState(
        id=f"{STREAMLIT_INTERNAL_KEY_PREFIX}_{component.proto.id}__events",
        json_trigger_value=json.dumps([{"event": "submit", "value": {"trial": trial, "response": response,
                                                                    "confidence": confidence, "rt_ms": rt_ms}}])))
    return at._run(states)


def answer_current(at, value: str, confidence: str | None = None, rt_ms=1000) -> AppTest:
    return submit(at, value, confidence, rt_ms)


def to_trials(at) -> AppTest:
    click(at, "I agree to take part")
    return click(at, "Start")


def test_consent_screen_shows_study_text(fake):
    at = open_app(PROLIFIC_PID="p1")
    assert not at.exception
    assert at.title[0].value == "Which explanation helps?"
    assert "judge **heatmaps**" in texts(at)
    assert fake.people[0].consented is None


def test_declining_ends_politely_and_the_link_cannot_restart(fake):
    at = click(open_app(PROLIFIC_PID="p1"), "I do not agree")
    assert "chose not to take part" in texts(at)
    assert fake.people[0].consented is False and fake.people[0].answers == {}
    again = open_app(PROLIFIC_PID="p1")
    assert "already been used" in texts(again)
    assert "completion code" not in texts(again)    # a refusal earns no code
    assert not again.radio


def test_link_without_id_is_refused_unless_anonymous(fake):
    at = open_app()
    assert "Please use your study link" in texts(at)
    assert fake.people == []


def test_anonymous_entry_writes_its_id_into_the_url_and_resumes(fake):
    fake.config = make_config(allow_anonymous=True)
    at = to_trials(open_app())
    answer_current(at, "5")
    pid = at.query_params["pid"]
    assert pid == [fake.people[0].external_id] or pid == fake.people[0].external_id
    again = open_app(pid=fake.people[0].external_id)
    assert len(fake.people) == 1
    assert again.session_state.phase == "trials"


def test_only_prolific_pid_or_pid_identify_a_person():
    from study.store.identity import context_from, external_id_from
    assert external_id_from({"STUDY_ID": "s", "PROLIFIC_PID": "p"}) == "p"
    assert external_id_from({"pid": "x", "SESSION_ID": "y"}) == "x"
    assert external_id_from({"PROLIFIC_PID": " p ", "pid": "x"}) == "p"
    assert external_id_from({"STUDY_ID": "s", "SESSION_ID": "y"}) is None    # shared by everyone in a study
    assert external_id_from({"pid": "  "}) is None
    assert context_from({"PROLIFIC_PID": "p", "STUDY_ID": "s", "SESSION_ID": "y"}) == {"STUDY_ID": "s",
                                                                                       "SESSION_ID": "y"}


def test_odd_ids_are_refused(fake):
    at = open_app(pid="<script>alert(1)</script>")
    assert "Please use your study link" in texts(at)
    assert fake.people == []


def test_instructions_show_an_example_map_and_the_resume_code(fake):
    at = click(open_app(PROLIFIC_PID="p1"), "I agree to take part")
    assert at.header[0].value == "Instructions"
    assert "Your resume code is **ABCD-2345**" in texts(at)
    [example] = [h.proto.body for h in at.get("html") if "<figure" in h.proto.body]
    assert 'src="/stimuli/stim0.png"' in example and "tabby cat" in example     # a static file of the server
    assert "Your resume code: ABCD-2345" in texts(at)                           # and under every screen after


def test_the_practice_notice_only_where_there_is_practice(fake):
    notice = "The first questions are practice"
    assert notice in texts(click(open_app(PROLIFIC_PID="p1"), "I agree to take part"))
    fake.has_practice = False
    assert notice not in texts(click(open_app(PROLIFIC_PID="p2"), "I agree to take part"))


def test_practice_gives_feedback_after_the_stored_answer(fake):
    at = to_trials(open_app(PROLIFIC_PID="p1"))
    assert "Practice question" in texts(at)
    assert "Question 1 of 8" in at.get("progress")[0].proto.text
    assert trial_data(at)["trial"] == 0
    answer_current(at, "5")
    assert fake.people[0].answers[0] == ("5", 1000, None)
    assert at.success[0].value == "Correct!"
    assert "The cat is on the left." in texts(at)
    click(at, "Continue")
    assert trial_data(at)["trial"] == 1 and "Question 2 of 8" in at.get("progress")[0].proto.text


def test_wrong_practice_answer_says_so(fake):
    at = answer_current(to_trials(open_app(PROLIFIC_PID="p1")), "2")
    assert at.error[0].value == "Not quite."


@pytest.mark.parametrize("index", range(1, len(TRIALS)))
def test_each_task_type_gives_the_component_its_images_and_choices(fake, index):
    to_trials(open_app(PROLIFIC_PID="p1"))
    for i in range(index):
        fake.answer(0, i, TRIALS[i][2][0][0], rt_ms=1000,
                    confidence=TRIALS[i][3][0][0] if TRIALS[i][3] else None)
    at = open_app(PROLIFIC_PID="p1")                   # the participant comes back at trial `index`
    task, n_images, options, confidence, *_ = TRIALS[index]
    assert task in at.markdown[0].value or task in texts(at)
    data = trial_data(at)
    assert [image["src"] for image in data["images"]] == [f"/stimuli/stim{k}.png" for k in range(n_images)]
    assert all(image["alt"] for image in data["images"])
    assert data["options"] == [list(o) for o in options] and data["confidence"] == [list(o) for o in confidence]
    assert data["text"]["next"] == "Next" and "choose an answer" in data["text"]["hint"]
    assert ("confidence" in data["text"]["hint"]) == bool(confidence)     # only the keys this trial answers to
    answer_current(at, options[-1][0], confidence[-1][0] if confidence else None)
    assert fake.people[0].answers[index] == (options[-1][0], 1000, confidence[-1][0] if confidence else None)


def test_a_screen_to_study_hints_only_that_enter_goes_on():
    study_screen = SimpleNamespace(options=(), confidence_options=())
    assert _keyboard_hint(study_screen) == "trial.keyboard_hint_next"


def test_full_run_to_completion_code(fake):
    at = to_trials(open_app(PROLIFIC_PID="p1"))
    for index, (_, _, options, confidence, _, practice, _) in enumerate(TRIALS):
        answer_current(at, options[0][0], confidence[0][0] if confidence else None)
        if practice:
            click(at, "Continue")
    assert at.session_state.phase == "questionnaire"
    assert [r.label for r in at.radio] == ["Your age group"]
    at.radio[0].set_value("30-49")
    [comments] = at.text_area
    assert "5000 characters" in comments.proto.placeholder                           # a visible limit
    comments.input("fine")
    at = click(at, "Finish")
    assert "C0DE42" in texts(at)
    assert fake.people[0].questionnaire == {"age": "30-49", "comments": "fine"}
    [link] = at.get("link_button")
    assert link.proto.url == "https://app.prolific.com/submissions/complete?cc=C0DE42"
    again = open_app(PROLIFIC_PID="p1")     # a reload after finishing shows the code again
    assert "already been used" in texts(again) and "C0DE42" in texts(again)
    assert again.get("link_button")[0].proto.url.endswith("cc=C0DE42")
    assert not again.get("bidi_component") and len(fake.people) == 1


def test_reload_resumes_at_first_unanswered_trial(fake):
    at = to_trials(open_app(PROLIFIC_PID="p1"))
    answer_current(at, "5")
    click(at, "Continue")
    answer_current(at, "a")
    again = open_app(PROLIFIC_PID="p1")
    assert again.session_state.phase == "trials"
    assert trial_data(again)["trial"] == 2
    assert "Question 3 of 8" in again.get("progress")[0].proto.text


def test_the_response_time_stored_is_the_one_the_browser_measured(fake):
    at = to_trials(open_app(PROLIFIC_PID="p1"))
    answer_current(at, "5", rt_ms=1234.4)
    click(at, "Continue")
    answer_current(at, "a", rt_ms=-50)                   # a page that sends nonsense is clamped, not stored as is
    assert [fake.people[0].answers[i][1] for i in (0, 1)] == [1234, 0]


def test_a_submission_sent_twice_is_stored_once_and_not_called_another_tab(fake):
    at = to_trials(open_app(PROLIFIC_PID="p1"))
    answer_current(at, "5")
    click(at, "Continue")
    at = answer_current(at, "a")
    at = submit(at, "b", trial=1)                        # the same trial again (a double click, a resend)
    assert fake.people[0].answers[1][0] == "a" and 2 not in fake.people[0].answers
    assert "another tab" not in texts(at) and trial_data(at)["trial"] == 2


def test_a_second_tab_cannot_answer_again_and_is_told_so(fake):
    tab1 = to_trials(open_app(PROLIFIC_PID="p1"))
    tab2 = click(open_app(PROLIFIC_PID="p1"), "Start")
    answer_current(tab1, "5")
    submit(tab2, "3", trial=0)
    assert fake.people[0].answers.keys() == {0}
    assert fake.people[0].answers[0][0] == "5"
    assert "already been answered in another tab" in texts(tab2)
    assert trial_data(tab2)["trial"] == 1


def test_pilot_notice_only_for_a_real_pilot_link(fake):
    assert "Pilot run" not in texts(open_app(PROLIFIC_PID="p1", pilot="1"))     # typed by hand: nothing
    assert "Pilot run" in texts(open_app(PROLIFIC_PID="p2", pilot=PILOT_TOKEN))


def test_a_participant_whose_cookie_is_gone_continues_with_the_resume_code(fake, monkeypatch):
    click(open_app(PROLIFIC_PID="p1"), "I agree to take part")

    def elsewhere(external_id, *, credential=None, signature=None):   # this browser holds no credential
        raise LinkInUse("in use")
    monkeypatch.setattr(fake, "enter", elsewhere)
    other = open_app(PROLIFIC_PID="p1")
    assert "This link is in use in another browser" in texts(other)
    other.text_input(key="resume-code").input("wrong")
    other = click(other, "Continue in this browser")
    assert "not the resume code of this link (9 tries left)" in texts(other)
    other.text_input(key="resume-code").input("abcd 2345")
    other = click(other, "Continue in this browser")
    assert other.session_state.phase == "instructions" and fake.people[0].credential == "moved"


def test_unexpected_error_shows_a_calm_message(fake, monkeypatch):
    def broken(plan):
        raise RuntimeError("database is on fire")
    monkeypatch.setattr(fake, "show", broken)
    at = to_trials(open_app(PROLIFIC_PID="p1"))
    assert not at.exception
    assert "something went wrong on our side" in at.error[0].value
    assert "fire" not in texts(at)


def admin_app() -> AppTest:
    def script():
        from ui import admin
        admin.page()
    return AppTest.from_function(script, default_timeout=30)


def test_admin_locked_without_a_configured_password(fake, monkeypatch):
    monkeypatch.delenv("CAMSTUDY_ADMIN_PASSWORD", raising=False)
    at = admin_app().run()
    assert "locked" in at.warning[0].value
    assert not at.text_input


def test_admin_refuses_a_wrong_password(fake, monkeypatch):
    monkeypatch.setenv("CAMSTUDY_ADMIN_PASSWORD", "s3cret")
    at = admin_app().run()
    at.text_input[0].input("guess")
    at = click(at, "Sign in")
    assert at.error[0].value == "Wrong password."
    assert "Write the CSV files" not in [b.label for b in at.button]


@pytest.mark.parametrize("source", ["env", "secrets"])
def test_admin_dashboard_after_the_right_password(fake, monkeypatch, source):
    monkeypatch.delenv("CAMSTUDY_ADMIN_PASSWORD", raising=False)
    at = admin_app()
    if source == "env":
        monkeypatch.setenv("CAMSTUDY_ADMIN_PASSWORD", "s3cret")
    else:
        at.secrets["admin_password"] = "s3cret"
    at.run()
    at.text_input[0].input("s3cret")
    at = click(at, "Sign in")
    assert not at.exception
    assert fake.config_hash in texts(at)
    assert not at.get("download_button")          # no download URL reachable without signing in
    assert "Write the CSV files" in [b.label for b in at.button]
    assert [(m.label, m.value) for m in at.metric] == [("Participants", "2"), ("Completed", "0"),
                                                         ("Excluded", "1"), ("Withdrawn or erased", "0"),
                                                         ("Consent page views", "3")]
    assert len(at.get("vega_lite_chart")) == 1
    assert at.selectbox(key="preview-trial").value == 0        # any trial can be previewed
    assert "Preview a trial" in [e.label for e in at.expander]
    assert len(at.get("progress")) == len({t[0] for t in TRIALS})


def test_lang_de_shows_the_survey_in_german_from_consent_to_the_questionnaire(fake):
    at = open_app(PROLIFIC_PID="p1", lang="de")
    assert "**Heatmaps** zu beurteilen" in texts(at)
    assert {b.label for b in at.button} >= {"Ich bin einverstanden und nehme teil", "Ich bin nicht einverstanden"}
    click(at, "Ich bin einverstanden und nehme teil")
    assert fake.people[0].language == "de"
    assert at.header[0].value == "Anleitung" and "Jede Frage zeigt ein Bild." in texts(at)
    [example] = [h.proto.body for h in at.get("html") if "<figure" in h.proto.body]
    assert "Tigerkatze" in example and "tabby" not in example       # the example's class, in German too
    assert "Von der Studie zurücktreten" in [b.label for b in at.button]
    click(at, "Beginnen")
    assert "Frage 1 von 8" in at.get("progress")[0].proto.text
    assert "Übungsfrage" in texts(at) and "wie gut hebt sie die *Katze* hervor" in texts(at)
    wording = trial_data(at)["text"]
    assert (wording["answer"], wording["next"]) == ("Ihre Antwort", "Weiter")
    assert wording["choose"].startswith("Bitte wählen Sie eine Antwort")
    answer_current(at, "5")
    assert at.success[0].value == "Richtig!"
    click(at, "Fortfahren")
    for index in range(1, len(TRIALS)):
        fake.answer(0, index, TRIALS[index][2][0][0], rt_ms=1000)
    at = open_app(PROLIFIC_PID="p1")                   # back later: still German, at the questionnaire
    assert at.header[0].value == "Fast geschafft"
    assert [r.label for r in at.radio] == ["Ihre Altersgruppe"]
    assert at.radio[0].options == ["18-29 Jahre", "30-49 Jahre", "50+ Jahre"]
    at.radio[0].set_value("30-49")       # the default language's option is what is stored
    at = click(at, "Abschließen")
    assert fake.people[0].questionnaire == {"age": "30-49"}
    assert "Vielen Dank!" in texts(at) and "Ihr Abschlusscode" in texts(at)
    assert at.get("link_button")[0].proto.label == "Zurück zur Studienplattform"


def test_a_resumed_participant_keeps_their_language_and_unknown_ones_fall_back(fake):
    click(click(open_app(PROLIFIC_PID="p1", lang="de"), "Ich bin einverstanden und nehme teil"), "Beginnen")
    again = open_app(PROLIFIC_PID="p1")            # no ?lang= now: still German
    assert again.header[0].value == "Anleitung"
    other = open_app(PROLIFIC_PID="p2", lang="xx")
    assert "I agree to take part" in [b.label for b in other.button]


def test_refusal_pages_speak_german_too(fake):
    at = open_app(lang="de")
    assert "Bitte verwenden Sie Ihren Studienlink" in texts(at)
    at = click(open_app(PROLIFIC_PID="p1", lang="de"), "Ich bin nicht einverstanden")
    assert "Sie haben sich gegen eine Teilnahme entschieden" in texts(at)
