"""Simulated participants: reproducible, clearly marked, and strict about their inputs."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from _study_fixtures import build_fake_study
from study.store.identity import SIM_PREFIX
from study.survey.session import SurveySession
from study.survey.simulator import simulate_participants
from study.store.database import Participant, PlanRow, Response

TASKS = """
[[tasks]]
type = "agreement"
trials = 3
"""
ACCURACY = {"gradcam": 1.0, "cam": 0.0, "ablationcam": 0.5}


def answers(study_dir):
    with SurveySession(study_dir).db.read() as s:
        return s.execute(select(Participant.external_id, Response.trial_index, Response.response, Response.correct)
                         .join(Response, Response.participant_id == Participant.id)
                         .order_by(Participant.external_id, Response.trial_index)).all()


def test_a_single_threaded_run_is_reproducible_and_marked_simulated(tmp_path):
    runs = []
    for name in ("a", "b"):
        study_dir = build_fake_study(tmp_path / name, TASKS, practice=0, attention=1)
        states = simulate_participants(study_dir, 3, ACCURACY, seed=4)
        assert all(s.external_id.startswith(SIM_PREFIX) and s.completed for s in states)
        runs.append(answers(study_dir))
    assert runs[0] == runs[1] and len(runs[0]) == 3 * 4


def test_accuracy_one_and_zero_are_obeyed(tmp_path):
    study_dir = build_fake_study(tmp_path, TASKS, practice=0, attention=0)
    simulate_participants(study_dir, 3, ACCURACY, seed=1)
    with SurveySession(study_dir).db.read() as s:
        rows = s.execute(select(PlanRow.method, Response.correct)
                         .join(Response, Response.plan_row_id == PlanRow.id)).all()
    assert {c for m, c in rows if m == "gradcam"} == {True}
    assert {c for m, c in rows if m == "cam"} == {False}


def test_bad_simulation_settings_are_refused(tmp_path):
    study_dir = build_fake_study(tmp_path, TASKS, practice=0, attention=0)
    with pytest.raises(ValueError, match="accuracy of 'cam' must be in"):
        simulate_participants(study_dir, 1, {"cam": 1.5})
    with pytest.raises(ValueError, match="threads"):
        simulate_participants(study_dir, 1, ACCURACY, threads=0)
    with pytest.raises(LookupError, match="no simulated accuracy for method"):
        simulate_participants(study_dir, 2, {"gradcam": 0.5})
