"""`camstudy export`: a study folder -> the tidy CSVs of DESIGN.md plus `codebook.csv`.

`export_tables(study_dir)` reads the database (through the ORM, read-only) and returns every
table as a DataFrame (the admin page shows them live); `write_exports(study_dir, out)` writes
them as CSV, with analysis.R beside them (study.results.analysis_r: the mixed models in R's lme4). The CSVs are deterministic: rows sorted, floats as `%.6g`, booleans `true`/`false`,
times ISO 8601 UTC, `\\n` line ends, so exporting the same database twice gives identical bytes.
Exclusion rules (study.results.analysis.flag_exclusions) set `excluded` flags; no row is dropped.
The tables' names and columns (the codebook) live in study.results.codebook, with every other output's.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from sqlalchemy import func, select

from study.results import analysis
from study.protocol.config import StudyConfig
from study.results.analysis_r import analysis_script, ANALYSIS_R
from study.results.codebook import CODEBOOK, TABLES, columns
from study.scoring.files import FAITHFULNESS_FILE, SCORE_FOLDERS
from study.protocol.tasks import TASKS
from study.store import owner_only
from study.store.database import (Audit, Image, Participant, PlanRow, QuestionnaireAnswer, Response, Stimulus, Study,
                                  as_utc, open_study)


@dataclass(frozen=True)
class StudyRecords:
    """What one study version holds, as frames in the export's column layout."""

    config: StudyConfig
    study_id: int
    config_hash: str
    responses: pd.DataFrame
    participants: pd.DataFrame
    questionnaire: pd.DataFrame
    withdrawals: pd.DataFrame
    stimuli: pd.DataFrame       # image_id, model, method, target_class, path (relative to the folder)


def load_study(study_dir: str | Path) -> StudyRecords:
    """Read a study folder's current study version (the one built from its study.toml).

    FileNotFoundError when the folder, its config or its database is missing; LookupError when
    the database holds no study built from this config.
    """
    folder = open_study(study_dir)
    config = folder.config
    with folder.database.read() as session:
        study = session.get(Study, folder.study_id)
        people = session.scalars(select(Participant).where(Participant.study_id == study.id)).all()
        answered = session.execute(
            select(PlanRow, Response).join(Participant, PlanRow.participant_id == Participant.id)
            .join(Response, Response.plan_row_id == PlanRow.id)
            .where(Participant.study_id == study.id)).all()
        answers = session.execute(
            select(QuestionnaireAnswer, Participant.external_id)
            .join(Participant, QuestionnaireAnswer.participant_id == Participant.id)
            .where(Participant.study_id == study.id)).all()
        stimuli = session.scalars(select(Stimulus).where(Stimulus.study_id == study.id)).all()
        withdrawals = session.execute(
            select(Audit.action, Audit.how, Audit.kept, func.count(Audit.id)).where(Audit.study_id == study.id)
            .group_by(Audit.action, Audit.how, Audit.kept).order_by(Audit.action, Audit.how, Audit.kept)).all()
        image_ids = dict(session.execute(select(Image.id, Image.image_id).where(Image.study_id == study.id)).all())
        study_id, config_hash = study.id, study.config_hash
    person = {p.id: p for p in people}
    responses = pd.DataFrame(
        [_response_row(study_id, person[plan.participant_id], plan, answer) for plan, answer in answered],
        columns=columns("responses"))
    participants = pd.DataFrame([_participant_row(p) for p in people], columns=columns("participants"))
    if len(participants):
        counted = responses[~responses["is_practice"].astype(bool)].groupby("participant_id").size()
        participants["n_answered"] = participants["participant_id"].map(counted).fillna(0).astype(int)
    questionnaire = pd.DataFrame(
        [(a.participant_id, ext, a.key, a.value) for a, ext in answers], columns=columns("questionnaire"))
    stimulus_frame = pd.DataFrame(
        [(image_ids.get(s.image_ref, ""), s.model, s.method, s.target_class, s.path) for s in stimuli],
        columns=["image_id", "model", "method", "target_class", "path"])
    withdrawal_frame = pd.DataFrame([tuple(row) for row in withdrawals], columns=columns("withdrawals"))
    return StudyRecords(config, study_id, config_hash, responses, participants, questionnaire, withdrawal_frame,
                        stimulus_frame)


