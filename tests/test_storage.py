"""The database layer: pragmas, constraints, schema versions and migrations, retried writes."""
from __future__ import annotations

import sqlite3
import threading
import time

import pytest
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import IntegrityError, OperationalError

from study.store import database as storage
from study.store.database import (SCHEMA_VERSION, Database, Participant, PlanRow, Response, SchemaTooNew, SchemaVersion,
                                  Study, Trial)


@pytest.fixture
def url(tmp_path):
    return f"sqlite:///{tmp_path / 'test.db'}"


def add_study(db: Database) -> int:
    def work(s):
        study = Study(name="s", config_hash="h", config_toml="", schema_version=SCHEMA_VERSION, seed=1)
        s.add(study)
        s.flush()
        trial = Trial(study_id=study.id, task="rating", role="main", task_position=0, cell_index=0,
                      image_id="a", model="m", model_b=None, method="cam", method_b=None, target_class=1, spec={})
        person = Participant(study_id=study.id, external_id="p", seed=1, slot=0, consented=True)
        s.add_all([trial, person])
        s.flush()
        s.add(PlanRow(participant_id=person.id, trial_index=0, trial_id=trial.id, task="rating", image_id="a",
                      model="m", model_b=None, method="cam", method_b=None, target_class=1, is_practice=False,
                      is_attention_check=False, display={}))
        s.flush()
        return person.id
    return db.write(work)


def test_sqlite_runs_in_wal_with_foreign_keys_and_a_busy_timeout(url):
    db = Database(url)
    with db.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == storage.BUSY_TIMEOUT_MS
    with db.read() as s:
        assert s.scalar(select(SchemaVersion.version)) == SCHEMA_VERSION
    assert {"studies", "models", "images", "stimuli", "trials", "participants", "plan_rows", "responses",
            "questionnaire_answers", "events", "schema_version"} <= set(inspect(db.engine).get_table_names())


def test_constraints_are_enforced_by_the_database(url):
    db = Database(url)
    pid = add_study(db)
    with db.read() as s:
        row_id = s.scalar(select(PlanRow.id))

    def answer(s):
        s.add(Response(participant_id=pid, trial_index=0, plan_row_id=row_id, response="1", correct=None,
                       confidence=None, rating=1, rt_ms=10))
    db.write(answer)
    with pytest.raises(IntegrityError):
        db.write(answer)                               # UNIQUE(participant, trial)
    with pytest.raises(IntegrityError):
        db.write(lambda s: s.add(Response(participant_id=999, trial_index=1, plan_row_id=row_id, response="1",
                                          correct=None, confidence=None, rating=None, rt_ms=1)))   # foreign key


def test_a_database_from_a_newer_camstudy_is_refused(url):
    Database(url)
    with sqlite3.connect(url.removeprefix("sqlite:///")) as raw:
        raw.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    with pytest.raises(SchemaTooNew, match=f"schema version {SCHEMA_VERSION + 1}, newer"):
        Database(url)


def test_an_older_database_is_migrated_once(url, monkeypatch):
    Database(url)
    calls = []

    def add_note_column(connection):
        calls.append(1)
        connection.execute(text("ALTER TABLE studies ADD COLUMN note VARCHAR(20)"))

    monkeypatch.setattr(storage, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    monkeypatch.setattr(storage, "MIGRATIONS", [*storage.MIGRATIONS, add_note_column])
    db = Database(url)
    Database(url)
    assert calls == [1]
    with db.read() as s:
        assert s.scalar(select(SchemaVersion.version)) == SCHEMA_VERSION + 1
    assert "note" in {c["name"] for c in inspect(db.engine).get_columns("studies")}


def test_writes_wait_for_a_lock_held_elsewhere(url):
    db = Database(url)
    raw = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None, check_same_thread=False)
    raw.execute("BEGIN IMMEDIATE")
    release = threading.Timer(0.4, lambda: raw.execute("COMMIT"))
    release.start()
    started = time.monotonic()
    add_study(db)                                         # waits (busy timeout) instead of failing
    assert time.monotonic() - started >= 0.3
    release.join()
    raw.close()


def test_write_retries_only_when_the_database_is_busy(url):
    db = Database(url)
    attempts = []

    def flaky(s):
        attempts.append(1)
        if len(attempts) < 3:
            raise OperationalError("INSERT", {}, sqlite3.OperationalError("database is locked"))
        return "done"

    assert db.write(flaky) == "done" and len(attempts) == 3

    def broken(s):
        attempts.append(1)
        raise OperationalError("SELECT", {}, sqlite3.OperationalError("no such table: x"))

    attempts.clear()
    with pytest.raises(OperationalError, match="no such table"):
        db.write(broken)
    assert len(attempts) == 1


def test_file_sqlite_pool_serves_many_tabs_at_once(url):
    """20 survey tabs (threads) each holding a connection at the same moment must not wait on
    the pool: SQLAlchemy's default (5 + 10 overflow) would leave five of them queued."""
    db = Database(url)
    assert db.engine.pool.size() == storage.SQLITE_POOL_SIZE
    tabs = 24
    assert storage.SQLITE_POOL_SIZE + storage.SQLITE_MAX_OVERFLOW >= tabs
    all_in, errors = threading.Barrier(tabs, timeout=20), []

    def tab():
        try:
            with db.read() as s:
                s.execute(select(SchemaVersion.version)).scalar_one()
                all_in.wait()          # every tab holds its connection here at once
        except Exception as err:       # reported below
            errors.append(err)

    threads = [threading.Thread(target=tab) for _ in range(tabs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert storage._pool_options("sqlite://") == {} == storage._pool_options("postgresql://h/db")
