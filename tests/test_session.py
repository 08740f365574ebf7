"""The session API, one participant at a time: the participant flow and its clear refusals."""
from __future__ import annotations

from datetime import timedelta

import pytest
from PIL import Image
from sqlalchemy import func, select, update

from _study_fixtures import build_fake_study
from study.protocol import plans
from study.survey.monitor import StudyMonitor
from study.store import erasure
from study.store.identity import BadLink
from study.survey.session import ABANDONED_AFTER, AlreadyCompleted, ConsentConflict, LinkInUse, SurveySession
from study.store.database import Event, Image as ImageRow, Model, Participant, PlanRow, Response, Stimulus, Trial, utcnow


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory):
    return build_fake_study(tmp_path_factory.mktemp("session"))


@pytest.fixture
def session(study_dir):
    return SurveySession(study_dir)


def started(session, external_id):
    return session.consent(external_id, True).participant_id


def right_answer(session, pid, trial_index):
    with session.db.read() as s:
        return s.scalar(select(Trial.spec).join(PlanRow, PlanRow.trial_id == Trial.id)
                        .where(PlanRow.participant_id == pid, PlanRow.trial_index == trial_index))["answer"]


def answer_all(session, pid):
    while (trial := session.next_trial(pid)) is not None:
        confidence = trial.confidence_options[0][0] if trial.confidence_options else None
        session.answer(pid, trial.trial_index, trial.options[0][0], 900, confidence)


def test_enter_resumes_the_same_participant_and_plan_in_the_browser_that_consented(session):
    first = session.enter("resume-me")
    assert first.participant_id is None and first.consented is None and not first.completed
    joined = session.consent("resume-me", True, user_agent="UA")
    assert joined.credential and joined.consented
    again = SurveySession(session.study_dir).enter("resume-me", credential=joined.credential)
    assert again.participant_id == joined.participant_id and again.credential is None
    assert joined.n_done == 0 and first.n_total == again.n_total > 0


def test_knowing_an_id_is_not_enough_to_continue_as_that_person(session, tmp_path):
    owner = session.consent("taken", True)
    altered = owner.credential[:-1] + ("y" if owner.credential.endswith("x") else "x")
    for credential in (None, "guessed", altered):
        with pytest.raises(LinkInUse, match="in use in another browser"):
            session.enter("taken", credential=credential)
    with pytest.raises(LinkInUse):                     # consenting again does not take it over either
        session.consent("taken", True)
    assert erasure.release(session.db, session.study_id, "taken")
    moved = session.enter("taken")                     # released by the admin: the next browser claims it
    assert moved.participant_id == owner.participant_id and moved.credential
    with pytest.raises(LinkInUse):
        session.enter("taken", credential=owner.credential)
    relaxed = SurveySession(build_fake_study(tmp_path, extra="allow_browser_change = true"))
    relaxed.consent("mover", True)
    assert relaxed.enter("mover").participant_id is not None


def test_only_the_participant_id_identifies_a_person_and_rows_are_made_at_consent(session):
    with session.db.read() as s:
        before = s.scalar(select(func.count(Participant.id)))
    for _ in range(3):
        assert session.enter("just-looking").participant_id is None
    with session.db.read() as s:
        assert s.scalar(select(func.count(Participant.id))) == before
        assert s.scalar(select(func.count(Event.id)).where(Event.kind == "viewed")) >= 3
    state = session.consent("ctx", True, context={"STUDY_ID": "s1", "SESSION_ID": "x9"})
    with session.db.read() as s:
        assert s.scalar(select(Participant.link_params).where(Participant.id == state.participant_id)) == {
            "STUDY_ID": "s1", "SESSION_ID": "x9"}


def test_trials_come_in_plan_order_practice_first_and_shown_at_is_recorded_once(session):
    pid = started(session, "order")
    first = session.next_trial(pid)
    assert first.trial_index == 0 and first.is_practice and first.feedback_md
    assert all(path.is_file() for path in first.images)
    assert Image.open(first.images[0]).size == (8, 8)
    assert session.next_trial(pid).shown_at == first.shown_at       # a reload shows the same trial
    session.answer(pid, 0, first.options[0][0], 1200)
    second = session.next_trial(pid)
    assert second.trial_index == 1
    views = [second]
    session.answer(pid, 1, second.options[0][0], 800, second.confidence_options[0][0] if second.confidence_options else None)
    while (trial := session.next_trial(pid)) is not None:
        views.append(trial)
        session.answer(pid, trial.trial_index, trial.options[-1][0], 700,
                       trial.confidence_options[-1][0] if trial.confidence_options else None)
    assert [v.trial_index for v in views] == list(range(1, session.progress(pid)[1]))
    assert all(v.feedback_md is None for v in views if not v.is_practice)
    assert sum(v.is_attention_check for v in views) == 2


