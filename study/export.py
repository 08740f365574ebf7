"""`camstudy export`: a study folder -> the tidy CSVs of DESIGN.md plus `codebook.csv`.

`export_tables(study_dir)` reads the database (through the ORM, read-only) and returns every
table as a DataFrame (the admin page shows them live); `write_exports(study_dir, out)` writes
them as CSV. The CSVs are deterministic: rows sorted, floats as `%.6g`, booleans `true`/`false`,
times ISO 8601 UTC, `\\n` line ends, so exporting the same database twice gives identical bytes.
Exclusion rules (study.analysis.flag_exclusions) set `excluded` flags; no row is dropped.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from sqlalchemy import select

from study import analysis
from study.config import StudyConfig
from study.tasks import TASKS
from study.storage import (Image, Participant, PlanRow, QuestionnaireAnswer, Response, Stimulus, Study,
                           as_utc, open_study)

FAITHFULNESS_FILE = "faithfulness.csv"
# Where `camstudy score --out` may have written inside a study folder, in search order.
SCORE_FOLDERS = (".", "scores", "score")

# file -> [(column, type, description)], in the files' column order. The CSV headers are
# generated from this, so the codebook cannot disagree with the files.
CODEBOOK: dict[str, list[tuple[str, str, str]]] = {
    "responses": [
        ("study_id", "integer", "Database id of the study version the answer belongs to."),
        ("participant_id", "integer", "Database id of the participant (see participants.csv)."),
        ("external_id", "string", "The participant's id from the link (PROLIFIC_PID, pid, ...); 'SIM-' marks simulated participants."),
        ("trial_index", "integer", "Position of the trial in the participant's plan, from 0."),
        ("task", "string", "Task type: class_discrimination, compare, rating, trust, distinction or agreement."),
        ("image_id", "string", "Id of the stimulus image (a photo or a two-category composite)."),
        ("model", "string", "Classifier explained; for trust, the model that positive ratings favour."),
        ("method", "string", "Explanation method shown; for compare, the map shown on the left."),
        ("method_b", "string", "compare: the method shown on the right; empty for other tasks."),
        ("target_class", "integer", "ImageNet class index the explanation is for."),
        ("response", "string", "The option chosen: compare the preferred method's name or 'same'; class_discrimination a class index or both_or_neither; distinction a class index; agreement yes/no; rating 1-5; trust -2..2 as shown (negative = left model)."),
        ("correct", "boolean", "Whether the answer is right (class_discrimination, distinction, agreement, attention checks); empty where no answer is right."),
        ("confidence", "integer", "Confidence on the task's 4- or 5-point scale (distinction, agreement); empty if not asked."),
        ("rating", "integer", "Numeric reading of the answer: Likert 1-5 (rating) or -2..+2 (trust, positive favours `model`)."),
        ("rt_ms", "integer", "Response time in milliseconds, from the trial being shown to the answer."),
        ("shown_at", "datetime", "When the trial was first shown (ISO 8601, UTC)."),
        ("answered_at", "datetime", "When the answer was stored (ISO 8601, UTC)."),
        ("is_practice", "boolean", "Practice trial with feedback; not analysed."),
        ("is_attention_check", "boolean", "Attention-check trial; decides attention_passed, not analysed otherwise."),
        ("excluded", "boolean", "Left out of the statistics: the participant is excluded, or the answer came faster than the config's exclusion.min_rt_ms."),
    ],
    "participants": [
        ("participant_id", "integer", "Database id of the participant."),
        ("external_id", "string", "Id from the link; 'SIM-' marks simulated participants."),
        ("seed", "integer", "Seed of the participant's randomised trial plan."),
        ("consent_at", "datetime", "When consent was given (ISO 8601, UTC); empty if never."),
        ("started_at", "datetime", "When the participant entered the survey (ISO 8601, UTC)."),
        ("completed_at", "datetime", "When the participant finished (ISO 8601, UTC); empty if not finished."),
        ("completion_code", "string", "Completion code shown at the end; empty if not finished."),
        ("n_answered", "integer", "Answered trials, practice trials not counted."),
        ("attention_passed", "boolean", "At most exclusion.max_failed_attention_checks attention checks answered wrongly."),
        ("excluded", "boolean", "Left out of the statistics: failed attention checks or did not complete."),
        ("user_agent", "string", "Browser user agent at entry."),
    ],
    "faithfulness": [
        ("image_id", "string", "Id of the image scored."),
        ("model", "string", "Classifier explained."),
        ("method", "string", "Explanation method scored."),
        ("target_class", "integer", "ImageNet class index the map explains."),
        ("metric", "string", "Metric name from `camstudy score` (deletion_auc, insertion_auc, pointing_game, ...)."),
        ("value", "float", "The metric's value for this map."),
        ("params", "string", "JSON of the metric's parameters (step, substrate, ...)."),
    ],
    "summary": [
        ("task", "string", "Task type."),
        ("model", "string", "Classifier explained."),
        ("method", "string", "Explanation method."),
        ("measure", "string", "accuracy (share correct), preferred (compare: share of its comparisons the method won), rating, trust or confidence (means)."),
        ("n", "integer", "Analysed answers."),
        ("n_participants", "integer", "Participants contributing those answers."),
        ("estimate", "float", "Proportion or mean."),
        ("ci_low", "float", "Lower end of the 95% interval."),
        ("ci_high", "float", "Upper end of the 95% interval."),
        ("ci_method", "string", "wilson (score interval for proportions) or bootstrap (percentile, 2000 resamples of participants, seed 0)."),
        ("vote_score", "float", "compare only: Ablation-CAM normalised vote score, the method's share of the votes per image pair averaged over pairs (see study.analysis.vote_scores)."),
    ],
    "tests": [
        ("task", "string", "Task type."),
        ("model", "string", "Classifier explained."),
        ("measure", "string", "Measure tested (as in summary.csv); 'response' for nominal Krippendorff's alpha, which is computed on the answers themselves."),
        ("test", "string", "wilcoxon_exact / wilcoxon_normal (signed-rank; exact null without ties, else normal approximation), wilcoxon_vs_zero_* (trust against 0), mcnemar_exact (exact binomial on discordant pairs), friedman, sign_test_exact (compare votes, ties set aside), krippendorff_alpha_<level>."),
        ("method_a", "string", "First method of the pair; 'all' for tests across methods."),
        ("method_b", "string", "Second method of the pair; empty for tests across methods or against zero."),
        ("paired_by", "string", "Unit of pairing: participant (per-participant means), participant_image, answer, or stimulus (alpha: units are stimuli, raters participants)."),
        ("statistic", "float", "Test statistic (Wilcoxon W, McNemar min(b, c), Friedman chi-square, votes for method_a, or alpha itself)."),
        ("p", "float", "Two-sided p-value; empty for Krippendorff's alpha."),
        ("n", "integer", "Paired units (participants, participant x image pairs, votes or stimuli)."),
    ],
    "correlations": [
        ("level", "string", "method: across images for one method; image: across methods for one image."),
        ("model", "string", "Classifier explained."),
        ("method", "string", "Method (level method); empty otherwise."),
        ("image_id", "string", "Image (level image); empty otherwise."),
        ("human_measure", "string", "Human measure averaged per method and image (rating, trust, class_discrimination_accuracy, compare_preferred, ...)."),
        ("metric", "string", "Faithfulness metric (faithfulness.csv)."),
        ("rho", "float", "Spearman rank correlation."),
        ("p", "float", "Two-sided p-value of rho."),
        ("n", "integer", "Points correlated (images or methods)."),
    ],
    "questionnaire": [
        ("participant_id", "integer", "Database id of the participant."),
        ("external_id", "string", "Id from the link."),
        ("key", "string", "Questionnaire item key from the config."),
        ("value", "string", "The answer as given."),
    ],
    "codebook": [
        ("file", "string", "CSV file the column belongs to."),
        ("column", "string", "Column name."),
        ("type", "string", "integer, float, boolean (true/false), string or datetime (ISO 8601, UTC); empty cell = missing."),
        ("description", "string", "What the column holds."),
    ],
}
TABLES = ("responses", "participants", "faithfulness", "summary", "tests", "correlations",
          "questionnaire", "codebook")


def columns(table: str) -> list[str]:
    return [name for name, _, _ in CODEBOOK[table]]


@dataclass(frozen=True)
class StudyRecords:
    """What one study version holds, as frames in the export's column layout."""

    config: StudyConfig
    study_id: int
    config_hash: str
    responses: pd.DataFrame
    participants: pd.DataFrame
    questionnaire: pd.DataFrame
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
        image_ids = dict(session.execute(select(Image.id, Image.image_id).where(Image.study_id == study.id)).all())
        study_id, config_hash = study.id, study.config_hash
    external = {p.id: p.external_id for p in people}
    responses = pd.DataFrame(
        [_response_row(study_id, external[plan.participant_id], plan, answer) for plan, answer in answered],
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
    return StudyRecords(config, study_id, config_hash, responses, participants, questionnaire, stimulus_frame)


def export_tables(study_dir: str | Path, *, scores_dir: str | Path | None = None,
                  n_resamples: int = 2000) -> dict[str, pd.DataFrame]:
    """Every export table as a DataFrame, keyed responses, participants, faithfulness, summary,
    tests, correlations, questionnaire and codebook, with exclusion flags applied.

    Faithfulness scores come from `scores_dir` (a `camstudy score --out` folder) when given,
    else from the study folder itself or its scores/ subfolder when `camstudy score` wrote there.
    """
    records = load_study(study_dir)
    faithfulness = read_faithfulness(find_scores(study_dir, scores_dir))
    return tables_from_records(records, faithfulness, n_resamples=n_resamples)


def tables_from_records(records: StudyRecords, faithfulness: pd.DataFrame, *,
                        n_resamples: int = 2000) -> dict[str, pd.DataFrame]:
    """The export tables from already loaded records (the report reuses this)."""
    exclusion = records.config.exclusion
    responses, participants = analysis.flag_exclusions(
        records.responses, records.participants, min_rt_ms=exclusion.min_rt_ms,
        max_failed_attention_checks=exclusion.max_failed_attention_checks)
    tables = {
        "responses": responses.sort_values(["study_id", "participant_id", "trial_index"], kind="stable"),
        "participants": participants.sort_values("participant_id", kind="stable"),
        "faithfulness": faithfulness,
        "summary": analysis.summarize(responses, n_resamples=n_resamples),
        "tests": analysis.method_tests(responses),
        "correlations": analysis.correlate(responses, faithfulness),
        "questionnaire": records.questionnaire.sort_values(["participant_id", "key"], kind="stable"),
    }
    tables = {name: _typed(name, frame) for name, frame in tables.items()}
    tables["codebook"] = codebook()
    return tables


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


def write_exports(study_dir: str | Path, out: str | Path, *, scores_dir: str | Path | None = None) -> list[Path]:
    """Write every table to `out` as <table>.csv; returns the paths written."""
    out = Path(out)
    tables = export_tables(study_dir, scores_dir=scores_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in TABLES:
        path = out / f"{name}.csv"
        path.write_bytes(csv_bytes(name, tables[name]))
        written.append(path)
    return written


# --- rows and formatting ---------------------------------------------------------------------


def _response_row(study_id: int, external_id: str, plan: PlanRow, answer: Response) -> dict:
    left, right = TASKS[plan.task].shown_methods(plan.method, plan.method_b, plan.display)
    return {
        "study_id": study_id, "participant_id": plan.participant_id, "external_id": external_id,
        "trial_index": plan.trial_index, "task": plan.task, "image_id": plan.image_id,
        "model": plan.model, "method": left, "method_b": right, "target_class": plan.target_class,
        "response": answer.response, "correct": answer.correct, "confidence": answer.confidence,
        "rating": answer.rating, "rt_ms": answer.rt_ms, "shown_at": as_utc(plan.shown_at),
        "answered_at": as_utc(answer.answered_at), "is_practice": bool(plan.is_practice),
        "is_attention_check": bool(plan.is_attention_check), "excluded": False,
    }


def _participant_row(person: Participant) -> dict:
    return {
        "participant_id": person.id, "external_id": person.external_id, "seed": person.seed,
        "consent_at": as_utc(person.consent_at), "started_at": as_utc(person.started_at),
        "completed_at": as_utc(person.completed_at), "completion_code": person.completion_code,
        "n_answered": 0, "attention_passed": True, "excluded": False, "user_agent": person.user_agent,
    }


_DTYPES = {"integer": "Int64", "float": "float64", "boolean": "boolean", "string": "object"}


def _typed(table: str, frame: pd.DataFrame) -> pd.DataFrame:
    """The table's columns in codebook order with matching dtypes (nullable ints and booleans)."""
    typed = {}
    for name, kind, _ in CODEBOOK[table]:
        column = frame[name]
        if kind == "datetime":
            typed[name] = pd.to_datetime(column, utc=True)
        elif kind == "string":
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


_FORMATTERS = {"integer": _integer, "float": _float, "boolean": _boolean, "datetime": _datetime,
               "string": _string}
