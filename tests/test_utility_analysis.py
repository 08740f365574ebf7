"""The utility task's statistics on constructed answers whose right results are known by hand."""
from __future__ import annotations

import subprocess

import numpy as np
import pandas as pd
import pytest
from test_mixed import needs_lme4
from test_utility_task import build

from study.cli import main
from study.results import analysis
from study.results.utility import reliance, utility_interval, utility_tests


def answers(condition: str, people: dict[str, list[int]], *, start: int = 0, model_correct=None, round_of=None):
    """Test-phase rows of the utility task: per participant, their 0/1 answers in order."""
    rows = []
    for person, flags in people.items():
        for k, flag in enumerate(flags):
            rows.append({"task": "utility", "model": "m", "method": condition, "condition": condition,
                         "participant_id": person, "image_id": f"img{start + k}", "phase": "test",
                         "round": (round_of or (lambda k: 1))(k), "correct": bool(flag), "response": str(flag),
                         "model_correct": (model_correct or (lambda k: True))(k), "target_class": 0,
                         "excluded": False, "is_practice": False, "is_attention_check": False, "method_b": None})
    return rows


def test_the_estimate_is_the_relative_gain_and_equal_people_give_a_point_interval():
    est, low, high = utility_interval([1] * 8 + [0] * 2 + [1] * 8 + [0] * 2, ["a"] * 10 + ["b"] * 10,
                                      [1] * 5 + [0] * 5 + [1] * 5 + [0] * 5, ["c"] * 10 + ["d"] * 10)
    assert est == pytest.approx((0.8 - 0.5) / 0.5) and low == pytest.approx(0.6) and high == pytest.approx(0.6)


def test_the_interval_resamples_participants_within_each_condition():
    """Control: two people at 0.4 and 0.6 (5 answers each); the method: one person at 0.9. Resampling
    the control's two people gives 0.4, 0.5 or 0.6 with chances 1/4, 1/2, 1/4, so the utility 0.9/acc - 1
    is 1.25, 0.8 or 0.5 and the 95% interval is [0.5, 1.25] (each end holds a quarter of the draws)."""
    est, low, high = utility_interval([1] * 9 + [0], ["m"] * 10,
                                      [1, 1, 0, 0, 0, 1, 1, 1, 0, 0], ["a"] * 5 + ["b"] * 5, seed=3)
    assert est == pytest.approx(0.8) and low == pytest.approx(0.5) and high == pytest.approx(1.25)


def test_utility_rows_in_tests_csv_split_by_the_models_correctness():
    wrong_half = lambda k: k >= 5      # noqa: E731  the model is wrong on the first five images of each person
    rows = answers("none", {"p1": [0, 0, 1, 1, 1, 1, 1, 1, 1, 1], "p2": [0, 0, 0, 1, 1, 1, 1, 1, 1, 1]},
                   model_correct=wrong_half)
    rows += answers("gradcam", {"p3": [1, 1, 1, 1, 0, 1, 1, 1, 1, 1], "p4": [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]},
                    model_correct=wrong_half)
    out = pd.DataFrame(utility_tests(pd.DataFrame(rows)), columns=analysis.TEST_COLUMNS)
    by = out.set_index("measure")
    assert by.loc["accuracy", "estimate"] == pytest.approx((19 / 20 - 15 / 20) / (15 / 20))
    assert by.loc["accuracy_model_wrong", "estimate"] == pytest.approx((9 / 10 - 5 / 10) / (5 / 10))
    assert by.loc["accuracy_model_right", "estimate"] == pytest.approx(0.0)
    assert (out["method_a"] == "gradcam").all() and (out["method_b"] == "none").all() and (out["n"] == 4).all()


def test_reliance_counts_trust_where_the_model_errs_and_distrust_where_it_is_right():
    # utility, three classes, the model's decision always 0: wrong on images of class 1, right on class 0
    base = {"task": "utility", "model": "m", "method": "none", "condition": "none", "participant_id": "p1",
            "phase": "test", "round": 1, "target_class": 0, "excluded": False, "is_practice": False,
            "is_attention_check": False, "method_b": None}
    utility = pd.DataFrame([{**base, "image_id": f"img{k}", "response": answer, "correct": answer == "0",
                             "model_correct": truth == 0, "image_class": truth}
                            for k, (answer, truth) in enumerate([("1", 1), ("1", 1), ("2", 1), ("0", 1),
                                                                 ("0", 0), ("0", 0), ("0", 0), ("2", 0)])])
    agreement = pd.DataFrame([
        {"task": "agreement", "model": "m", "method": "gradcam", "participant_id": "q", "response": r, "correct": c}
        for r, c in (("yes", True), ("yes", True), ("no", False), ("yes", False), ("no", True), ("no", True))])
    # agreement: model right where (yes, correct) or (no, wrong): rows 1, 2, 3 -> said no once (under 1/3);
    # model wrong: rows 4, 5, 6 -> said yes once (over 1/3)
    found = {(task, measure): flags.mean() for task, _, _, measure, flags, _ in
             reliance(pd.concat([utility, agreement], ignore_index=True))}
    assert found[("agreement", "over_reliance")] == pytest.approx(1 / 3)
    assert found[("agreement", "under_reliance")] == pytest.approx(1 / 3)
    assert found[("utility", "over_reliance")] == pytest.approx(2 / 4)     # expected the true class where it erred
    assert found[("utility", "under_reliance")] == pytest.approx(1 / 4)    # expected an error where it was right