def test_a_replayed_answer_is_a_duplicate_and_changes_nothing(session):
    pid = started(session, "replay")
    trial = session.next_trial(pid)
    right = right_answer(session, pid, trial.trial_index)
    first = session.answer(pid, trial.trial_index, right, 1000)
    assert (first.stored, first.duplicate, first.correct) == (True, False, True)
    wrong = next(v for v, _ in trial.options if v != right)
    replay = session.answer(pid, trial.trial_index, wrong, 5)
    assert (replay.stored, replay.duplicate, replay.correct) == (False, True, True)
    with session.db.read() as s:
        rows = s.scalars(select(Response).where(Response.participant_id == pid)).all()
    assert [(r.response, r.rt_ms) for r in rows] == [(right, 1000)]


def test_bad_answers_are_refused_with_the_reason(session):
    pid = started(session, "bad-answers")
    trial = session.next_trial(pid)
    with pytest.raises(ValueError, match="not an option"):
        session.answer(pid, trial.trial_index, "banana", 100)
    with pytest.raises(ValueError, match="rt_ms"):
        session.answer(pid, trial.trial_index, trial.options[0][0], -5)
    with pytest.raises(LookupError, match="no trial 999"):
        session.answer(pid, 999, "1", 100)
    with pytest.raises(ValueError, match="not been shown"):
        session.answer(pid, trial.trial_index + 1, "1", 100)
    with pytest.raises(ValueError, match="asks no confidence"):
        session.answer(pid, trial.trial_index, trial.options[0][0], 100, confidence="3")
    assert session.progress(pid)[0] == 0


def test_confidence_is_required_where_the_task_asks_for_it(session):
    pid = started(session, "confidence")
    while (trial := session.next_trial(pid)).task != "distinction":
        session.answer(pid, trial.trial_index, trial.options[0][0], 500,
                       trial.confidence_options[0][0] if trial.confidence_options else None)
    assert [v for v, _ in trial.confidence_options] == ["1", "2", "3", "4"]
    with pytest.raises(ValueError, match="confidence"):
        session.answer(pid, trial.trial_index, trial.options[0][0], 500)
    assert session.answer(pid, trial.trial_index, trial.options[0][0], 500, "4").stored


def test_participants_only_reach_their_own_trials(session):
    alice, bob = started(session, "alice"), started(session, "bob")
    trial = session.next_trial(alice)
    with pytest.raises(ValueError, match="not been shown"):     # bob's own trial 0, never shown to bob
        session.answer(bob, trial.trial_index, trial.options[0][0], 100)
    with pytest.raises(LookupError, match="no participant"):
        session.next_trial(10_000)
    assert session.progress(alice) == (0, session.progress(alice)[1])


def test_nothing_happens_before_consent_and_a_refusal_ends_the_participant(session):
    assert session.enter("refuser").n_total == session.enter("undecided").n_total > 0   # known up front
    state = session.consent("refuser", False, user_agent="Browser/1.0", context={"SESSION_ID": "s-9"})
    assert state.consented is False and state.credential is None
    with pytest.raises(ValueError, match="consent"):
        session.next_trial(state.participant_id)
    with pytest.raises(AlreadyCompleted):
        session.consent("refuser", True)
    with session.db.read() as s:
        plan_rows = s.scalar(select(func.count(PlanRow.id)).where(PlanRow.participant_id == state.participant_id))
        events = s.scalars(select(Event.kind).where(Event.participant_id == state.participant_id)).all()
        anonymous = s.scalars(select(Event.kind).where(Event.participant_id.is_(None))).all()
        person = s.get(Participant, state.participant_id)
    assert plan_rows == 0 and events == [] and "declined" in anonymous     # logged, but not whose
    assert person.link_params == {}
    assert person.consent_at is None and person.user_agent == ""        # nothing else about a decliner
    with pytest.raises(AlreadyCompleted) as closed:
        session.enter("refuser")
    assert closed.value.completion_code is None and closed.value.redirect_url is None


def test_declining_after_agreeing_in_another_tab_is_a_clear_conflict(session):
    session.consent("two-tabs", True)
    with pytest.raises(ConsentConflict, match="already agreed"):
        session.consent("two-tabs", False)


def test_latin_square_slots_go_to_consenting_participants_only(session):
    def slots():
        with session.db.read() as s:
            return dict(s.execute(select(Participant.external_id, Participant.slot)).all())
    before = {v for v in slots().values() if v is not None}
    assert session.enter("slot-waiting").participant_id is None
    session.consent("slot-refusing", False)
    session.consent("slot-joining", True)
    now = slots()
    assert "slot-waiting" not in now and now["slot-refusing"] is None
    assert now["slot-joining"] == plans.first_free_slot(before)
    session.consent("slot-waiting", True)
    assert slots()["slot-waiting"] == plans.first_free_slot(before | {now["slot-joining"]})


