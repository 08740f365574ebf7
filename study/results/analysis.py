"""Statistics for study results: pure functions over numpy arrays and pandas frames, no database.

Two layers. The primitives (`wilson_interval`, `bootstrap_mean`, `mcnemar_test`,
`wilcoxon_test`, `friedman_test`, `krippendorff_alpha`, `spearman`, `vote_scores`) each do one
textbook computation. The table builders (`flag_exclusions`, `summarize`, `method_tests`,
`correlate`) turn the tidy `responses` / `faithfulness` frames of the export into the
`summary`, `tests` and `correlations` tables of DESIGN.md; `mixed_rows` adds the mixed-effects
models of study.results.mixed to `tests`.

Rows are never deleted: exclusion rules set the `excluded` flag, and the builders analyse the
rows that are neither excluded, practice nor attention checks (`analysable`).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd
from scipy import stats

from study.protocol.tasks import TASKS, Measure
from study.protocol.tasks.compare import SAME
from study.protocol.tasks.utility import CONTROL
from study.results import mixed, utility

SUMMARY_COLUMNS = [
    "task", "model", "method", "measure", "n", "n_participants",
    "estimate", "ci_low", "ci_high", "ci_method", "vote_score",
]
TEST_COLUMNS = [
    "task", "model", "measure", "test", "method_a", "method_b", "paired_by", "statistic", "p", "n",
    "estimate", "se", "ci_low", "ci_high",
]
MIXED_UNITS = "participant+image"   # paired_by of the mixed models: crossed random intercepts
CORRELATION_COLUMNS = [
    "level", "model", "method", "image_id", "human_measure", "metric", "rho", "p", "n",
]



def task_measures(task: str) -> tuple[Measure, ...]:
    """How a task's answers enter the analysis (its plugin's `measures`; none for unknown tasks)."""
    plugin = TASKS.get(task)
    return plugin.measures if plugin else ()


@dataclass(frozen=True)
class TestResult:
    """One hypothesis test: its statistic, two-sided p-value, number of paired units and, where
    a test has several ways to get p, which one was used (e.g. "exact" or "normal")."""

    statistic: float
    p: float
    n: int
    variant: str = ""


# ---------------------------------------------------------------------------------------------
# Primitives
# ---------------------------------------------------------------------------------------------


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (good coverage for small n and p near 0/1).

    Centre (p + z²/2n) / (1 + z²/n), half-width z/(1 + z²/n) * sqrt(p(1-p)/n + z²/4n²).
    """
    if n <= 0:
        raise ValueError(f"wilson_interval needs n > 0 trials, got n={n}")
    if not 0 <= successes <= n:
        raise ValueError(f"wilson_interval needs 0 <= successes <= n, got {successes} of {n}")
    _check_confidence(confidence)
    z = stats.norm.ppf(0.5 + confidence / 2)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def bootstrap_mean(
    values, participants, *, n_resamples: int = 2000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """Mean of `values` with a percentile bootstrap interval that resamples participants.

    Answers of one participant are correlated, so rows are not independent: each resample draws
    participants with replacement and keeps all of a drawn participant's rows. Returns
    (mean of all rows, ci_low, ci_high). Seeded, so the same input gives the same interval.
    """
    values = np.asarray(values, dtype=float)
    participants = np.asarray(participants)
    if values.shape != participants.shape or values.ndim != 1:
        raise ValueError("bootstrap_mean needs one participant id per value (two 1-D arrays of equal length)")
    if values.size == 0:
        raise ValueError("bootstrap_mean needs at least one value")
    if np.isnan(values).any():
        raise ValueError("bootstrap_mean got NaN values; drop unanswered rows first")
    _check_confidence(confidence)
    _, cluster = np.unique(participants, return_inverse=True)
    sums = np.bincount(cluster, weights=values)
    counts = np.bincount(cluster).astype(float)
    k = sums.size
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(k, np.full(k, 1.0 / k), size=n_resamples)  # times each participant is drawn
    means = (draws @ sums) / (draws @ counts)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(values.mean()), float(low), float(high)


def mcnemar_test(first, second, *, exact: bool = True) -> TestResult:
    """McNemar's test on paired binary outcomes (e.g. correct under method A and B, same unit).

    Only the discordant pairs count: b = A right & B wrong, c = A wrong & B right.
    exact=True (the default, right for the small counts of a study): statistic min(b, c) and the
    two-sided exact binomial p-value 2 * P(X <= min(b, c)), X ~ Bin(b + c, 1/2), capped at 1.
    exact=False: chi-square with continuity correction (|b - c| - 1)² / (b + c), 1 df.
    `n` is the number of pairs.
    """
    first = _as_binary(first, "first")
    second = _as_binary(second, "second")
    if first.shape != second.shape:
        raise ValueError(f"mcnemar_test needs paired outcomes, got {first.size} and {second.size}")
    b = int(np.sum(first & ~second))
    c = int(np.sum(~first & second))
    if b + c == 0:
        return TestResult(float("nan"), 1.0, int(first.size))
    if exact:
        k = min(b, c)
        p = min(1.0, 2 * stats.binom.cdf(k, b + c, 0.5))
        return TestResult(float(k), float(p), int(first.size))
    chi2 = (abs(b - c) - 1) ** 2 / (b + c)
    return TestResult(float(chi2), float(stats.chi2.sf(chi2, 1)), int(first.size))


def wilcoxon_test(x, y) -> TestResult:
    """Wilcoxon signed-rank test on paired values; zero differences are dropped (Wilcoxon's rule).

    p comes from the exact null distribution when there are at most 50 non-zero differences
    and no ties among their absolute values (variant "exact"), otherwise from the normal
    approximation with tie correction (variant "normal"): scipy's permutation fallback for tied
    small samples costs seconds per test. Returns p = 1 when every difference is zero.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"wilcoxon_test needs paired values, got {x.size} and {y.size}")
    d = x - y
    nonzero = np.abs(d[d != 0])
    if nonzero.size == 0:
        return TestResult(float("nan"), 1.0, int(x.size), "exact")
    exact = nonzero.size <= 50 and np.unique(nonzero).size == nonzero.size
    result = stats.wilcoxon(x, y, method="exact" if exact else "approx")
    return TestResult(float(result.statistic), float(result.pvalue), int(x.size), "exact" if exact else "normal")


def friedman_test(table) -> TestResult:
    """Friedman test across k >= 3 methods; `table` is units (rows) x methods (columns), complete.
    Returns p = 1 when every unit gives all methods the same value (the statistic is then 0/0)."""
    table = np.asarray(table, dtype=float)
    if table.ndim != 2 or table.shape[1] < 3:
        raise ValueError("friedman_test needs a units x methods table with at least 3 methods")
    if np.isnan(table).any():
        raise ValueError("friedman_test needs complete rows (every unit measured under every method)")
    if (table == table[:, :1]).all():
        return TestResult(float("nan"), 1.0, int(table.shape[0]))
    result = stats.friedmanchisquare(*table.T)
    return TestResult(float(result.statistic), float(result.pvalue), int(table.shape[0]))


def spearman(x, y) -> TestResult:
    """Spearman rank correlation (rho, two-sided p) of paired values; NaN pairs are skipped."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    keep = ~(np.isnan(x) | np.isnan(y))
    x, y = x[keep], y[keep]
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return TestResult(float("nan"), float("nan"), int(x.size))
    result = stats.spearmanr(x, y)
    return TestResult(float(result.statistic), float(result.pvalue), int(x.size))


def krippendorff_alpha(reliability, level: str = "nominal") -> float:
    """Krippendorff's alpha for raters (rows) x units (columns); NaN marks a missing rating.

    alpha = 1 - D_o / D_e from the coincidence matrix o_ck = sum_u (pairs c-k in unit u) / (m_u - 1)
    over units with m_u >= 2 ratings; n_c = sum_k o_ck, n = sum_c n_c;
    D_o = sum o_ck d²(c,k) / n and D_e = sum n_c n_k d²(c,k) / (n (n - 1)).
    Distances: nominal d² = [c != k]; interval d² = (c - k)²; ordinal
    d² = (sum_{g between c and k} n_g - (n_c + n_k) / 2)², over the values that occur.
    Values must be numbers (code categories as integers for nominal data).
    """
    data = np.asarray(reliability, dtype=float)
    if data.ndim != 2:
        raise ValueError("krippendorff_alpha needs a 2-D raters x units array")
    if level not in ("nominal", "ordinal", "interval"):
        raise ValueError(f"unknown level of measurement {level!r}; use nominal, ordinal or interval")
    values = np.unique(data[~np.isnan(data)])
    if values.size < 2:
        return float("nan")  # no variation: agreement is undefined
    index = {v: i for i, v in enumerate(values)}
    coincidence = np.zeros((values.size, values.size))
    for unit in data.T:
        present = unit[~np.isnan(unit)]
        if present.size < 2:
            continue
        counts = np.bincount([index[v] for v in present], minlength=values.size).astype(float)
        coincidence += (np.outer(counts, counts) - np.diag(counts)) / (present.size - 1)
    n_c = coincidence.sum(axis=1)
    n = n_c.sum()
    if n <= 1:
        return float("nan")
    delta2 = _distance(values, n_c, level)
    observed = (coincidence * delta2).sum() / n
    expected = (np.outer(n_c, n_c) * delta2).sum() / (n * (n - 1))
    if expected == 0:
        return float("nan")
    return float(1 - observed / expected)


def vote_scores(choices: pd.DataFrame) -> pd.DataFrame:
    """Normalised vote scores of the `compare` task (Ablation-CAM 6.3).

    The per-image normalisation follows the human study of Grad-CAM++ (votes of each image sum
    to one; scores are totals over images), which Ablation-CAM's comparison with Grad-CAM mirrors.

    `choices` has one row per answer with columns unit, method_a, method_b, choice, where unit
    identifies the compared pair on one image and choice is method_a, method_b or "same".
    Each unit's answers are normalised to sum to 1 so that every image weighs the same however
    many people saw it: share_u(m) = votes_u(m) / n_u and share_u(same) = same_u / n_u. A method's
    score is the mean of its shares over the U_m units that contain it,
    score(m) = sum_u share_u(m) / U_m (the papers report the sum; dividing by U_m puts it in
    [0, 1] and makes studies of different sizes comparable). With two methods,
    score(A) + score(B) + share of "same" = 1.
    Returns columns method, vote_score, n_units.
    """
    missing = {"unit", "method_a", "method_b", "choice"} - set(choices.columns)
    if missing:
        raise ValueError(f"vote_scores needs columns {sorted(missing)}")
    bad = ~((choices["choice"] == choices["method_a"]) | (choices["choice"] == choices["method_b"])
            | (choices["choice"] == SAME))
    if bad.any():
        raise ValueError(f"vote_scores: choice must be method_a, method_b or 'same'; got {choices.loc[bad, 'choice'].iloc[0]!r}")
    scores: dict[str, list[float]] = {}
    for _, unit in choices.groupby("unit", sort=True):
        n_u = len(unit)
        for method in (unit["method_a"].iloc[0], unit["method_b"].iloc[0]):
            scores.setdefault(method, []).append(float((unit["choice"] == method).sum()) / n_u)
    rows = [(m, float(np.mean(s)), len(s)) for m, s in sorted(scores.items())]
    return pd.DataFrame(rows, columns=["method", "vote_score", "n_units"])


# ---------------------------------------------------------------------------------------------
# Table builders
# ---------------------------------------------------------------------------------------------


def flag_exclusions(
    responses: pd.DataFrame, participants: pd.DataFrame, *, min_rt_ms: float | None = None,
    max_failed_attention_checks: int = 0, exclude_incomplete: bool = True, exclude_pilot: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Set the `excluded` flags (and participants' `attention_passed`) without deleting any row.

    A participant is excluded when they failed (answered wrongly) more than
    `max_failed_attention_checks` attention checks, withdrew, took part in a pilot run (unless
    `exclude_pilot=False`), or did not complete the study; all their
    responses are then excluded too. A response is also excluded when it came faster than
    `min_rt_ms` (the config's [exclusion] table). Returns new frames; the inputs are untouched.
    """
    for name, frame, needed in (
        ("responses", responses, {"participant_id", "is_attention_check", "correct", "rt_ms"}),
        ("participants", participants, {"participant_id", "completed_at"}),
    ):
        missing = needed - set(frame.columns)
        if missing:
            raise ValueError(f"flag_exclusions: {name} lacks columns {sorted(missing)}")
    responses = responses.copy()
    participants = participants.copy()
    checks = responses[responses["is_attention_check"].astype(bool) & responses["correct"].notna()]
    failures = checks[~checks["correct"].astype(bool)].groupby("participant_id").size()
    n_failed = participants["participant_id"].map(failures).fillna(0)
    participants["attention_passed"] = n_failed <= max_failed_attention_checks
    excluded = ~participants["attention_passed"]
    for flag, applies in (("withdrawn", True), ("is_pilot", exclude_pilot)):   # withdrew (answers kept), pilot run
        if applies and flag in participants:
            excluded |= participants[flag].fillna(False).astype(bool)
    if exclude_incomplete:
        excluded |= participants["completed_at"].isna()
    participants["excluded"] = excluded
    dropped_people = set(participants.loc[excluded, "participant_id"])
    row_excluded = responses["participant_id"].isin(dropped_people)
    if min_rt_ms is not None:
        row_excluded |= responses["rt_ms"].astype(float) < float(min_rt_ms)
    responses["excluded"] = row_excluded
    return responses, participants


def analysable(responses: pd.DataFrame) -> pd.DataFrame:
    """The rows that enter the statistics: answered, not excluded, not practice, not attention checks."""
    keep = ~(responses["excluded"].astype(bool) | responses["is_practice"].astype(bool)
             | responses["is_attention_check"].astype(bool))
    keep &= responses["response"].notna()
    return responses[keep]


def compare_choices(responses: pd.DataFrame) -> pd.DataFrame:
    """`compare` answers as (unit, method_a, method_b, choice), the pair sorted so that left/right
    placement does not split a unit. The response is the preferred method's name or "same"."""
    rows = responses[responses["task"] == "compare"]
    left, right = rows["method"].astype(str), rows["method_b"].astype(str)
    choice = rows["response"].astype(str)
    unknown = ~((choice == left) | (choice == right) | (choice == SAME))
    if unknown.any():
        raise ValueError(f"a compare answer must name one of the two methods or be 'same'; "
                         f"got {rows.loc[unknown, 'response'].iloc[0]!r}")
    first = left.where(left <= right, right)
    second = right.where(left <= right, left)
    unit = (rows["model"].astype(str) + "|" + rows["image_id"].astype(str) + "|"
            + rows["target_class"].astype(str) + "|" + first + "|" + second)
    return pd.DataFrame({
        "participant_id": rows["participant_id"].to_numpy(), "model": rows["model"].to_numpy(),
        "image_id": rows["image_id"].to_numpy(), "unit": unit.to_numpy(),
        "method_a": first.to_numpy(), "method_b": second.to_numpy(), "choice": choice.to_numpy(),
    })


def summarize(responses: pd.DataFrame, *, n_resamples: int = 2000, seed: int = 0) -> pd.DataFrame:
    """summary.csv: per task, model, method and measure: n, estimate and a 95% interval.

    Proportions (accuracy, how often a method was preferred in `compare`) get Wilson intervals;
    means (ratings, trust, confidence) a bootstrap over participants. `compare` rows also carry
    the normalised vote score.
    """
    data = analysable(responses)
    rows = []
    for (task, model, method), group in _groups(data, ["task", "model", "method"]):
        for column, measure, _ in task_measures(task):
            answered = group[group[column].notna()]
            if answered.empty:
                continue
            n_people = answered["participant_id"].nunique()
            if column == "correct":
                k = int(answered[column].astype(bool).sum())
                low, high = wilson_interval(k, len(answered))
                rows.append([task, model, method, measure, len(answered), n_people,
                             k / len(answered), low, high, "wilson", np.nan])
            else:
                est, low, high = bootstrap_mean(answered[column].astype(float), answered["participant_id"],
                                                n_resamples=n_resamples, seed=seed)
                rows.append([task, model, method, measure, len(answered), n_people,
                             est, low, high, "bootstrap", np.nan])
    for task, model, method, measure, flags, people in utility.learning_summary(data) + utility.reliance(data):
        k = int(flags.astype(bool).sum())
        low, high = wilson_interval(k, len(flags))
        rows.append([task, model, method, measure, len(flags), people.nunique(), k / len(flags), low, high,
                     "wilson", np.nan])
    choices = compare_choices(data)
    for model, group in _groups(choices, ["model"]):
        scores = vote_scores(group).set_index("method")
        for method in scores.index:
            involved = group[(group["method_a"] == method) | (group["method_b"] == method)]
            k = int((involved["choice"] == method).sum())
            low, high = wilson_interval(k, len(involved))
            rows.append(["compare", model, method, "preferred", len(involved),
                         involved["participant_id"].nunique(), k / len(involved), low, high,
                         "wilson", scores.loc[method, "vote_score"]])
    return _sorted(pd.DataFrame(rows, columns=SUMMARY_COLUMNS), ["task", "model", "method", "measure"])


def method_tests(responses: pd.DataFrame, method_order: Sequence[str] | None = None) -> pd.DataFrame:
    """tests.csv: which differences between methods and how much raters agree.

    - every pair of methods, per task, model and measure: Wilcoxon signed-rank on per-participant
      means (paired by participant, who saw both); for proportions also McNemar's exact test on
      participant x image pairs when the design has them (a Latin square does not);
    - `trust`, per method: Wilcoxon signed-rank of per-participant mean trust against 0;
    - Friedman across all methods (>= 3) on per-participant means, participants who saw all;
    - `compare`: an exact binomial sign test of votes for A vs B (ties set aside) per pair;
    - Krippendorff's alpha per task and measure, units = stimuli, raters = participants;
    - mixed models (`mixed_rows`): per task, model and measure, each method against the reference
      (the first of `method_order`, default sorted, that the task used); for `compare`, per pair, the
      log-odds that method_a is preferred to method_b.
    Columns estimate, se, ci_low and ci_high are filled for the mixed models only.
    """
    data = analysable(responses)
    rows = []
    for (task, model), group in _groups(data, ["task", "model"]):
        for column, measure, level in task_measures(task):
            answered = group[group[column].notna()]
            if answered.empty:
                continue
            values = answered[column].astype(float)
            per_person = values.groupby([answered["participant_id"], answered["method"]]).mean().unstack("method")
            methods = sorted(per_person.columns)
            # Binary outcomes of one participant on one image under each method (McNemar's pairs).
            per_image = (values.groupby([answered["participant_id"], answered["image_id"], answered["method"]])
                         .mean().unstack("method") if column == "correct" else None)
            for a, b in combinations(methods, 2):
                both = per_person[[a, b]].dropna()
                if len(both):
                    r = wilcoxon_test(both[a], both[b])
                    rows.append([task, model, measure, f"wilcoxon_{r.variant}", a, b, "participant", r.statistic, r.p, r.n])
                if per_image is not None:
                    both = per_image[[a, b]].dropna()
                    if len(both):
                        r = mcnemar_test(both[a] >= 0.5, both[b] >= 0.5, exact=True)
                        rows.append([task, model, measure, "mcnemar_exact", a, b, "participant_image",
                                     r.statistic, r.p, r.n])
            if task == "trust":  # Grad-CAM 5.3: is one model judged more reliable (trust != 0)?
                for method in methods:
                    means = per_person[method].dropna()
                    r = wilcoxon_test(means, np.zeros(len(means)))
                    rows.append([task, model, measure, f"wilcoxon_vs_zero_{r.variant}", method, "", "participant",
                                 r.statistic, r.p, r.n])
            if len(methods) >= 3:
                complete = per_person[methods].dropna()
                if len(complete) >= 2:
                    r = friedman_test(complete.to_numpy())
                    rows.append([task, model, measure, "friedman", "all", "", "participant", r.statistic, r.p, r.n])
            rows += mixed_rows(task, model, measure, answered, answered[column],
                               _ordered(answered["method"], method_order), logistic=column == "correct")
            alpha, n_units = _alpha_over_stimuli(answered, column, level)
            if n_units:  # nominal alpha is computed on the answers themselves, not on correctness
                rows.append([task, model, "response" if level == "nominal" else measure,
                             f"krippendorff_alpha_{level}", "all", "", "stimulus", alpha, np.nan, n_units])
    choices = compare_choices(data)
    for (model, a, b), group in _groups(choices, ["model", "method_a", "method_b"]):
        votes_a = int((group["choice"] == a).sum())
        votes_b = int((group["choice"] == b).sum())
        if votes_a + votes_b:
            p = stats.binomtest(votes_a, votes_a + votes_b, 0.5).pvalue
            rows.append(["compare", model, "preferred", "sign_test_exact", a, b, "answer",
                         float(votes_a), float(p), votes_a + votes_b])
            decided = group[group["choice"] != SAME]
            rows += mixed_rows("compare", model, "preferred", decided, decided["choice"] == a, [a, b], logistic=True)
        codes = group["choice"].map({a: 0.0, b: 1.0, SAME: 2.0})
        alpha, n_units = _alpha_from_long(group["participant_id"], group["unit"], codes, "nominal")
        if n_units:
            rows.append(["compare", model, "response", "krippendorff_alpha_nominal", a, b, "stimulus",
                         alpha, np.nan, n_units])
    rows += utility.utility_tests(data) + utility.question_tests(data)
    tests = utility.test_answers(data)
    for model, group in _groups(tests, ["model"]):   # correct ~ condition + round + (1|participant) + (1|image)
        rows += mixed_rows("utility", model, "accuracy", group, group["correct"],
                           _ordered(group["method"], [CONTROL]), logistic=True,
                           covariates={"round": group["round"].astype(float).to_numpy()})
    rows = [row + [np.nan] * (len(TEST_COLUMNS) - len(row)) for row in rows]
    return _sorted(pd.DataFrame(rows, columns=TEST_COLUMNS), ["task", "model", "measure", "test", "method_a", "method_b"])


def mixed_rows(task: str, model: str, measure: str, answered: pd.DataFrame, outcome: pd.Series,
               levels: Sequence[str], *, logistic: bool, covariates: dict[str, np.ndarray] | None = None) -> list[list]:
    """tests.csv rows of one mixed model, outcome ~ method + (1|participant) + (1|image) [+ covariates].

    A binary `outcome` (correct, preferred; logistic=True) gets the logistic model (test mixed_logit: estimate
    in log-odds, statistic the odds ratio exp(estimate)), a numeric one the linear model
    (mixed_linear: estimate in scale points, statistic the Wald z). `levels` orders the methods,
    the first being the reference: each other method is a row with method_b = levels[0]. For
    `compare`, `levels` is the pair (a, b), the model has no method term (outcome ~ 1 + ...) and
    its one row is the intercept: the log-odds that a is preferred to b. Rows <test>_sd give each
    random intercept's SD (and the linear model's residual SD) in `estimate`, the factor in
    paired_by, n its number of levels; an SD of 0 is a singular fit. Their method_a is "all"
    (compare: the pair). Fewer than two methods, answers without variation, or a model the data
    cannot identify (a singular system, as with a handful of pilot answers) give no rows. Numeric
    `covariates` (the utility task's round) enter as slopes, each a row with method_a = its name.
    """
    if len(levels) < 2 or answered.empty:
        return []
    groups = mixed.Crossed({"participant": mixed.codes_of(answered["participant_id"]),
                            "image": mixed.codes_of(answered["image_id"])})
    if task == "compare":
        X, terms = np.ones((len(answered), 1)), ("(Intercept)",)
        contrasts = [("(Intercept)", levels[0], levels[1])]
    else:
        X, terms = mixed.treatment_design(answered["method"], list(levels))
        contrasts = [(term, term, levels[0]) for term in terms[1:]]
    for name, values in (covariates or {}).items():
        X, terms = np.column_stack([X, values]), (*terms, name)
        contrasts.append((name, name, ""))
    y = outcome.astype(float).to_numpy()
    if np.ptp(y) == 0:      # every answer the same: no model can say anything about the methods
        return []
    try:
        fit = mixed.fit_logit(y, X, groups, terms) if logistic else mixed.fit_linear(y, X, groups, terms)
    except np.linalg.LinAlgError:   # too few or too regular answers for the model (a pilot, say)
        return []
    test = "mixed_logit" if logistic else "mixed_linear"
    rows = []
    for term, method_a, method_b in contrasts:
        c = fit.contrast(term)
        statistic = np.exp(c.estimate) if logistic else c.z
        rows.append([task, model, measure, test, method_a, method_b, MIXED_UNITS, statistic, c.p, fit.n,
                     c.estimate, c.se, c.ci_low, c.ci_high])
    sizes = dict(zip(groups.names, groups.sizes), residual=fit.n)
    across = (levels[0], levels[1]) if task == "compare" else ("all", "")
    for factor, sd in fit.sd.items():
        rows.append([task, model, measure, f"{test}_sd", *across, factor, np.nan, np.nan,
                     sizes[factor], sd, np.nan, np.nan, np.nan])
    return rows


def correlate(responses: pd.DataFrame, faithfulness: pd.DataFrame) -> pd.DataFrame:
    """correlations.csv: Spearman rho between human measures and faithfulness metrics.

    Human measures are averaged per (model, method, image) first. level "method": for one
    method, across images; level "image": for one image, across methods; level "utility": a method's
    utility (study.results.utility) against its mean metric, across methods (does faithfulness predict
    what people learn?). Needs >= 3 points.
    """
    data = analysable(responses)
    human = human_per_image(data)
    if faithfulness.empty:
        return pd.DataFrame(columns=CORRELATION_COLUMNS)
    faith = (faithfulness.assign(value=faithfulness["value"].astype(float))
             .groupby(["model", "method", "image_id", "metric"], as_index=False)["value"].mean())
    rows = []
    learned = utility.gains(data).merge(faith.groupby(["model", "method", "metric"], as_index=False)["value"].mean(),
                                        on=["model", "method"])
    for (model, metric), group in _groups(learned, ["model", "metric"]):
        r = spearman(group["utility"], group["value"])
        if r.n >= 3:
            rows.append(["utility", model, "", "", "utility", metric, r.statistic, r.p, r.n])
    joined = human.merge(faith, on=["model", "method", "image_id"])
    for level, key in (("method", "method"), ("image", "image_id")):
        for (model, k, measure, metric), group in _groups(joined, ["model", key, "human_measure", "metric"]):
            r = spearman(group["human"], group["value"])
            if r.n < 3:
                continue
            method, image = (k, "") if level == "method" else ("", k)
            rows.append([level, model, method, image, measure, metric, r.statistic, r.p, r.n])
    return _sorted(pd.DataFrame(rows, columns=CORRELATION_COLUMNS),
                   ["level", "model", "method", "image_id", "human_measure", "metric"])


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def _check_confidence(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")


def _as_binary(values, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.dtype != bool and not np.isin(array, [0, 1]).all():
        raise ValueError(f"mcnemar_test: {name} must hold binary outcomes (True/False or 0/1)")
    return array.astype(bool)


def _distance(values: np.ndarray, n_c: np.ndarray, level: str) -> np.ndarray:
    """Squared distance d²(c, k) between every pair of occurring values."""
    if level == "nominal":
        return 1.0 - np.eye(values.size)
    if level == "interval":
        return np.subtract.outer(values, values) ** 2
    cumulative = np.concatenate([[0.0], np.cumsum(n_c)])
    lo = np.minimum.outer(np.arange(values.size), np.arange(values.size))
    hi = np.maximum.outer(np.arange(values.size), np.arange(values.size))
    between = cumulative[hi + 1] - cumulative[lo]  # sum of n_g for g from c to k inclusive
    return (between - (n_c[lo] + n_c[hi]) / 2) ** 2


def _alpha_from_long(raters: pd.Series, units: pd.Series, values: pd.Series, level: str) -> tuple[float, int]:
    """Krippendorff's alpha of long-format ratings; a rater's repeats of one unit are averaged."""
    table = pd.DataFrame({"rater": raters.to_numpy(), "unit": units.to_numpy(), "value": values.to_numpy(dtype=float)})
    wide = table.pivot_table(index="rater", columns="unit", values="value", aggfunc="mean")
    pairable = int((wide.notna().sum(axis=0) >= 2).sum())
    if pairable == 0:
        return float("nan"), 0
    return krippendorff_alpha(wide.to_numpy(), level), pairable


def _alpha_over_stimuli(answered: pd.DataFrame, column: str, level: str) -> tuple[float, int]:
    """Alpha with stimuli as units and participants as raters. Nominal data are the answers
    (class chosen, yes/no) coded as integers; other levels use the numeric `column`."""
    unit = (answered["image_id"].astype(str) + "|" + answered["method"].astype(str) + "|"
            + answered["method_b"].fillna("").astype(str) + "|" + answered["target_class"].astype(str))
    if level == "nominal":
        values = pd.Series(pd.factorize(answered["response"].astype(str), sort=True)[0], dtype=float)
    else:
        values = answered[column].astype(float)
    return _alpha_from_long(answered["participant_id"], unit, values, level)


def human_per_image(data: pd.DataFrame) -> pd.DataFrame:
    """Mean human measure per (model, method, image), long format with column `human`."""
    parts = []
    for task, plugin in TASKS.items():
        rows = data[data["task"] == task]
        for column, measure, _ in plugin.measures:
            answered = rows[rows[column].notna()]
            if answered.empty:
                continue
            mean = (answered.assign(human=answered[column].astype(float))
                    .groupby(["model", "method", "image_id"], as_index=False)["human"].mean())
            parts.append(mean.assign(human_measure=task if task == measure else f"{task}_{measure}"))
    choices = compare_choices(data)
    for method in sorted(set(choices["method_a"]) | set(choices["method_b"])):
        involved = choices[(choices["method_a"] == method) | (choices["method_b"] == method)]
        mean = (involved.assign(human=(involved["choice"] == method).astype(float), method=method)
                .groupby(["model", "method", "image_id"], as_index=False)["human"].mean())
        parts.append(mean.assign(human_measure="compare_preferred"))
    if not parts:
        return pd.DataFrame(columns=["model", "method", "image_id", "human", "human_measure"])
    return pd.concat(parts, ignore_index=True)


def _groups(frame: pd.DataFrame, keys: list[str]):
    """groupby in sorted key order that tolerates missing keys (NaN model) and empty frames."""
    if frame.empty:
        return []
    filled = frame.assign(**{k: frame[k].fillna("").astype(str) for k in keys})
    grouped = filled.groupby(keys if len(keys) > 1 else keys[0], sort=True)
    return list(grouped)


def _ordered(present: pd.Series, order: Sequence[str] | None) -> list[str]:
    """The methods in `present`, those in `order` first (in that order), then the rest sorted."""
    found = set(present.astype(str))
    first = [m for m in (order or ()) if m in found]
    return first + sorted(found - set(first))


def _sorted(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    return frame.sort_values(keys, kind="stable").reset_index(drop=True)
