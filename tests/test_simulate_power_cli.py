"""`camstudy simulate`, `camstudy power` and the export's analysis.R, from the command line."""
import shutil
import subprocess

import pandas as pd
import pytest
from _study_fixtures import build_fake_study, memory_backed_dir, write_config
from sqlalchemy import select

from study.cli import main
from study.store.identity import SIM_PREFIX
from study.survey.session import SurveySession
from study.store.database import Participant
from test_mixed import needs_lme4

TASKS = """
[[tasks]]
type = "class_discrimination"
composites = 7
trials = 6

[[tasks]]
type = "rating"
methods = ["gradcam", "cam"]

[[tasks]]
type = "compare"
methods = ["gradcam", "cam"]
trials = 3
"""
ACCURACY = "gradcam=0.85,cam=0.5,ablationcam=0.7"


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    """A fake study filled by `camstudy simulate` with 16 participants, then exported."""
    with memory_backed_dir() as scratch:
        study = build_fake_study(scratch, TASKS, practice=1, attention=1)
        assert main(["simulate", str(study), "--participants", "16", "--seed", "4", "--accuracy", ACCURACY]) == 0
        kept = tmp_path_factory.mktemp("simulated") / "study"
        shutil.copytree(study, kept)
    assert main(["export", str(kept), "--out", str(kept / "export")]) == 0
    return kept


def test_simulate_fills_the_study_with_marked_participants(simulated, capsys):
    with SurveySession(simulated).db.read() as session:
        people = session.scalars(select(Participant)).all()
    assert len(people) == 16 and all(p.external_id.startswith(f"{SIM_PREFIX}4-") for p in people)
    assert all(p.completed_at is not None for p in people)
    responses = pd.read_csv(simulated / "export" / "responses.csv")
    scored = responses[responses["task"] == "class_discrimination"]
    accuracy = scored.groupby("method")["correct"].mean()
    assert accuracy["gradcam"] > accuracy["cam"]


@pytest.mark.parametrize("arguments,message", [
    (["--participants", "2", "--accuracy", "gradcam=1.5,cam=0.5,ablationcam=0.5"], "is not method=p"),
    (["--participants", "2", "--accuracy", "gradcam=0.5,rise=0.5"], "names rise, not a method of the study"),
    (["--participants", "0"], "at least 1"),
    (["--participants", "2", "--participant-sd", "-1"], "must be >= 0"),
])
def test_simulate_refuses_bad_input_in_one_line(simulated, arguments, message, capsys):
    assert main(["simulate", str(simulated), *arguments]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_power_writes_the_curve_and_its_plot(tmp_path, capsys):
    config = write_config(tmp_path / "config", TASKS)
    out = tmp_path / "power"
    assert main(["power", str(config), "--accuracy", ACCURACY, "--participants", "6,12",
                 "--simulations", "20", "--out", str(out)]) == 0
    power = pd.read_csv(out / "power.csv")
    assert list(power.columns) == ["participants", "power", "ci_low", "ci_high"]
    assert power["participants"].tolist() == [6, 12] and power["power"].between(0, 1).all()
    assert (out / "power.png").stat().st_size > 1000
    assert "class_discrimination" in capsys.readouterr().out


def test_power_from_a_pilot_study(simulated, tmp_path, capsys):
    out = tmp_path / "power"
    assert main(["power", str(simulated / "study.toml"), "--pilot", str(simulated), "--participants", "8",
                 "--simulations", "10", "--out", str(out), "--design", "between"]) == 0
    assert len(pd.read_csv(out / "power.csv")) == 1
    assert "between" in capsys.readouterr().out


@pytest.mark.parametrize("arguments,message", [
    (["--accuracy", "gradcam=0.8"], "needs exactly the class_discrimination task's methods"),
    (["--accuracy", ACCURACY, "--participants", "ten"], "--participants takes positive whole numbers"),
    (["--accuracy", ACCURACY, "--task", "rating"], "no task rating"),
    (["--accuracy", "gradcam=0.8,cam=1,ablationcam=0.5"], "strictly between 0 and 1"),
])
def test_power_refuses_bad_input_in_one_line(tmp_path, arguments, message, capsys):
    config = write_config(tmp_path / "config", TASKS)
    assert main(["power", str(config), *arguments, "--simulations", "2", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


@needs_lme4
def test_analysis_r_reproduces_the_mixed_models_of_tests_csv(simulated):
    export = simulated / "export"
    subprocess.run(["Rscript", "analysis.R"], cwd=export, check=True, capture_output=True)
    theirs = pd.read_csv(export / "tests_lme4.csv")
    tests = pd.read_csv(export / "tests.csv")
    ours = tests[tests["test"].isin(["mixed_logit", "mixed_linear"])]
    keys = ["task", "model", "measure", "test", "method_a", "method_b"]
    joined = ours.merge(theirs, on=keys, suffixes=("", "_r"), validate="one_to_one")
    assert len(joined) == len(ours) == len(theirs) and {"mixed_logit", "mixed_linear"} <= set(joined["test"])
    assert (joined["n"] == joined["n_r"]).all()
    tolerance = joined["test"].map({"mixed_logit": 0.02, "mixed_linear": 0.01})
    assert ((joined["estimate"] - joined["estimate_r"]).abs() <= tolerance).all(), joined[keys + ["estimate", "estimate_r"]]
    # The reference level is the config's first method.
    assert set(ours.loc[ours["task"] == "class_discrimination", "method_b"]) == {"gradcam"}


def test_the_report_shows_the_mixed_models(simulated, tmp_path):
    assert main(["report", str(simulated), "--out", str(tmp_path)]) == 0
    page = (tmp_path / "index.html").read_text()
    section = page[page.index("<h2>Mixed-effects models</h2>"):]
    assert "outcome ~ method + (1|participant) + (1|image)" in section and "mixed_logit" in section