def test_completion_code_redirect_and_no_second_start(session):
    joined = session.consent("finisher", True)
    pid = joined.participant_id
    with pytest.raises(ValueError, match="trials to answer"):
        session.complete(pid, {})
    answer_all(session, pid)
    with pytest.raises(ValueError, match="unknown questionnaire item 'shoe_size'"):
        session.complete(pid, {"shoe_size": "42"})
    with pytest.raises(ValueError, match="must be one of"):
        session.complete(pid, {"age": "12"})
    assert session.redirect_url(pid) is None
    code = session.complete(pid, {"age": "30+", "comments": "fine"})
    assert code == "DONE-1" == session.complete(pid, {"age": "18-29"})    # idempotent
    assert session.redirect_url(pid) == "https://example.org/done?cc=DONE-1&p=finisher"
    state = session.state(pid)
    assert state.completed and state.completion_code == "DONE-1" and state.n_done == state.n_total
    with pytest.raises(AlreadyCompleted) as stranger:                  # not to whoever opens the link
        session.enter("finisher")
    assert stranger.value.completion_code is None and stranger.value.redirect_url is None
    with pytest.raises(AlreadyCompleted, match="finisher") as closed:
        session.enter("finisher", credential=joined.credential)
    assert closed.value.completion_code == "DONE-1"                    # shown again on a reload
    assert closed.value.redirect_url == "https://example.org/done?cc=DONE-1&p=finisher"
    assert session.next_trial(pid) is None


def test_anonymous_entry_needs_the_config_to_allow_it(session, tmp_path):
    with pytest.raises(ValueError, match="participant id"):
        session.enter(None)
    with pytest.raises(BadLink, match="1-128 letters"):
        session.enter("x" * 201)
    anonymous = SurveySession(build_fake_study(tmp_path, anonymous=True))
    one, two = anonymous.enter(None), anonymous.enter("")
    assert one.external_id.startswith("anon-") and one.external_id != two.external_id


def test_cell_progress_counts_main_answers_per_cell(session):
    before = StudyMonitor(session.built, session.db).cell_progress()
    assert list(before.columns) == ["task", "image_id", "method", "n_answers", "target"]
    assert (before["target"] > 0).all()
    assert "gradcam vs cam" in set(before.loc[before.task == "compare", "method"])
    pid = started(session, "cells")
    answer_all(session, pid)
    after = StudyMonitor(session.built, session.db).cell_progress()
    with session.db.read() as s:
        main = s.scalar(select(func.count(PlanRow.id)).where(PlanRow.participant_id == pid,
                                                              PlanRow.is_practice.is_(False),
                                                              PlanRow.is_attention_check.is_(False)))
    assert after["n_answers"].sum() - before["n_answers"].sum() == main


def test_a_session_refuses_a_folder_that_is_not_a_built_study(tmp_path, study_dir):
    with pytest.raises(FileNotFoundError, match="study config not found"):
        SurveySession(tmp_path)
    (tmp_path / "study.toml").write_text((study_dir / "study.toml").read_text())
    with pytest.raises(FileNotFoundError, match="camstudy build"):
        SurveySession(tmp_path)


def test_a_config_edited_after_the_build_is_not_silently_used(tmp_path):
    study_dir = build_fake_study(tmp_path)
    toml = study_dir / "study.toml"
    toml.write_text(toml.read_text().replace('name = "engine test"', 'name = "edited"'))
    with pytest.raises(LookupError, match="changed after the study was built"):
        SurveySession(study_dir)
    with pytest.raises(FileNotFoundError, match="study folder not found"):
        SurveySession(tmp_path / "nowhere")


def test_the_slot_of_a_participant_who_left_is_reused_after_a_while(tmp_path):
    session = SurveySession(build_fake_study(tmp_path))
    gone, finished = started(session, "gone"), started(session, "finished")
    trial = session.next_trial(gone)
    session.answer(gone, trial.trial_index, trial.options[0][0], 400)
    answer_all(session, finished)
    session.complete(finished, {})
    long_ago = utcnow() - ABANDONED_AFTER - timedelta(minutes=1)

    def age(s):
        s.execute(update(Participant).values(consent_at=long_ago))
        s.execute(update(Response).values(answered_at=long_ago))
    session.db.write(age)
    with session.db.read() as s:
        slots = dict(s.execute(select(Participant.external_id, Participant.slot)).all())
    newcomer = started(session, "newcomer")
    with session.db.read() as s:
        assert s.scalar(select(Participant.slot).where(Participant.id == newcomer)) == slots["gone"]
    started(session, "next")                                    # the finished one keeps theirs
    with session.db.read() as s:
        assert s.scalar(select(Participant.slot).where(Participant.external_id == "next")) not in (
            slots["gone"], slots["finished"])


def test_the_example_is_a_map_of_a_plain_photos_own_class(session):
    path, name = StudyMonitor(session.built, session.db).instructions_map()
    assert path.is_file() and path.is_relative_to(session.study_dir)
    with session.db.read() as s:
        stimulus, image, categories = s.execute(
            select(Stimulus, ImageRow, Model.categories).join(ImageRow, ImageRow.id == Stimulus.image_ref)
            .join(Model, Model.name == Stimulus.model)
            .where(Stimulus.path == str(path.relative_to(session.study_dir)))).one()
    assert not image.source.startswith("composite:")
    assert image.labels[0] == stimulus.target_class and name == categories[stimulus.target_class]
    assert (stimulus.model, stimulus.method) == (session.config.models[0], session.config.methods[0])