def test_the_mixed_logit_has_condition_contrasts_against_none_and_a_round_slope():
    rng = np.random.default_rng(0)
    rows = []
    for c, condition in enumerate(("none", "gradcam")):
        for p in range(12):
            flags = (rng.random(12) < np.where(np.arange(12) < 6, 0.5 + 0.2 * c, 0.7 + 0.2 * c)).astype(int)
            rows += answers(condition, {f"{condition}{p}": list(flags)}, round_of=lambda k: 1 + k // 6)
    tests = analysis.method_tests(pd.DataFrame(rows))
    mixed = tests[(tests["task"] == "utility") & (tests["test"] == "mixed_logit")].set_index("method_a")
    assert mixed.loc["gradcam", "method_b"] == "none" and mixed.loc["gradcam", "estimate"] > 0
    assert mixed.loc["round", "estimate"] > 0 and mixed.loc["round", "n"] == 288


@needs_lme4
def test_simulated_utility_study_the_cli_exports_and_lme4_agrees(tmp_path):
    """`camstudy simulate` with per-condition accuracies and a gain per round, then the export: the utility
    rows are there, and analysis.R refits the mixed logit with lme4's glmer to the same estimates."""
    study = build(tmp_path)
    assert main(["simulate", str(study), "--participants", "36", "--seed", "2", "--accuracy",
                 "none=0.55,gradcam=0.8,cam=0.65", "--gain-per-round", "0.4"]) == 0
    export = tmp_path / "export"
    assert main(["export", str(study), "--out", str(export)]) == 0
    tests = pd.read_csv(export / "tests.csv")
    gains = tests[tests["test"] == "utility"].set_index(["method_a", "measure"])
    assert gains.loc[("gradcam", "accuracy"), "estimate"] > gains.loc[("cam", "accuracy"), "estimate"] > 0
    subprocess.run(["Rscript", "analysis.R"], cwd=export, check=True, capture_output=True)
    theirs = pd.read_csv(export / "tests_lme4.csv")
    ours = tests[(tests["task"] == "utility") & (tests["test"] == "mixed_logit")]
    joined = ours.merge(theirs, on=["task", "model", "measure", "test", "method_a", "method_b"], suffixes=("", "_r"))
    assert sorted(joined["method_a"]) == ["cam", "gradcam", "round"] and (joined["n"] == joined["n_r"]).all()
    assert ((joined["estimate"] - joined["estimate_r"]).abs() <= 0.02).all(), joined[["method_a", "estimate", "estimate_r"]]


def test_power_of_a_utility_task_counts_participants_per_condition(tmp_path, capsys):
    from _study_fixtures import write_config
    from test_utility_task import TASK

    config = write_config(tmp_path / "config", TASK.format(extra=""), practice=0, attention=0)
    out = tmp_path / "power"
    assert main(["power", str(config), "--utility", "0.5", "--control-accuracy", "0.5", "--participants", "4,30",
                 "--simulations", "60", "--out", str(out)]) == 0
    power = pd.read_csv(out / "power.csv")
    assert list(power["participants"]) == [4, 30] and power["power"].iloc[1] > power["power"].iloc[0]
    assert power["power"].iloc[1] > 0.8        # 0.5 -> 0.75 over 12 test answers each: easy to see with 30 a side
    assert "participants per condition" in capsys.readouterr().out
    assert main(["power", str(config), "--utility", "1.5", "--participants", "4", "--out", str(out)]) == 2


def test_the_report_shows_learning_curves_and_utility(tmp_path):
    study = build(tmp_path)
    assert main(["simulate", str(study), "--participants", "12", "--accuracy", "none=0.5,gradcam=0.8,cam=0.7"]) == 0
    assert main(["report", str(study), "--out", str(tmp_path / "report")]) == 0
    page = (tmp_path / "report" / "index.html").read_text()
    section = page[page.index("<h2>Do explanations help people predict the model?</h2>"):]
    assert "Learning curves per condition and utility per method" in section and "base64," in section


def test_the_report_keeps_two_models_learning_curves_apart(monkeypatch):
    from study.results import report
    drawn = []
    monkeypatch.setattr(report, "_figure_html", lambda figure, alt: drawn.append(figure) or "")
    summary = pd.DataFrame([{"task": "utility", "model": model, "method": method, "measure": f"accuracy_round_{r}",
                             "estimate": 0.6, "ci_low": 0.5, "ci_high": 0.7}
                            for model in ("abn", "cnn") for method in ("none", "gradcam") for r in (1, 2)])
    tests = pd.DataFrame([{"test": "utility", "model": model, "method_a": "gradcam", "measure": "accuracy",
                           "estimate": 0.2, "ci_low": 0.1, "ci_high": 0.3} for model in ("abn", "cnn")])
    report._utility_section(summary, tests)
    curves, gains = drawn[0].axes
    assert [t.get_text() for t in curves.get_legend().get_texts()] == [
        "gradcam (abn)", "none (abn)", "gradcam (cnn)", "none (cnn)"]
    assert [t.get_text() for t in gains.get_yticklabels()] == ["gradcam (abn) (all)", "gradcam (cnn) (all)"]