def export_tables(study_dir: str | Path, *, scores_dir: str | Path | None = None,
                  n_resamples: int = 2000, include_pilot: bool = False) -> dict[str, pd.DataFrame]:
    """Every export table as a DataFrame, keyed responses, participants, faithfulness, summary,
    tests, correlations, questionnaire and codebook, with exclusion flags applied.

    Faithfulness scores come from `scores_dir` (a `camstudy score --out` folder) when given,
    else from the study folder itself or its scores/ subfolder when `camstudy score` wrote there.
    Pilot participants are flagged excluded unless `include_pilot`.
    """
    records = load_study(study_dir)
    faithfulness = read_faithfulness(find_scores(study_dir, scores_dir))
    return tables_from_records(records, faithfulness, n_resamples=n_resamples, include_pilot=include_pilot)


def tables_from_records(records: StudyRecords, faithfulness: pd.DataFrame, *,
                        n_resamples: int = 2000, include_pilot: bool = False) -> dict[str, pd.DataFrame]:
    """The export tables from already loaded records (the report reuses this)."""
    exclusion = records.config.exclusion
    responses, participants = analysis.flag_exclusions(
        records.responses, records.participants, min_rt_ms=exclusion.min_rt_ms,
        max_failed_attention_checks=exclusion.max_failed_attention_checks, exclude_pilot=not include_pilot)
    tables = {
        "responses": responses.sort_values(["study_id", "participant_id", "trial_index"], kind="stable"),
        "participants": participants.sort_values("participant_id", kind="stable"),
        "faithfulness": faithfulness,
        "summary": analysis.summarize(responses, n_resamples=n_resamples),
        "tests": analysis.method_tests(responses, method_order(records.config)),
        "correlations": analysis.correlate(responses, faithfulness),
        "questionnaire": records.questionnaire.sort_values(["participant_id", "key"], kind="stable"),
        "withdrawals": records.withdrawals,
    }
    tables = {name: _typed(name, frame) for name, frame in tables.items()}
    tables["codebook"] = codebook()
    return tables


def method_order(config: StudyConfig) -> list[str]:
    """The config's methods in its order (the study's list, then any only a task names): the
    first of them that a task used is the reference level of that task's mixed models."""
    return list(dict.fromkeys([*config.methods, *(m for task in config.tasks for m in task.methods)]))


def codebook() -> pd.DataFrame:
    """codebook.csv: one row per column of every exported CSV (itself included)."""
    rows = [(f"{table}.csv", name, kind, text) for table in TABLES for name, kind, text in CODEBOOK[table]]
    return pd.DataFrame(rows, columns=columns("codebook"))


def find_scores(study_dir: str | Path, scores_dir: str | Path | None = None) -> Path | None:
    """The folder holding the study's faithfulness.csv, or None when it has not been scored.

    An explicit `scores_dir` must hold one (FileNotFoundError otherwise)."""
    if scores_dir is not None:
        if not (Path(scores_dir) / FAITHFULNESS_FILE).is_file():
            raise FileNotFoundError(f"no {FAITHFULNESS_FILE} in {scores_dir}; run `camstudy score --out {scores_dir}` first")
        return Path(scores_dir)
    for place in SCORE_FOLDERS:
        folder = Path(study_dir) / place
        if (folder / FAITHFULNESS_FILE).is_file():
            return folder
    return None


def read_faithfulness(scores: Path | None) -> pd.DataFrame:
    """faithfulness.csv of a score folder, sorted, or an empty table with the header for None."""
    if scores is None:
        return pd.DataFrame(columns=columns("faithfulness"))
    path = scores / FAITHFULNESS_FILE
    frame = pd.read_csv(path, dtype={"image_id": str, "model": str, "method": str, "metric": str, "params": str})
    missing = set(columns("faithfulness")) - set(frame.columns)
    if missing:
        raise ValueError(f"{path} lacks columns {sorted(missing)}; expected {columns('faithfulness')}")
    return (frame[columns("faithfulness")]
            .sort_values(["image_id", "model", "method", "target_class", "metric", "params"], kind="stable")
            .reset_index(drop=True))


def csv_bytes(table: str, frame: pd.DataFrame) -> bytes:
    """One table as deterministic CSV bytes (the formatting of `write_exports`)."""
    if list(frame.columns) != columns(table):
        raise ValueError(f"{table} has columns {list(frame.columns)}, expected {columns(table)}")
    text = pd.DataFrame({name: frame[name].map(_FORMATTERS[kind]) for name, kind, _ in CODEBOOK[table]},
                        columns=columns(table))
    return text.to_csv(index=False, lineterminator="\n").encode("utf-8")


