"""`camstudy demo` end to end on the embedded default: every output exists, parses and says something."""
import csv
import math

import pytest
from statsmodels.stats.proportion import proportion_confint

from study.cli import main
from study.demo import SIMULATED_ACCURACY, SIMULATED_PARTICIPANTS
from study.explainers import METHODS


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "study"
    assert main(["demo", "--out", str(out)]) == 0
    return out


@pytest.mark.slow
def test_demo_writes_every_output(demo, capsys):
    for name in ("responses", "participants", "faithfulness", "summary", "tests", "correlations", "codebook"):
        assert rows(demo / "export" / f"{name}.csv"), f"{name}.csv is empty"
    assert (demo / "study.toml").is_file() and (demo / "study.db").is_file()
    assert any((demo / "stimuli").rglob("*.png"))
    assert (demo / "scores" / "curves.png").is_file()


@pytest.mark.slow
def test_faithfulness_has_every_method_and_metric(demo):
    table = rows(demo / "export" / "faithfulness.csv")
    metrics = {r["metric"] for r in table}
    assert {"deletion_auc", "insertion_auc", "pointing_game", "box_localization"} <= metrics
    for method in METHODS:
        assert {r["metric"] for r in table if r["method"] == method} == metrics, method
    assert all(math.isfinite(float(r["value"])) for r in table if r["value"])


@pytest.mark.slow
def test_simulated_participants_are_marked_and_recovered(demo):
    people = rows(demo / "export" / "participants.csv")
    assert len(people) == SIMULATED_PARTICIPANTS
    assert all(p["external_id"].startswith("SIM-") and p["completion_code"] for p in people)
    answers = [r for r in rows(demo / "export" / "responses.csv")
               if r["correct"] and r["is_practice"] == "false" and r["is_attention_check"] == "false"]
    accuracy = [r for r in rows(demo / "export" / "summary.csv") if r["measure"] == "accuracy"]
    assert {r["task"] for r in accuracy} >= {"class_discrimination", "agreement"}
    for r in accuracy:
        mine = [a["correct"] == "true" for a in answers if (a["task"], a["method"]) == (r["task"], r["method"])]
        assert int(r["n"]) == len(mine) and float(r["estimate"]) == pytest.approx(sum(mine) / len(mine), abs=1e-6)
        assert float(r["ci_low"]) <= float(r["estimate"]) <= float(r["ci_high"])
        # The known accuracy lies in its interval; Bonferroni over the rows, so that one of a
        # dozen 95% intervals missing by chance (as 95% intervals do) does not fail the test.
        low, high = proportion_confint(sum(mine), len(mine), alpha=0.05 / len(accuracy), method="wilson")
        assert low <= SIMULATED_ACCURACY[r["method"]] <= high, r


@pytest.mark.slow
def test_report_has_the_figures(demo):
    page = (demo / "report" / "index.html").read_text()
    assert page.count("data:image/png;base64,") >= 5
    assert "SIM-" in page or "simulated" in page.lower()
