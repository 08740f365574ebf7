"""The same study on PostgreSQL as on SQLite: build, concurrent participants, byte-identical exports.

Runs when CAMSTUDY_TEST_POSTGRES_URL names a PostgreSQL database the tests may empty, e.g.
postgresql+psycopg://camstudy:camstudy@localhost/camstudy_test (needs `pip install psycopg[binary]`);
skipped otherwise.
"""
from __future__ import annotations

import os
from datetime import datetime, timezone

import pytest
from sqlalchemy import create_engine

from _study_fixtures import FakeRenderer, fake_items, write_config
from study.stimuli.build import build_study
from study.results.export import write_exports
from study.images import composite
from study.survey.simulator import simulate_participants
from study.store.database import Base

URL = os.environ.get("CAMSTUDY_TEST_POSTGRES_URL")
pytestmark = pytest.mark.skipif(not URL, reason="set CAMSTUDY_TEST_POSTGRES_URL to test on PostgreSQL")
ACCURACY = {"gradcam": 0.9, "cam": 0.6, "ablationcam": 0.3}
START = datetime(2026, 1, 1, 9, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module", autouse=True)
def empty_postgres() -> None:
    """Emptied once, before camstudy opens it (it keeps one engine per URL for the process)."""
    engine = create_engine(URL)
    Base.metadata.drop_all(engine)
    engine.dispose()


def built(tmp_path, name: str, database_url: str | None, force_new: bool = False):
    config = write_config(tmp_path / name / "config")
    if database_url:
        text = config.read_text().replace("seed = 11\n", f'seed = 11\ndatabase_url = "{database_url}"\n', 1)
        assert database_url in text
        config.write_text(text)
    out = tmp_path / name / "study"
    build_study(config, out, force_new=force_new, progress=False, renderer=FakeRenderer(("img7",)),
                items=fake_items(8), combine=composite)
    return out


def test_the_same_seeded_study_exports_the_same_bytes_on_postgresql_and_sqlite(tmp_path):
    exported = {}
    for name, url in (("sqlite", None), ("postgres", URL)):
        study = built(tmp_path, name, url)
        simulate_participants(study, 4, ACCURACY, seed=3, start=START)
        exported[name] = {p.name: p.read_bytes() for p in write_exports(study, tmp_path / name / "export")}
    assert exported["postgres"] == exported["sqlite"]
    assert exported["postgres"]["responses.csv"].count(b"\n") > 40


def test_concurrent_participants_on_postgresql_lose_and_duplicate_nothing(tmp_path):
    from study.results.export import export_tables

    study = built(tmp_path, "threads", URL, force_new=True)  # a new study version in the same database
    with pytest.raises(ValueError, match="already holds this study, built into another folder"):
        built(tmp_path, "again", URL)      # the same study into a second folder: a clear refusal
    states = simulate_participants(study, 16, ACCURACY, seed=5, threads=8)
    assert all(s.completed for s in states)
    responses = export_tables(study, n_resamples=10)["responses"]
    per_person = responses.groupby("participant_id")["trial_index"]
    assert per_person.nunique().eq(per_person.size()).all()          # no trial answered twice
    assert (per_person.size() == states[0].n_total).all() and per_person.ngroups == 16


def test_two_server_processes_sharing_the_database_give_each_participant_a_slot_of_their_own(tmp_path):
    """Slot assignment is serialised by the study row's lock, across processes too: two processes
    of 6 simultaneous participants each end with 12 distinct Latin-square slots."""
    import subprocess
    import sys

    from sqlalchemy import select

    from study.survey.session import SurveySession
    from study.store.database import Participant

    study = built(tmp_path, "shared", URL, force_new=True)
    code = ("import sys; from study.survey.simulator import simulate_participants; "
            f"simulate_participants(sys.argv[1], 6, {ACCURACY!r}, seed=int(sys.argv[2]), threads=3)")
    workers = [subprocess.Popen([sys.executable, "-c", code, str(study), str(seed)]) for seed in (11, 12)]
    assert [w.wait(timeout=300) for w in workers] == [0, 0]
    session = SurveySession(study)
    with session.db.read() as s:
        slots = s.scalars(select(Participant.slot).where(Participant.study_id == session.study_id)).all()
    assert sorted(slots) == list(range(12))
