"""`camstudy demo` end to end on the embedded default: every output exists, parses and says something."""
import contextlib
import csv
import io
import math
import statistics
from pathlib import Path
from types import SimpleNamespace

import pytest
from statsmodels.stats.proportion import proportion_confint

from study.cli import main
from study.commands import serve
from study.demo import SIMULATED_ACCURACY, SIMULATED_PARTICIPANTS
from study.explainers import general_methods

METHODS = general_methods()  # what the demo scores: every method that explains any classifier


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo run once, with --serve (the server itself is replaced by a recorder)."""
    out = tmp_path_factory.mktemp("demo") / "study"
    served, printed = [], io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(printed):
        mp.setattr(serve, "run", served.append)
        assert main(["demo", "--out", str(out), "--serve", "--port", "8765"]) == 0
    return SimpleNamespace(out=out, served=served, printed=printed.getvalue())


@pytest.mark.slow
def test_demo_states_its_settings_and_ends_with_the_serve_command(demo):
    assert "coarser than the papers' defaults" in demo.printed
    assert f"camstudy serve {demo.out.resolve()} --port 8765" in demo.printed
    [args] = demo.served
    assert (Path(args.study_dir), args.port) == (demo.out.resolve(), 8765)


@pytest.mark.slow
def test_demo_writes_every_output(demo):
    for name in ("responses", "participants", "faithfulness", "summary", "tests", "correlations", "codebook"):
        assert rows(demo.out / "export" / f"{name}.csv"), f"{name}.csv is empty"
    assert (demo.out / "study.toml").is_file() and (demo.out / "study.db").is_file()
    assert any((demo.out / "stimuli").rglob("*.png"))
    assert (demo.out / "scores" / "curves.png").is_file()


@pytest.mark.slow
def test_faithfulness_has_every_method_and_metric(demo):
    everything = rows(demo.out / "export" / "faithfulness.csv")
    table = [r for r in everything if r["model"] == "efficientnet_lite0"]
    metrics = {r["metric"] for r in table}
    assert {"deletion_auc", "insertion_auc", "pointing_game", "box_localization"} <= metrics
    for method in METHODS:
        assert {r["metric"] for r in table if r["method"] == method} == metrics, method
    assert all(math.isfinite(float(r["value"])) for r in table if r["value"])
    # Says something: on the real photos every method beats the random baseline on both causal metrics.
    mean = {(m, metric): statistics.mean(float(r["value"]) for r in table if (r["method"], r["metric"]) == (m, metric))
            for m in METHODS for metric in ("deletion_auc", "insertion_auc")}
    for method in set(METHODS) - {"random"}:
        assert mean[method, "deletion_auc"] < mean["random", "deletion_auc"], method
        assert mean[method, "insertion_auc"] > mean["random", "insertion_auc"], method
    # The ABN trained on the shortcut set is scored with its own attention map next to Grad-CAM of it, and both
    # find the cause it relies on, the mark, far better than a random map does.
    abn = [r for r in everything if r["model"] == "abn"]
    assert {r["method"] for r in abn} == {"abn", "gradcam", "random"}
    assert {r["metric"] for r in abn} >= {"deletion_auc", "insertion_auc", "relevance_mass_accuracy"}
    assert {r["image_id"] for r in abn} <= {f"shortcut-test/{i:04d}" for i in range(160)}
    mass = {m: statistics.mean(float(r["value"]) for r in abn if (r["method"], r["metric"]) == (m, "relevance_mass_accuracy"))
            for m in ("abn", "gradcam", "random")}
    assert mass["gradcam"] > 3 * mass["random"] and mass["abn"] > 2 * mass["random"], mass


@pytest.mark.slow
def test_the_abn_and_the_examples_task_are_in_the_study_and_the_report(demo):
    answers = [r for r in rows(demo.out / "export" / "responses.csv")
               if r["is_practice"] == "false" and r["is_attention_check"] == "false"]
    examples = [r for r in answers if r["task"] == "examples"]
    assert len(examples) == 4 * SIMULATED_PARTICIPANTS
    assert {r["model"] for r in examples} == {"abn"} and {r["method"] for r in examples} == {"influence", "similarity"}
    assert all(r["confidence"] and r["correct"] in ("true", "false") for r in examples)
    rated = {r["method"] for r in answers if r["task"] == "rating" and r["model"] == "abn"}
    assert rated == {"abn", "gradcam"}
    summary = rows(demo.out / "export" / "summary.csv")
    assert {(r["method"], r["measure"]) for r in summary if r["task"] == "examples"} == {
        (m, measure) for m in ("influence", "similarity") for measure in ("accuracy", "confidence")}
    page = (demo.out / "report" / "index.html").read_text()
    for heading in ("<h3>abn (abn)</h3>", "<h3>gradcam (abn)</h3>", "<h3>influence (abn)</h3>", "<h3>similarity (abn)</h3>"):
        assert heading in page


@pytest.mark.slow
def test_simulated_participants_are_marked_and_recovered(demo):
    people = rows(demo.out / "export" / "participants.csv")
    assert len(people) == SIMULATED_PARTICIPANTS
    assert all(p["external_id"].startswith("SIM-") and p["completion_code"] for p in people)
    answers = [r for r in rows(demo.out / "export" / "responses.csv")
               if r["correct"] and r["is_practice"] == "false" and r["is_attention_check"] == "false"]
    accuracy = [r for r in rows(demo.out / "export" / "summary.csv") if r["measure"] == "accuracy"
                and r["task"] != "utility"]   # utility: test answers only, and people learn (below)
    assert {r["task"] for r in accuracy} >= {"class_discrimination", "agreement"}
    for r in accuracy:
        mine = [a["correct"] == "true" for a in answers if (a["task"], a["method"]) == (r["task"], r["method"])]
        assert int(r["n"]) == len(mine) and float(r["estimate"]) == pytest.approx(sum(mine) / len(mine), abs=1e-6)
        assert float(r["ci_low"]) <= float(r["estimate"]) <= float(r["ci_high"])
        # The known accuracy lies in its interval, Bonferroni-corrected over the rows: one of
        # several 95% intervals missing by chance (as 95% intervals do) does not fail the test.
        low, high = proportion_confint(sum(mine), len(mine), alpha=0.05 / len(accuracy), method="wilson")
        assert low <= SIMULATED_ACCURACY[r["method"]] <= high, r


@pytest.mark.slow
def test_report_has_the_figures(demo):
    page = (demo.out / "report" / "index.html").read_text()
    assert page.count("data:image/png;base64,") >= 5
    assert "SIM-" in page or "simulated" in page.lower()


@pytest.mark.slow
def test_the_utility_task_runs_on_the_shortcut_model(demo):
    """Between subjects with the control, every round, the end question; the analysis reports each method's utility
    against `none` (simulated: the conditions' known accuracies), the mixed logit with its round slope and the
    learning curves; the report draws them."""
    answers = [r for r in rows(demo.out / "export" / "responses.csv") if r["task"] == "utility"]
    people = {r["participant_id"]: r["condition"] for r in answers}
    assert set(people.values()) == {"gradcam", "abn", "random", "none"} and len(people) == SIMULATED_PARTICIPANTS
    assert {(r["phase"], r["round"]) for r in answers} == {(p, str(k)) for p in ("learn", "test") for k in (1, 2, 3)} | {
        ("question", "")}
    assert all(r["response"] == "" for r in answers if r["phase"] == "learn")
    tests = rows(demo.out / "export" / "tests.csv")
    gains = {(r["method_a"], r["measure"]) for r in tests if r["test"] == "utility"}
    assert {("gradcam", "accuracy"), ("abn", "accuracy"), ("random", "accuracy")} <= gains
    assert {r["method_a"] for r in tests if r["task"] == "utility" and r["test"] == "mixed_logit"} == {
        "gradcam", "abn", "random", "round"}
    summary = rows(demo.out / "export" / "summary.csv")
    assert {r["measure"] for r in summary if r["task"] == "utility"} >= {
        "accuracy_round_1", "accuracy_round_3", "question_relies_on", "over_reliance", "under_reliance"}
    assert "Do explanations help people predict the model?" in (demo.out / "report" / "index.html").read_text()
