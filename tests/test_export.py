"""camstudy export: DESIGN.md's columns, a complete codebook, exclusion flags, byte-identical reruns."""
import csv
import io

import pandas as pd
import pytest
from _export_fixtures import populate_study, synthetic_faithfulness, synthetic_results
from _study_fixtures import build_fake_study
from sqlalchemy import func, select

from study.results import export
from study.results import codebook as outputs
from study.cli import main
from study.protocol.config import load_config
from study.results.report import write_report
from study.survey.simulator import simulate_participants
from study.store.database import Response, open_database

# The Export section of DESIGN.md, copied by hand: the contract the code must meet.
DESIGN_COLUMNS = {
    "responses": "study_id, participant_id, external_id, trial_index, task, image_id, model, method, "
                 "method_b, target_class, response, correct, confidence, rating, rt_ms, server_rt_ms, shown_at, "
                 "answered_at, is_practice, is_attention_check, excluded, condition, is_pilot, "
                 "phase, round, model_decision, model_correct, "  # round 3: server_rt_ms, the utility task
                 "image_class",   # the true class of a utility image (its reliance measures), beyond DESIGN.md
    "participants": "participant_id, external_id, seed, consent_at, started_at, completed_at, "
                    "completion_code, n_answered, attention_passed, excluded, user_agent, consent, condition, is_pilot, "
                    "withdrawn, language",   # language: issue 13, item 3 (the brief), beyond DESIGN.md
    "faithfulness": "image_id, model, method, target_class, metric, value, params",
}


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory):
    return populate_study(tmp_path_factory.mktemp("study"))


