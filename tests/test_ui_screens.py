"""Every screen of the survey and every task type, driven with Streamlit's AppTest against an
in-memory session (tests/_ui_fixtures.py)."""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest


from _ui_fixtures import TRIALS, FakeSurveySession, make_config, use_fake

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


def answer_current(at, value: str, confidence: str | None = None) -> AppTest:
    at.radio[0].set_value(value)
    if confidence is not None:
        at.radio[1].set_value(confidence)
    return click(at, "Next")


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


def test_instructions_show_an_example_map(fake):
    at = click(open_app(PROLIFIC_PID="p1"), "I agree to take part")
    assert at.header[0].value == "Instructions"
    [example] = at.get("image")
    assert "tabby cat" in example.proto.imgs[0].caption


def test_practice_needs_an_answer_then_gives_feedback(fake):
    at = to_trials(open_app(PROLIFIC_PID="p1"))
    assert "Practice question" in texts(at)
    assert "Question 1 of 8" in at.get("progress")[0].proto.text
    click(at, "Next")
    assert "Please choose an answer" in texts(at)
    assert fake.people[0].answers == {}
    answer_current(at, "5")
    assert at.success[0].value == "Correct!"
    assert "The cat is on the left." in texts(at)
    click(at, "Continue")
    assert at.radio[0].key == "answer-1"


def test_wrong_practice_answer_says_so(fake):
    at = answer_current(to_trials(open_app(PROLIFIC_PID="p1")), "2")
    assert at.error[0].value == "Not quite."


@pytest.mark.parametrize("index", range(1, len(TRIALS)))
def test_each_task_type_renders_its_images_and_choices(fake, index):
    at = to_trials(open_app(PROLIFIC_PID="p1"))
    for i in range(index):
        fake.answer(0, i, TRIALS[i][2][0][0], rt_ms=1000,
                    confidence=TRIALS[i][3][0][0] if TRIALS[i][3] else None)
    at.run()
    if "feedback" in at.session_state:
        click(at, "Continue")
    task, n_images, options, confidence, *_ = TRIALS[index]
    assert task in at.markdown[0].value or task in texts(at)
    assert len(at.get("image")) == n_images
    assert at.radio[0].options == [label for _, label in options]
    assert len(at.radio) == (2 if confidence else 1)
    if confidence:
        click(at, "Next")
        at.radio[0].set_value(options[0][0])
        click(at, "Next")
        assert "and your confidence" in texts(at)
        assert index not in fake.people[0].answers
        answer_current(at, options[0][0], confidence[-1][0])
        assert fake.people[0].answers[index][2] == confidence[-1][0]
    else:
        answer_current(at, options[-1][0])
        assert fake.people[0].answers[index][0] == options[-1][0]


def test_full_run_to_completion_code(fake):
    at = to_trials(open_app(PROLIFIC_PID="p1"))
    for index, (_, _, options, confidence, _, practice, _) in enumerate(TRIALS):
        answer_current(at, options[0][0], confidence[0][0] if confidence else None)
        if practice:
            click(at, "Continue")
    assert at.session_state.phase == "questionnaire"
    assert [r.label for r in at.radio] == ["Your age group"]
    at.radio[0].set_value("30-49")
    at.text_input[0].input("fine")
    at = click(at, "Finish")
    assert "C0DE42" in texts(at)
    assert fake.people[0].questionnaire == {"age": "30-49", "comments": "fine"}
    [link] = at.get("link_button")
    assert link.proto.url == "https://app.prolific.com/submissions/complete?cc=C0DE42"
    again = open_app(PROLIFIC_PID="p1")     # a reload after finishing shows the code again
    assert "already been used" in texts(again) and "C0DE42" in texts(again)
    assert again.get("link_button")[0].proto.url.endswith("cc=C0DE42")
    assert not again.radio and len(fake.people) == 1


def test_reload_resumes_at_first_unanswered_trial(fake):
    at = to_trials(open_app(PROLIFIC_PID="p1"))
    answer_current(at, "5")
    click(at, "Continue")
    answer_current(at, "a")
    again = open_app(PROLIFIC_PID="p1")
    assert again.session_state.phase == "trials"
    assert again.radio[0].key == "answer-2"
    assert "Question 3 of 8" in again.get("progress")[0].proto.text


def test_response_time_is_measured_from_first_display(fake):
    at = to_trials(open_app(PROLIFIC_PID="p1"))
    fake.people[0].shown[0] -= timedelta(seconds=3)
    answer_current(at, "5")
    assert 3000 <= fake.people[0].answers[0][1] < 10000


def test_stale_form_of_a_second_tab_cannot_answer_the_next_trial(fake):
    tab1 = to_trials(open_app(PROLIFIC_PID="p1"))
    tab2 = click(open_app(PROLIFIC_PID="p1"), "Start")
    answer_current(tab1, "5")
    tab2.radio[0].set_value("3")
    click(tab2, "Next")
    assert fake.people[0].answers.keys() == {0}
    assert fake.people[0].answers[0][0] == "5"
    assert tab2.radio[0].key == "answer-1"


def test_unexpected_error_shows_a_calm_message(fake, monkeypatch):
    def broken(pid):
        raise RuntimeError("database is on fire")
    monkeypatch.setattr(fake, "next_trial", broken)
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
    assert "Von der Studie zurücktreten" in [b.label for b in at.button]
    click(at, "Beginnen")
    assert "Frage 1 von 8" in at.get("progress")[0].proto.text
    assert "Übungsfrage" in texts(at) and "wie gut hebt sie die *Katze* hervor" in at.markdown[0].value
    assert at.radio[0].label == "Ihre Antwort"
    click(at, "Weiter")
    assert "Bitte wählen Sie eine Antwort" in texts(at)
    at.radio[0].set_value("5")
    click(at, "Weiter")
    assert at.success[0].value == "Richtig!"
    click(at, "Fortfahren")
    for index in range(1, len(TRIALS)):
        fake.answer(0, index, TRIALS[index][2][0][0], rt_ms=1000)
    at.run()
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
