"""The study database: SQLAlchemy 2.x ORM models, engine setup and schema versioning.

One database may hold several versions of a study (`camstudy build --force-new`); every row
hangs off a `Study`. SQLite is the default: WAL so readers never block the writer, a busy
timeout so writers queue instead of failing, foreign keys on, and write transactions opened
with BEGIN IMMEDIATE so that a read-then-write transaction cannot deadlock on a lock upgrade.
Any other SQLAlchemy URL (PostgreSQL) works the same way; there the row lock taken by the
first UPDATE of a write transaction serialises what must be serialised. $CAMSTUDY_DATABASE_URL, where
set, names the database instead of the config's `database_url` (in a container the database server
has another host name than where the study was built; the config, and so its hash, stay the same).

A SQLite database and its WAL and shared-memory files are created readable by their owner only, and
deleted rows are overwritten (`secure_delete`), so that after an erasure and `forget_deleted` no copy
of them stays in any file.

The schema is versioned: `schema_version` holds one row, `MIGRATIONS[i]` upgrades version i+1
to i+2, and a database written by a newer camstudy is refused with a clear error.
"""
from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import (JSON, Boolean, DateTime, ForeignKey, Integer, String, Text, UniqueConstraint,
                        create_engine, event, inspect, select)
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.pool import QueuePool

from study.protocol.config import CONFIG_FILE, StudyConfig, load_config
from study.store import owner_only

SCHEMA_VERSION = 3
BUSY_TIMEOUT_MS = 30_000
DATABASE_ENV = "CAMSTUDY_DATABASE_URL"
T = TypeVar("T")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def as_utc(moment: datetime | None) -> datetime | None:
    """SQLite hands datetimes back naive; everything camstudy writes is UTC."""
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment


class Base(DeclarativeBase):
    type_annotation_map = {datetime: DateTime(timezone=True), dict[str, Any]: JSON, list[Any]: JSON}


class SchemaVersion(Base):
    """The schema version of this database file (exactly one row)."""
    __tablename__ = "schema_version"
    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[int]


class Study(Base):
    """One built version of a study: its config (text and hash) and build time.

    `consents` counts participants who consented; incrementing it is also the lock that
    serialises Latin-square slot assignment. `layout` lists, per task in config order, the numbers
    study.protocol.plans needs: {"task", "units", "conditions", "per_participant"}.
    """
    __tablename__ = "studies"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    config_hash: Mapped[str] = mapped_column(String(64), index=True)
    config_toml: Mapped[str] = mapped_column(Text)
    schema_version: Mapped[int]
    seed: Mapped[int]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    consents: Mapped[int] = mapped_column(default=0)
    layout: Mapped[list[Any]] = mapped_column(default=list)


class _OfStudy:
    """A row that belongs to one study version (every table but the study's own hangs off one)."""
    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)


class Model(_OfStudy, Base):
    """A classifier used by the study, by its `study.load_model` name."""
    __tablename__ = "models"
    __table_args__ = (UniqueConstraint("study_id", "name"),)
    name: Mapped[str] = mapped_column(String(100))
    n_classes: Mapped[int]
    categories: Mapped[list[Any]]


class Image(_OfStudy, Base):
    """A stimulus image (a photo, or a side-by-side composite) with labels and boxes."""
    __tablename__ = "images"
    __table_args__ = (UniqueConstraint("study_id", "image_id"),)
    image_id: Mapped[str] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(String(500))
    width: Mapped[int]
    height: Mapped[int]
    labels: Mapped[list[Any]]                # ImageNet class indices, main label first
    boxes: Mapped[list[Any]]                 # [x_min, y_min, x_max, y_max] in image pixels
    predictions: Mapped[dict[str, Any]]      # model name -> [[class, probability], ...] top 5


