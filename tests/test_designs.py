"""Study designs: between-subject conditions (balanced, stored, exported, restart-proof), tasks that mix
designs, pilot runs kept apart from the analysis, and the admin's preview of any trial."""
from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone

import pytest
from sqlalchemy import func, select

from _study_fixtures import build_fake_study, write_config
from study.cli import main
from study.protocol.config import ConfigError, load_config
from study.results.export import export_tables
from study.survey.session import SurveySession
from study.survey.simulator import simulate_participants
from study.store.database import Participant, PlanRow, Response

BETWEEN = """
[[tasks]]
type = "agreement"
design = "between"
trials = 3

[[tasks]]
type = "rating"
trials = 2
"""
START = datetime(2026, 2, 1, 9, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def between_study(tmp_path_factory):
    study = build_fake_study(tmp_path_factory.mktemp("between"), BETWEEN, practice=2, attention=1)
    simulate_participants(study, 30, {"gradcam": 0.9, "cam": 0.6, "ablationcam": 0.3}, seed=3, start=START)
    return study


def plans_by_participant(session):
    with session.db.read() as s:
        rows = s.execute(select(Participant.external_id, Participant.condition, PlanRow.task, PlanRow.method,
                                PlanRow.is_practice, PlanRow.is_attention_check)
                         .join(PlanRow, PlanRow.participant_id == Participant.id)).all()
    people: dict[str, dict] = {}
    for external_id, condition, task, method, practice, attention in rows:
        person = people.setdefault(external_id, {"condition": condition, "agreement": set(), "rating": set()})
        person[task].add(method)
    return people


def test_each_participant_sees_only_their_condition_in_between_tasks(between_study):
    people = plans_by_participant(SurveySession(between_study))
    assert len(people) == 30
    for person in people.values():
        assert person["agreement"] == {person["condition"]}          # practice and checks included
        assert person["rating"] <= {"gradcam", "cam", "ablationcam"}  # a within task in the same study
    counts = Counter(p["condition"] for p in people.values())
    assert set(counts) == {"gradcam", "cam", "ablationcam"} and max(counts.values()) - min(counts.values()) <= 1
    assert len({frozenset(p["rating"]) for p in people.values()}) > 1  # the within task still rotates


def test_the_condition_is_stored_exported_and_survives_a_restart(between_study):
    tables = export_tables(between_study, n_resamples=50)
    people = tables["participants"].set_index("external_id")["condition"]
    restarted = plans_by_participant(SurveySession(between_study))
    assert all(people[e] == p["condition"] for e, p in restarted.items())
    responses = tables["responses"]
    agreement = responses[(responses.task == "agreement") & ~responses.is_practice & ~responses.is_attention_check]
    assert (agreement["method"] == agreement["condition"]).all()
    summary = tables["summary"]
    accuracy = summary[(summary.task == "agreement") & (summary.measure == "accuracy")].set_index("method")
    assert accuracy.loc["gradcam", "estimate"] > accuracy.loc["ablationcam", "estimate"]


def test_design_errors_name_the_key(tmp_path):
    cases = {'design = "sideways"\n': "design"}
    config = write_config(tmp_path / "a", '[[tasks]]\ntype = "compare"\ndesign = "between"\n')
    with pytest.raises(ConfigError, match=r"tasks\[0\]\.design.*compare.*within one participant"):
        load_config(config)
    config = write_config(tmp_path / "b", '[[tasks]]\ntype = "rating"\ndesign = "between"\n'
                          '[[tasks]]\ntype = "agreement"\ndesign = "between"\nmethods = ["gradcam", "cam"]\n')
    with pytest.raises(ConfigError, match="same methods"):
        load_config(config)
    for extra, key in cases.items():
        if key:
            with pytest.raises(ConfigError, match=key):
                load_config(write_config(tmp_path / "c", '[[tasks]]\ntype = "rating"\n', extra=extra))
    study_wide = load_config(write_config(tmp_path / "d", '[[tasks]]\ntype = "rating"\n', extra='design = "between"'))
    assert study_wide.tasks[0].design == "between" and study_wide.conditions == ("gradcam", "cam", "ablationcam")


def test_pilots_are_marked_kept_apart_and_reset(tmp_path, capsys):
    study = build_fake_study(tmp_path, BETWEEN, practice=0, attention=0)
    session = SurveySession(study)
    simulate_participants(study, 3, {"gradcam": 1.0, "cam": 1.0, "ablationcam": 1.0}, seed=1, start=START)
    pilot = session.consent("PILOT-1", True, pilot=True)
    with session.db.read() as s:
        real_slots = s.scalars(select(Participant.slot).where(Participant.is_pilot.is_(False))).all()
        assert s.scalar(select(Participant.is_pilot).where(Participant.id == pilot.participant_id))
    while (trial := session.next_trial(pilot.participant_id)) is not None:
        session.answer(pilot.participant_id, trial.trial_index, trial.options[0][0], 900,
                       trial.confidence_options[0][0] if trial.confidence_options else None)
    session.complete(pilot.participant_id, {})
    tables = export_tables(study, n_resamples=50)
    people = tables["participants"].set_index("external_id")
    assert people.loc["PILOT-1", "is_pilot"] and people.loc["PILOT-1", "excluded"]
    with_pilot = export_tables(study, n_resamples=50, include_pilot=True)
    assert with_pilot["summary"]["n"].sum() > tables["summary"]["n"].sum()   # only when asked
    assert session.consent("real-4", True).participant_id                    # a pilot holds no real slot
    with session.db.read() as s:
        slot = s.scalar(select(Participant.slot).where(Participant.external_id == "real-4"))
    assert slot == min(set(range(len(real_slots) + 1)) - set(real_slots))
    assert main(["reset-pilot", str(study)]) == 0
    assert "removed 1 pilot participant" in capsys.readouterr().out
    with session.db.read() as s:
        assert s.scalar(select(func.count(Participant.id)).where(Participant.is_pilot.is_(True))) == 0


def test_pilot_links_mark_their_participants(tmp_path, capsys):
    study = build_fake_study(tmp_path, BETWEEN, practice=0, attention=0)
    assert main(["links", str(study), "--n", "1", "--pilot"]) == 0
    params = dict(part.split("=") for part in capsys.readouterr().out.strip().split("?")[1].split("&"))
    session = SurveySession(study)
    assert session.consent(params["pid"], True, pilot=params["pilot"]).participant_id
    assert session.consent("guesser", True, pilot=params["pilot"]).participant_id   # another id's token
    with session.db.read() as s:
        marked = dict(s.execute(select(Participant.external_id, Participant.is_pilot)).all())
    assert marked == {params["pid"]: True, "guesser": False}


def test_the_admin_previews_any_trial_without_recording_anything(between_study):
    session = SurveySession(between_study)
    with session.db.read() as s:
        before = (s.scalar(select(func.count(Response.id))), s.scalar(select(func.count(PlanRow.id))))
    for trial_id, template in session.built.trials.items():
        view = session.preview(trial_id)
        assert view.task == template.task and view.images and view.options
        assert all(path.is_file() for path in view.images)
    with session.db.read() as s:
        assert (s.scalar(select(func.count(Response.id))), s.scalar(select(func.count(PlanRow.id)))) == before


def test_within_tasks_of_a_mixed_design_rotate_within_each_condition(between_study):
    """The rating task (within) must not give everyone in a condition the same image -> method layout."""
    session = SurveySession(between_study)
    with session.db.read() as s:
        rows = s.execute(select(Participant.id, Participant.condition, PlanRow.image_id, PlanRow.method)
                         .join(PlanRow, PlanRow.participant_id == Participant.id)
                         .where(PlanRow.task == "rating", PlanRow.is_practice.is_(False),
                                PlanRow.is_attention_check.is_(False))).all()
    layouts: dict[str, set] = {}
    per_person: dict[int, set] = {}
    for pid, condition, image, method in rows:
        per_person.setdefault(pid, set()).add((image, method))
        layouts.setdefault(condition, set())
    for pid, cells in per_person.items():
        condition = next(c for p, c, _, _ in rows if p == pid)
        layouts[condition].add(frozenset(cells))
    assert all(len(distinct) > 1 for distinct in layouts.values()), layouts


def test_the_instructions_example_shows_the_participants_own_method(between_study):
    from study.survey.monitor import StudyMonitor

    session = SurveySession(between_study)
    monitor = StudyMonitor(session.built, session.db)
    for method in ("gradcam", "cam", "ablationcam"):
        path, _ = monitor.instructions_map(method)
        assert f"__{method}__" in path.name