def write_exports(study_dir: str | Path, out: str | Path, *, scores_dir: str | Path | None = None,
                  include_pilot: bool = False) -> list[Path]:
    """Write every table to `out` as <table>.csv, and analysis.R (the mixed models in lme4);
    returns the paths written."""
    out = Path(out)
    records = load_study(study_dir)
    tables = tables_from_records(records, read_faithfulness(find_scores(study_dir, scores_dir)),
                                 include_pilot=include_pilot)
    owner_only.folder(out)        # the tables name participants: readable by their owner only
    written = [owner_only.write_bytes(out / f"{name}.csv", csv_bytes(name, tables[name])) for name in TABLES]
    script = owner_only.write_bytes(out / ANALYSIS_R, analysis_script(method_order(records.config)).encode("utf-8"))
    return [*written, script]


# --- rows and formatting ---------------------------------------------------------------------


def _response_row(study_id: int, person: Participant, plan: PlanRow, answer: Response) -> dict:
    left, right = TASKS[plan.task].shown_methods(plan.method, plan.method_b, plan.display)
    return {
        "study_id": study_id, "participant_id": plan.participant_id, "external_id": person.external_id,
        "condition": person.condition, "is_pilot": bool(person.is_pilot),
        "trial_index": plan.trial_index, "task": plan.task, "image_id": plan.image_id,
        "model": plan.model, "method": left, "method_b": right, "target_class": plan.target_class,
        "phase": plan.display.get("phase"), "round": plan.display.get("round"),
        "model_decision": plan.target_class if plan.display.get("phase") in ("learn", "guess", "test") else None,
        "model_correct": plan.display.get("model_correct"), "image_class": plan.display.get("image_class"),
        "response": answer.response, "correct": answer.correct, "confidence": answer.confidence,
        "rating": answer.rating, "rt_ms": answer.rt_ms, "server_rt_ms": answer.server_rt_ms,
        "shown_at": as_utc(plan.shown_at),
        "answered_at": as_utc(answer.answered_at), "is_practice": bool(plan.is_practice),
        "is_attention_check": bool(plan.is_attention_check), "excluded": False,
    }


def _participant_row(person: Participant) -> dict:
    return {
        "participant_id": person.id, "external_id": person.external_id, "seed": person.seed,
        "consent_at": as_utc(person.consent_at), "started_at": as_utc(person.started_at),
        "completed_at": as_utc(person.completed_at), "completion_code": person.completion_code,
        "n_answered": 0, "attention_passed": True, "excluded": False, "user_agent": person.user_agent,
        "consent": {True: "agreed", False: "declined"}.get(person.consented),
        "condition": person.condition, "is_pilot": bool(person.is_pilot),
        "withdrawn": person.withdrawn_at is not None, "language": person.language,
    }


_DTYPES = {"integer": "Int64", "float": "float64", "boolean": "boolean", "string": "object"}


def _typed(table: str, frame: pd.DataFrame) -> pd.DataFrame:
    """The table's columns in codebook order with matching dtypes (nullable ints and booleans)."""
    typed = {}
    for name, kind, _ in CODEBOOK[table]:
        column = frame[name]
        if kind == "datetime":
            typed[name] = pd.to_datetime(column, utc=True)
        elif kind in ("string", "text"):
            typed[name] = column.astype(object).where(column.notna(), None)
        else:
            typed[name] = column.astype(_DTYPES[kind])
    return pd.DataFrame(typed, columns=columns(table)).reset_index(drop=True)


def _missing(value) -> bool:
    return value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value))


def _integer(value) -> str:
    return "" if _missing(value) else str(int(value))


def _float(value) -> str:
    return "" if _missing(value) else f"{float(value):.6g}"


def _boolean(value) -> str:
    return "" if _missing(value) else ("true" if bool(value) else "false")


def _datetime(value) -> str:
    if _missing(value):
        return ""
    moment = pd.Timestamp(value)
    moment = moment.tz_localize("UTC") if moment.tzinfo is None else moment.tz_convert("UTC")
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _string(value) -> str:
    return "" if _missing(value) else str(value)


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _text(value) -> str:
    """Free text, neutralised: a spreadsheet would run a cell starting with = + - @ (or a tab or
    carriage return) as a formula; a leading ' makes it show the text instead."""
    text = _string(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


_FORMATTERS = {"integer": _integer, "float": _float, "boolean": _boolean, "datetime": _datetime,
               "string": _string, "text": _text}
