"""Statistics of the utility task (Colin, Fel et al., NeurIPS 2022) and of reliance on the model.

Utility: participants predict the model's decision on test images after learning with (or without, the
control `none`) a method's explanations. With acc = the share of a condition's analysable test answers
that equal the model's decision (right or wrong),

    utility(m) = (acc_m - acc_none) / acc_none,

with a 95% percentile bootstrap interval that resamples participants with replacement within each of the two
conditions (a participant's answers are correlated; the two groups are independent), seeded. The same split by
whether the model was right (`model_correct`) shows where explanations should matter most: its mistakes.
The mixed logit `correct ~ condition + round + (1|participant) + (1|image)` (reference level `none`,
round numeric) is the model-based test; study.results.analysis.mixed_rows fits it.

Reliance (OpenHEXAI, Ma et al. 2024), per method: over-reliance is trusting the model where it is wrong,
under-reliance distrusting it where it is right.
- agreement ("is the prediction correct?"): over = P(yes | model wrong), under = P(no | model right).
- utility test trials: over = P(the answer is the image's true class | model wrong): the participant expected
  the model to be right where it erred (with more than two classes, an answer that is neither the decision
  nor the true class is no reliance either way); under = P(the answer misses the decision, here the true
  class | model right): they expected an error where it was right.

End-of-task questions: the share of right answers per condition (Wilson), and across conditions Fisher's
exact test (two conditions, a 2x2 table) or Pearson's chi-square test (more).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from study.protocol.tasks.utility import CONTROL, QUESTION_PREFIX

SPLITS = (("accuracy", None), ("accuracy_model_wrong", False), ("accuracy_model_right", True))


def utility_interval(correct_m, people_m, correct_none, people_none, *, n_resamples: int = 2000,
                     confidence: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """(utility, ci_low, ci_high) of method m against the control from the test answers' correctness and
    whose they are, in each condition. Undefined (NaN) where the control got nothing right."""
    sums, counts, draws = [], [], []
    rng = np.random.default_rng(seed)
    for correct, people in ((correct_m, people_m), (correct_none, people_none)):
        correct, people = np.asarray(correct, dtype=float), np.asarray(people)
        if correct.size == 0 or correct.shape != people.shape:
            raise ValueError("utility_interval needs answers in both conditions, one participant id per answer")
        _, cluster = np.unique(people, return_inverse=True)
        sums.append(np.bincount(cluster, weights=correct))
        counts.append(np.bincount(cluster).astype(float))
        k = sums[-1].size
        draws.append(rng.multinomial(k, np.full(k, 1.0 / k), size=n_resamples))   # times each is drawn
    acc = [s.sum() / c.sum() for s, c in zip(sums, counts)]
    if acc[1] == 0:
        return float("nan"), float("nan"), float("nan")
    boot = [(d @ s) / (d @ c) for d, s, c in zip(draws, sums, counts)]
    with np.errstate(divide="ignore", invalid="ignore"):
        gains = (boot[0] - boot[1]) / boot[1]
    tail = (1 - confidence) / 2
    low, high = np.nanquantile(np.where(np.isfinite(gains), gains, np.nan), [tail, 1 - tail])
    return float((acc[0] - acc[1]) / acc[1]), float(low), float(high)


def test_answers(data: pd.DataFrame) -> pd.DataFrame:
    """The analysable answers of utility test trials (data: study.results.analysis.analysable rows)."""
    return _phase(data, "test")


def question_answers(data: pd.DataFrame) -> pd.DataFrame:
    """The analysable answers to utility end questions, with their key in `question` (their image_id is
    `question:<key>`: a question shows no image)."""
    rows = _phase(data, "question")
    return rows.assign(question=rows["image_id"].astype(str).str.removeprefix(QUESTION_PREFIX))


def utility_tests(data: pd.DataFrame, *, n_resamples: int = 2000, seed: int = 0) -> list[list]:
    """tests.csv rows `test = utility` (task, model, measure, test, method_a, method_b, paired_by, statistic,
    p, n, estimate, se, ci_low, ci_high): per model and explanation method, against `none`, for all test
    answers and split by whether the model was right. n counts the participants of both conditions."""
    rows = []
    tests = test_answers(data)
    for model, group in tests.groupby(tests["model"].fillna("").astype(str), sort=True):
        control = group[group["method"] == CONTROL]
        for method in sorted(set(group["method"]) - {CONTROL}):
            mine = group[group["method"] == method]
            for measure, model_right in SPLITS:
                a, b = (mine, control) if model_right is None else (
                    mine[mine["model_correct"] == model_right], control[control["model_correct"] == model_right])
                if a.empty or b.empty:
                    continue
                est, low, high = utility_interval(a["correct"].astype(bool), a["participant_id"],
                                                  b["correct"].astype(bool), b["participant_id"],
                                                  n_resamples=n_resamples, seed=seed)
                rows.append(["utility", model, measure, "utility", method, CONTROL, "", np.nan, np.nan,
                             a["participant_id"].nunique() + b["participant_id"].nunique(), est, np.nan, low, high])
    return rows


def gains(data: pd.DataFrame) -> pd.DataFrame:
    """Point estimates of utility per model and explanation method: columns model, method, utility."""
    tests = test_answers(data)
    acc = tests.groupby([tests["model"].fillna("").astype(str), "method"])["correct"].mean()
    rows = [(model, method, (value - acc[model, CONTROL]) / acc[model, CONTROL])
            for (model, method), value in acc.items() if method != CONTROL and acc.get((model, CONTROL), 0) > 0]
    return pd.DataFrame(rows, columns=["model", "method", "utility"])


def learning_summary(data: pd.DataFrame) -> list[tuple[str, str, str, str, pd.Series, pd.Series]]:
    """The proportions summary.csv reports for the utility task, per model and condition: test accuracy,
    per round (`accuracy_round_<r>`, the learning curve) and split by the model's correctness; and each
    end question's share of right answers (`question_<key>`). As (task, model, method, measure, correct
    flags, participant ids)."""
    out = []
    tests = test_answers(data)
    for (model, method), group in tests.groupby([tests["model"].fillna("").astype(str), "method"], sort=True):
        for measure, model_right in SPLITS:
            part = group if model_right is None else group[group["model_correct"] == model_right]
            out.append(("utility", model, method, measure, part["correct"], part["participant_id"]))
        for rnd, part in group.groupby(group["round"].astype(int), sort=True):
            out.append(("utility", model, method, f"accuracy_round_{rnd}", part["correct"], part["participant_id"]))
    questions = question_answers(data)
    for (model, method, key), part in questions.groupby(
            [questions["model"].fillna("").astype(str), "method", "question"], sort=True):
        out.append(("utility", model, method, f"question_{key}", part["correct"], part["participant_id"]))
    return [row for row in out if len(row[4])]


def reliance(data: pd.DataFrame) -> list[tuple[str, str, str, str, pd.Series, pd.Series]]:
    """Over- and under-reliance per task, model and method (see the module docstring), as
    (task, model, method, measure, flags, participant ids) for Wilson intervals."""
    out = []
    agreement = data[(data["task"] == "agreement") & data["correct"].notna()]
    said_yes = agreement["response"] == "yes"
    model_right = said_yes == agreement["correct"].astype(bool)
    cases = [("agreement", agreement.assign(model_right=model_right, relied=said_yes))]
    tests = test_answers(data)
    if len(tests):
        model_right = tests["model_correct"].astype(bool)
        # relied: the answer the participant would give if they took the model to be right (its true class)
        said_truth = tests["response"].astype(str) == tests["image_class"].astype("Int64").astype(str)
        cases.append(("utility", tests.assign(model_right=model_right, relied=said_truth)))
    for task, frame in cases:
        for (model, method), group in frame.groupby([frame["model"].fillna("").astype(str), "method"], sort=True):
            for measure, right in (("over_reliance", False), ("under_reliance", True)):
                part = group[group["model_right"] == right]
                flags = part["relied"] if not right else ~part["relied"]
                if len(part):
                    out.append((task, model, method, measure, flags, part["participant_id"]))
    return out


def question_tests(data: pd.DataFrame) -> list[list]:
    """tests.csv rows comparing the share of right answers to each end question across conditions:
    fisher_exact for two conditions, chi_square for more (method_a "all", n the answers)."""
    rows = []
    questions = question_answers(data)
    for (model, key), group in questions.groupby([questions["model"].fillna("").astype(str), "question"], sort=True):
        table = pd.crosstab(group["method"], group["correct"].astype(bool)).reindex(columns=[False, True], fill_value=0)
        if len(table) < 2 or (table.sum(axis=0) == 0).any():
            continue
        if len(table) == 2:
            statistic, p = stats.fisher_exact(table.to_numpy())
            test = "fisher_exact"
        else:
            statistic, p, _, _ = stats.chi2_contingency(table.to_numpy(), correction=False)
            test = "chi_square"
        rows.append(["utility", model, f"question_{key}", test, "all", "", "answer", float(statistic), float(p),
                     int(table.to_numpy().sum())])
    return rows


def _phase(data: pd.DataFrame, phase: str) -> pd.DataFrame:
    """The scored utility answers of one phase (none in a study without a utility task)."""
    utility = data[data["task"] == "utility"]
    if utility.empty:
        return utility
    return utility[(utility["phase"] == phase) & utility["correct"].notna()]