@pytest.fixture(scope="module")
def exported(study_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    assert main(["export", str(study_dir), "--out", str(out)]) == 0
    return out


def _read(path):
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def test_every_csv_is_written_with_design_columns(exported):
    for table, design in DESIGN_COLUMNS.items():
        with open(exported / f"{table}.csv", newline="") as handle:
            assert next(csv.reader(handle)) == design.split(", ")
    for table in ("summary", "tests", "correlations", "codebook", "questionnaire"):
        assert (exported / f"{table}.csv").is_file()
    summary = _read(exported / "summary.csv")
    assert {"task", "method", "n", "estimate", "ci_low", "ci_high", "vote_score"} <= set(summary.columns)
    tests = _read(exported / "tests.csv")
    assert {"test", "statistic", "p", "n"} <= set(tests.columns)


def test_exports_are_readable_by_their_owner_only(exported, study_dir):
    assert exported.stat().st_mode & 0o077 == 0                     # a folder the export made: owner only
    for path in exported.iterdir():
        assert path.stat().st_mode & 0o777 == 0o600, path
    assert (study_dir / "study.db").stat().st_mode & 0o777 == 0o600


def test_codebook_describes_every_column_of_every_csv(exported):
    book = _read(exported / "codebook.csv")
    assert list(book.columns) == ["file", "column", "type", "description"]
    described = {(f, c) for f, c in zip(book["file"], book["column"])}
    present = set()
    for path in sorted(exported.glob("*.csv")):
        with open(path, newline="") as handle:
            present |= {(path.name, column) for column in next(csv.reader(handle))}
    assert described == present
    assert len(book) == len(described)  # no column described twice
    assert set(book["type"]) <= {"integer", "float", "boolean", "string", "text", "datetime"}
    assert (book["description"].str.len() > 5).all()


def test_no_row_deleted_and_exclusions_flagged(exported):
    responses, participants = synthetic_results()
    out = _read(exported / "responses.csv")
    people = _read(exported / "participants.csv")
    assert len(out) == len(responses) and len(people) == len(participants)
    excluded_people = set(people.loc[people["excluded"] == "true", "external_id"])
    assert excluded_people == {"PRO6", "PRO8"}  # failed attention check; never completed
    assert list(people.loc[people["attention_passed"] == "false", "external_id"]) == ["PRO6"]
    flagged = out[out["excluded"] == "true"]
    assert set(flagged["external_id"]) == {"PRO6", "PRO7", "PRO8"}
    assert list(flagged.loc[flagged["external_id"] == "PRO7", "rt_ms"]) == ["120"]  # too fast (< 300 ms)
    assert (out.loc[out["external_id"].isin(["PRO6", "PRO8"]), "excluded"] == "true").all()
    assert set(out["excluded"]) == {"true", "false"}


def test_compare_rows_name_left_and_right_methods(exported):
    responses, _ = synthetic_results()
    out = _read(exported / "responses.csv")
    want = responses[responses["task"] == "compare"][["external_id", "trial_index", "method", "method_b", "response"]]
    got = out[out["task"] == "compare"][["external_id", "trial_index", "method", "method_b", "response"]]
    want = want.astype(str).sort_values(["external_id", "trial_index"]).reset_index(drop=True)
    got = got.sort_values(["external_id", "trial_index"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(got.assign(trial_index=got["trial_index"].astype(str)), want)


def test_formats_are_fixed(exported):
    out = _read(exported / "responses.csv")
    assert out["shown_at"].str.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z").all()
    assert set(out["is_practice"]) == {"true", "false"}
    assert out["rt_ms"].str.fullmatch(r"\d+").all()
    assert set(out["correct"]) == {"true", "false", ""}
    keys = list(zip(out["participant_id"].astype(int), out["trial_index"].astype(int)))
    assert keys == sorted(keys)


def test_rerun_is_byte_identical(study_dir, exported, tmp_path):
    assert main(["export", str(study_dir), "--out", str(tmp_path)]) == 0
    for path in exported.glob("*.csv"):
        assert (tmp_path / path.name).read_bytes() == path.read_bytes(), path.name


def test_faithfulness_is_joined_when_present(tmp_path):
    folder = populate_study(tmp_path / "study")
    responses, _ = synthetic_results()
    faith = synthetic_faithfulness(responses).sample(frac=1, random_state=0)  # unsorted on purpose
    faith.to_csv(folder / "faithfulness.csv", index=False)
    tables = export.export_tables(folder, n_resamples=200)
    assert len(tables["faithfulness"]) == len(faith)
    assert list(tables["faithfulness"]["image_id"]) == sorted(tables["faithfulness"]["image_id"])
    assert len(tables["correlations"]) > 0
    assert set(tables["correlations"]["metric"]) == {"deletion_auc"}


def test_faithfulness_from_a_separate_score_folder(tmp_path, capsys):
    folder = populate_study(tmp_path / "study")
    scores = tmp_path / "scores"
    scores.mkdir()
    synthetic_faithfulness(synthetic_results()[0]).to_csv(scores / "faithfulness.csv", index=False)
    out = tmp_path / "out"
    assert main(["export", str(folder), "--out", str(out), "--scores", str(scores)]) == 0
    assert len(_read(out / "faithfulness.csv")) == 18 and len(_read(out / "correlations.csv")) > 0
    assert main(["export", str(folder), "--out", str(out), "--scores", str(tmp_path)]) == 2
    assert "no faithfulness.csv in" in capsys.readouterr().err


def test_faithfulness_is_empty_with_header_when_absent(exported):
    text = (exported / "faithfulness.csv").read_text()
    assert text == "image_id,model,method,target_class,metric,value,params\n"


def test_export_tables_keys_and_dtypes(study_dir):
    tables = export.export_tables(study_dir, n_resamples=200)
    assert {"responses", "participants", "summary", "tests", "correlations", "faithfulness",
            "codebook"} <= set(tables)
    responses = tables["responses"]
    assert str(responses["excluded"].dtype) == "boolean"
    assert str(responses["rating"].dtype) == "Int64"
    assert str(responses["shown_at"].dt.tz) == "UTC"


def test_bad_study_folders_give_clear_errors(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="study folder not found"):
        export.export_tables(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="study config not found"):
        export.export_tables(tmp_path / "empty")
    folder = populate_study(tmp_path / "study")
    (folder / "study.toml").write_text((folder / "study.toml").read_text().replace("seed = 3", "seed = 4"))
    with pytest.raises(LookupError, match="no study built from"):
        export.export_tables(folder)
    assert main(["export", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    assert "study folder not found" in capsys.readouterr().err


def test_faithfulness_with_wrong_columns_is_refused(tmp_path):
    folder = populate_study(tmp_path / "study")
    pd.DataFrame({"image_id": ["a"], "score": [1.0]}).to_csv(folder / "faithfulness.csv", index=False)
    with pytest.raises(ValueError, match="lacks columns"):
        export.export_tables(folder)


def test_csv_bytes_refuses_wrong_columns():
    with pytest.raises(ValueError, match="expected"):
        export.csv_bytes("faithfulness", pd.DataFrame({"image_id": []}))
    header = export.csv_bytes("faithfulness", pd.DataFrame(columns=outputs.columns("faithfulness")))
    assert list(csv.reader(io.StringIO(header.decode())))[0] == DESIGN_COLUMNS["faithfulness"].split(", ")


# --- end to end: a study built by `study.stimuli.build` and answered by `study.survey.simulator` --------------


@pytest.fixture(scope="module")
def simulated_study(tmp_path_factory):
    folder = build_fake_study(tmp_path_factory.mktemp("e2e"))
    simulate_participants(folder, 6, {"gradcam": 0.95, "cam": 0.3, "ablationcam": 0.7}, seed=1)
    return folder


def test_end_to_end_export_and_report(simulated_study, tmp_path):
    assert main(["export", str(simulated_study), "--out", str(tmp_path / "export")]) == 0
    assert main(["report", str(simulated_study), "--out", str(tmp_path / "report")]) == 0
    config = load_config(simulated_study / "study.toml")
    with open_database(config.database(simulated_study)).read() as session:
        stored = session.scalar(select(func.count()).select_from(Response))
    responses = _read(tmp_path / "export" / "responses.csv")
    people = _read(tmp_path / "export" / "participants.csv")
    assert len(responses) == stored > 0
    assert len(people) == 6 and people["external_id"].str.startswith("SIM-").all()
    assert (people["excluded"] == "false").all() and (people["attention_passed"] == "true").all()
    assert set(responses["task"]) == {"class_discrimination", "compare", "rating", "trust", "distinction", "agreement"}
    compare = responses[responses["task"] == "compare"]
    assert (compare["method"] != compare["method_b"]).all()
    assert (compare["response"].eq(compare["method"]) | compare["response"].eq(compare["method_b"])
            | compare["response"].eq("same")).all()
    trust = responses[responses["task"] == "trust"]
    assert set(trust["rating"].astype(int)) <= {-2, -1, 0, 1, 2}
    # The simulated accuracies (gradcam 0.95, cam 0.3) come back out of the scored tasks.
    scored = responses[(responses["correct"] != "") & (responses["is_practice"] == "false")
                       & (responses["is_attention_check"] == "false")]
    accuracy = scored.assign(ok=scored["correct"] == "true").groupby("method")["ok"].mean()
    assert accuracy["gradcam"] > 0.8 and accuracy["cam"] < 0.5
    summary = _read(tmp_path / "export" / "summary.csv")
    assert set(summary["task"]) == set(responses["task"])
    page = (tmp_path / "report" / "index.html").read_text()
    assert "simulated data" in page and "engine test" in page


def test_a_study_without_answers_exports_headers_and_reports(tmp_path):
    folder = build_fake_study(tmp_path)
    tables = export.export_tables(folder)  # the admin page calls this before anyone has answered
    for name in ("responses", "participants", "summary", "tests", "correlations"):
        assert tables[name].empty and list(tables[name].columns) == outputs.columns(name)
    page = write_report(folder, tmp_path / "report").read_text()
    assert "No analysable answers yet." in page