class Stimulus(_OfStudy, Base):
    """A rendered explanation: PNG path relative to the study folder plus how it was made."""
    __tablename__ = "stimuli"
    __table_args__ = (UniqueConstraint("study_id", "path"),)
    image_ref: Mapped[int] = mapped_column(ForeignKey("images.id"))
    model: Mapped[str] = mapped_column(String(100))
    method: Mapped[str] = mapped_column(String(50))
    target_class: Mapped[int | None]
    path: Mapped[str] = mapped_column(String(500))
    meta: Mapped[dict[str, Any]]


class _Shows:
    """What a trial shows: its task, image, model(s), method(s) and class (a trial template, and the
    plan rows that copy it so that exports need one join)."""
    task: Mapped[str] = mapped_column(String(50))
    image_id: Mapped[str] = mapped_column(String(200))
    model: Mapped[str] = mapped_column(String(100))
    model_b: Mapped[str | None] = mapped_column(String(100))
    method: Mapped[str] = mapped_column(String(50))
    method_b: Mapped[str | None] = mapped_column(String(50))
    target_class: Mapped[int | None]


class _AnswerSlot:
    """One trial of one participant: (participant, trial_index) is unique, so a replay is a no-op."""
    __table_args__ = (UniqueConstraint("participant_id", "trial_index"),)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id"), index=True)
    trial_index: Mapped[int]


class Trial(_OfStudy, _Shows, Base):
    """A trial template: one cell (task x image x condition) or a practice / attention item.

    `cell_index` is the cell's position in its task's Latin-square enumeration (main trials
    only); `spec` is what the task plugin needs to show and score it (see study.protocol.tasks).
    """
    __tablename__ = "trials"
    role: Mapped[str] = mapped_column(String(20))          # "main" | "practice" | "attention"
    task_position: Mapped[int]                              # index of the task in the config
    cell_index: Mapped[int | None]
    spec: Mapped[dict[str, Any]]


class Participant(_OfStudy, Base):
    """Someone who answered the consent page, with the seed and Latin-square slot of their plan.

    The row is made at consent: a refusal keeps only the id and the refusal (`consented` False, no
    time, no user agent), so the same link cannot start again. The slot (and the plan) are given at
    consent, so people who leave at the consent page hold no share of the cells. `credential_hash`
    is the sha256 of the resume credential the consenting browser keeps (None once the admin
    releases the id); `link_params` holds the link's STUDY_ID / SESSION_ID beside the id;
    `withdrawn_at` is set when a withdrawal keeps the answers (`on_withdraw = "keep"`); `condition` is
    the method a between-subject participant is assigned (None within subjects); `is_pilot` marks
    pilot runs, left out of the analysis by default; `language` is the one the survey was taken in
    (chosen at consent; None for a refusal or an older row); `resume_code_hash` is the sha256 of the
    short code shown at consent, with which the participant can move to another browser (or one whose
    cookies were cleared) on their own.
    """
    __tablename__ = "participants"
    __table_args__ = (UniqueConstraint("study_id", "external_id"),)
    external_id: Mapped[str] = mapped_column(String(200))
    seed: Mapped[int]
    slot: Mapped[int | None]
    consented: Mapped[bool | None]
    consent_at: Mapped[datetime | None]
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[datetime | None]
    completion_code: Mapped[str | None] = mapped_column(String(100))
    user_agent: Mapped[str] = mapped_column(Text, default="")
    credential_hash: Mapped[str | None] = mapped_column(String(64))
    link_params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    withdrawn_at: Mapped[datetime | None]
    condition: Mapped[str | None] = mapped_column(String(50))
    is_pilot: Mapped[bool] = mapped_column(Boolean, default=False)
    language: Mapped[str | None] = mapped_column(String(8))
    resume_code_hash: Mapped[str | None] = mapped_column(String(64))


class WithdrawnId(_OfStudy, Base):
    """A link whose participant withdrew or was erased, so that it cannot start the study again: a keyed
    hash of the id (HMAC under the study's link secret), which names no one without that secret."""
    __tablename__ = "withdrawn_ids"
    __table_args__ = (UniqueConstraint("study_id", "id_hash"),)
    id_hash: Mapped[str] = mapped_column(String(64))


