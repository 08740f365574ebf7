"""A seeded simulation on a simulated clock writes byte-identical exports (what the demo promises)."""
from datetime import datetime, timezone

from study.results.export import write_exports
from study.survey.simulator import simulate_participants
from tests._study_fixtures import build_fake_study

START = datetime(2026, 1, 1, 9, 0, tzinfo=timezone.utc)


def exported(tmp_path, name, start=START):
    study = build_fake_study(tmp_path / name)
    simulate_participants(study, 3, {"gradcam": 0.9, "cam": 0.6, "ablationcam": 0.3}, seed=7, start=start)
    return {p.name: p.read_bytes() for p in write_exports(study, tmp_path / name / "export")}


def test_same_seed_same_csvs_byte_for_byte(tmp_path):
    first, second = exported(tmp_path, "a"), exported(tmp_path, "b")
    assert first == second
    assert b"2026-01-01T09:0" in first["responses.csv"]  # timestamps come from the simulated clock


def test_a_real_clock_changes_the_timestamps(tmp_path):
    first = exported(tmp_path, "a")
    second = exported(tmp_path, "b", start=None)
    assert first["responses.csv"] != second["responses.csv"]