class PlanRow(_AnswerSlot, _Shows, Base):
    """One trial of one participant's plan, in presentation order, with its randomised display.

    The trial's descriptive columns are copied from `Trial` so that exports need one join.
    `display` holds the participant's stimulus and option order; `shown_at` is set the first
    time the trial is shown.
    """
    __tablename__ = "plan_rows"
    id: Mapped[int] = mapped_column(primary_key=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id"))
    is_practice: Mapped[bool] = mapped_column(Boolean)
    is_attention_check: Mapped[bool] = mapped_column(Boolean)
    display: Mapped[dict[str, Any]]
    shown_at: Mapped[datetime | None]


class Response(_AnswerSlot, Base):
    """An answer, written the moment it is given; UNIQUE(participant, trial) makes replays no-ops.

    `response` is the option value as shown; `rating` is its numeric reading (Likert 1..5, or
    trust -2..+2 with + favouring the trial's `model` over `model_b`); `correct` is None for
    tasks without a right answer. `rt_ms` is the response time the participant's browser measured
    (stimuli on screen -> the submitting click or key); `server_rt_ms` the server's interval from
    building the trial to storing the answer (None for answers stored before it was kept).
    """
    __tablename__ = "responses"
    id: Mapped[int] = mapped_column(primary_key=True)
    plan_row_id: Mapped[int] = mapped_column(ForeignKey("plan_rows.id"))
    response: Mapped[str] = mapped_column(String(100))
    correct: Mapped[bool | None] = mapped_column(Boolean)
    confidence: Mapped[int | None]
    rating: Mapped[int | None]
    rt_ms: Mapped[int]
    server_rt_ms: Mapped[int | None]
    answered_at: Mapped[datetime] = mapped_column(default=utcnow)


class QuestionnaireAnswer(Base):
    """One answer to the closing questionnaire."""
    __tablename__ = "questionnaire_answers"
    __table_args__ = (UniqueConstraint("participant_id", "key"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id"), index=True)
    key: Mapped[str] = mapped_column(String(100))
    value: Mapped[str] = mapped_column(Text)


class Event(_OfStudy, Base):
    """An append-only log of what happened (entered, consented, completed, rebuilt, ...)."""
    __tablename__ = "events"
    participant_id: Mapped[int | None] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    kind: Mapped[str] = mapped_column(String(50))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Audit(_OfStudy, Base):
    """When and how a participant's data were withdrawn or erased, never what or whose."""
    __tablename__ = "audit"
    at: Mapped[datetime] = mapped_column(default=utcnow)
    action: Mapped[str] = mapped_column(String(20))     # "withdrawn" | "erased"
    how: Mapped[str] = mapped_column(String(50))        # "participant" | "admin page" | "command line"
    kept: Mapped[bool] = mapped_column(Boolean, default=False)   # answers kept, flagged withdrawn


def _participant_protection(connection: Connection) -> None:
    """Version 2: resume credentials, link parameters, withdrawal, between-subject conditions, pilot
    runs and language (participants), and the audit table."""
    moment = "TIMESTAMP WITH TIME ZONE" if connection.dialect.name == "postgresql" else "DATETIME"
    for column, kind in (("credential_hash", "VARCHAR(64)"), ("link_params", "JSON"), ("withdrawn_at", moment),
                         ("condition", "VARCHAR(50)"), ("is_pilot", "BOOLEAN"), ("language", "VARCHAR(8)")):
        connection.exec_driver_sql(f"ALTER TABLE participants ADD COLUMN {column} {kind}")
    connection.exec_driver_sql("UPDATE participants SET link_params = '{}', is_pilot = FALSE")
    # Rows are made at consent now: people who only opened the link are not kept, and a refusal keeps
    # the id and the refusal (events say whose only for those who consented).
    for statement in ("DELETE FROM events WHERE participant_id IN (SELECT id FROM participants WHERE consented IS NULL "
                      "OR consented = FALSE)",
                      "DELETE FROM participants WHERE consented IS NULL",
                      "UPDATE participants SET user_agent = '', consent_at = NULL WHERE consented = FALSE"):
        connection.exec_driver_sql(statement)
    Base.metadata.create_all(connection, tables=[Audit.__table__])


def _launch_safety(connection: Connection) -> None:
    """Version 3: the server's response time beside the browser's, resume codes, and the keyed hashes of
    withdrawn links. Columns a database already has are left alone."""
    present = {c["name"] for c in inspect(connection).get_columns("responses")}
    if "server_rt_ms" not in present:
        connection.exec_driver_sql("ALTER TABLE responses ADD COLUMN server_rt_ms INTEGER")
    present = {c["name"] for c in inspect(connection).get_columns("participants")}
    if "resume_code_hash" not in present:
        connection.exec_driver_sql("ALTER TABLE participants ADD COLUMN resume_code_hash VARCHAR(64)")
    Base.metadata.create_all(connection, tables=[WithdrawnId.__table__])


# Each entry upgrades the schema by one version inside one transaction: MIGRATIONS[0] takes a
# version-1 database to version 2, and so on. SCHEMA_VERSION == len(MIGRATIONS) + 1.
MIGRATIONS: list[Callable[[Connection], None]] = [_participant_protection, _launch_safety]


class SchemaTooNew(ValueError):
    """The database was written by a newer camstudy."""


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None      # SQLAlchemy's begin event issues BEGIN
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = FULL")  # an acknowledged answer survives a crash
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA secure_delete = ON")  # a deleted row's bytes are overwritten, not left in free space
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        write = connection.get_execution_options().get("camstudy_write", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


# File SQLite: SQLAlchemy's default QueuePool keeps 5 connections plus 10 overflow, and a thread
# that finds none free waits 30 s, then fails. A survey tab is a thread, and under WAL every
# reader works at once while writers queue in the database (BEGIN IMMEDIATE + busy timeout)
# still holding their connection, so 20 tabs submitting together could run that pool dry.
# A SQLite connection is only a file handle and a small page cache, so allow plenty: more
# than any one server process has tabs at once, and a wait longer than the busy timeout.
SQLITE_POOL_SIZE = 16
SQLITE_MAX_OVERFLOW = 48
SQLITE_POOL_TIMEOUT_S = BUSY_TIMEOUT_MS / 1000 + 30


def _sqlite_file(url: str) -> Path | None:
    """The file of a SQLite database on disk (None for other databases and in-memory ones)."""
    parsed = make_url(url)
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or database in ("", ":memory:") or "mode=memory" in database \
            or parsed.query.get("mode") == "memory":
        return None
    return Path(database)


def _pool_options(url: str) -> dict:
    """Engine pool options: larger for file SQLite; defaults elsewhere (an in-memory SQLite
    database lives in its one connection, and a server database's own connection limit is
    what bounds PostgreSQL)."""
    if _sqlite_file(url) is None:
        return {}
    return {"poolclass": QueuePool, "pool_size": SQLITE_POOL_SIZE,
            "max_overflow": SQLITE_MAX_OVERFLOW, "pool_timeout": SQLITE_POOL_TIMEOUT_S}


class Database:
    """An engine plus session factories for reads and (serialised, retried) writes."""

    def __init__(self, url: str):
        self.url = url
        self.file = _sqlite_file(url)
        if self.file is not None:     # owner-only from the start; SQLite gives its WAL and SHM the same mode
            owner_only.create(self.file)
            for companion in ("-wal", "-shm"):
                owner_only.restrict(f"{self.file}{companion}")
        self.engine = create_engine(url, **_pool_options(url))
        if self.engine.dialect.name == "sqlite":
            _configure_sqlite(self.engine)
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write = sessionmaker(self.engine.execution_options(camstudy_write=True),
                                   expire_on_commit=False)
        self._upgrade()

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._read() as session, session.begin():
            yield session

    def write(self, work: Callable[[Session], T], attempts: int = 8) -> T:
        """Run `work(session)` in one short write transaction, retrying if the database is busy.

        `work` must be safe to run again: a retry starts from a rolled-back state.
        """
        for attempt in range(attempts):
            try:
                with self._write() as session, session.begin():
                    return work(session)
            except OperationalError as err:
                text = str(err.orig).lower()
                if attempt + 1 == attempts or not ("locked" in text or "busy" in text):
                    raise
                time.sleep(0.05 * (2 ** attempt) * (0.5 + random.random()))
        raise AssertionError("unreachable")

    def forget_deleted(self) -> None:
        """After deleting someone's rows: on SQLite, copy the write-ahead log into the database file and
        truncate it to nothing, so that the log keeps no copy of the deleted rows (`secure_delete` has
        already overwritten them in the pages). Waits for readers like a writer would. PostgreSQL keeps
        deleted rows until its (auto)vacuum reclaims them: see README, Ethics and data protection."""
        if self.file is None:
            return
        connection = self.engine.raw_connection()
        try:
            cursor = connection.cursor()
            for attempt in range(20):     # busy: a reader still sees an older snapshot; it ends in milliseconds
                busy, _, _ = cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                if not busy:
                    return
                time.sleep(0.05 * (attempt + 1))
            raise OperationalError("PRAGMA wal_checkpoint(TRUNCATE)", {}, Exception("database is busy"))
        finally:
            connection.close()

    def _upgrade(self) -> None:
        with self.engine.execution_options(camstudy_write=True).begin() as connection:
            if not inspect(connection).has_table(SchemaVersion.__tablename__):
                Base.metadata.create_all(connection)
                connection.execute(SchemaVersion.__table__.insert().values(id=1, version=SCHEMA_VERSION))
                return
            if connection.dialect.name == "postgresql":   # two servers starting at once migrate one at a time
                connection.exec_driver_sql("LOCK TABLE schema_version IN ACCESS EXCLUSIVE MODE")
            version = connection.execute(select(SchemaVersion.version)).scalar_one()
            if version > SCHEMA_VERSION:
                raise SchemaTooNew(f"database {self.engine.url!r} has schema version {version}, newer than "
                                   f"this camstudy understands ({SCHEMA_VERSION}); upgrade camstudy")
            for migrate in MIGRATIONS[version - 1:]:
                migrate(connection)
            if version < SCHEMA_VERSION:
                connection.execute(SchemaVersion.__table__.update().values(version=SCHEMA_VERSION))


_open: dict[str, Database] = {}
_open_lock = threading.Lock()


def _forget_after_fork() -> None:
    """A forked child must not share its parent's pooled connections (or a held lock)."""
    global _open_lock
    for database in _open.values():
        database.engine.dispose(close=False)
    _open.clear()
    _open_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)


def open_database(url: str) -> Database:
    """The `Database` for `url`, shared within this process (engines are pools, keep one)."""
    with _open_lock:
        if url not in _open:
            _open[url] = Database(url)
        return _open[url]


@dataclass(frozen=True)
class StudyFolder:
    """A built study folder: its config, its database and the study version built from that config."""
    path: Path
    config: StudyConfig
    database: Database
    study_id: int


def open_study(folder: str | Path) -> StudyFolder:
    """Open a study folder made by `camstudy build`.

    FileNotFoundError when the folder, its study.toml or its SQLite database is missing;
    LookupError when the database holds no study built from the folder's current study.toml
    (the config was edited after the build).
    """
    path = Path(folder).resolve()
    if not path.is_dir():
        raise FileNotFoundError(f"study folder not found: {path}")
    config = load_config(path / CONFIG_FILE)
    url = os.environ.get(DATABASE_ENV) or config.database(path)
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).is_file():
        raise FileNotFoundError(f"no study database in {path}; run `camstudy build` first")
    database = open_database(url)
    with database.read() as session:
        study_id = session.scalar(select(Study.id).where(Study.config_hash == config.hash)
                                  .order_by(Study.id.desc()).limit(1))
    if study_id is None:
        raise LookupError(f"the database holds no study built from {path / CONFIG_FILE}: it was changed after "
                          f"the study was built (config hash {config.hash[:12]}); run `camstudy build` again")
    return StudyFolder(path, config, database, study_id)
