"""study.results.analysis checked against independent oracles (statsmodels, scipy, krippendorff) on known data."""
import warnings

import krippendorff
import numpy as np
import pandas as pd
import pytest
from _export_fixtures import synthetic_faithfulness, synthetic_results
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.proportion import proportion_confint

from study.results import analysis


@pytest.mark.parametrize("k,n", [(0, 10), (1, 10), (7, 10), (10, 10), (37, 120), (3, 4)])
@pytest.mark.parametrize("confidence", [0.9, 0.95])
def test_wilson_matches_statsmodels(k, n, confidence):
    low, high = analysis.wilson_interval(k, n, confidence)
    ref_low, ref_high = proportion_confint(k, n, alpha=1 - confidence, method="wilson")
    assert low == pytest.approx(ref_low, abs=1e-12)
    assert high == pytest.approx(ref_high, abs=1e-12)


@pytest.mark.parametrize("k,n", [(1, 0), (5, 4), (-1, 3)])
def test_wilson_rejects_impossible_counts(k, n):
    with pytest.raises(ValueError, match="wilson_interval"):
        analysis.wilson_interval(k, n)


def _paired_binary(b, c, both_right, both_wrong):
    first = [1] * b + [0] * c + [1] * both_right + [0] * both_wrong
    second = [0] * b + [1] * c + [1] * both_right + [0] * both_wrong
    table = [[both_right, b], [c, both_wrong]]
    return np.array(first), np.array(second), table


@pytest.mark.parametrize("b,c", [(3, 9), (0, 5), (12, 4), (20, 31), (1, 1)])
def test_mcnemar_matches_statsmodels(b, c):
    first, second, table = _paired_binary(b, c, both_right=10, both_wrong=8)
    exact = analysis.mcnemar_test(first, second, exact=True)
    ref = mcnemar(table, exact=True)
    assert exact.statistic == pytest.approx(ref.statistic)
    assert exact.p == pytest.approx(ref.pvalue, rel=1e-12)
    chi2 = analysis.mcnemar_test(first, second, exact=False)
    ref = mcnemar(table, exact=False, correction=True)
    assert chi2.statistic == pytest.approx(ref.statistic)
    assert chi2.p == pytest.approx(ref.pvalue, rel=1e-12)
    assert exact.n == len(first)


def test_mcnemar_without_discordant_pairs_is_not_significant():
    assert analysis.mcnemar_test([1, 0, 1], [1, 0, 1]).p == 1.0


def test_mcnemar_rejects_non_binary():
    with pytest.raises(ValueError, match="binary"):
        analysis.mcnemar_test([0, 2], [1, 1])


def test_wilcoxon_friedman_spearman_match_scipy():
    rng = np.random.default_rng(1)
    x = rng.normal(size=25)
    y = x + rng.normal(0.4, 1, size=25)
    z = x + rng.normal(0.8, 1, size=25)
    w = analysis.wilcoxon_test(x, y)
    ref = stats.wilcoxon(x, y)
    assert w.variant == "exact"
    assert (w.statistic, w.p) == pytest.approx((ref.statistic, ref.pvalue))
    f = analysis.friedman_test(np.column_stack([x, y, z]))
    ref = stats.friedmanchisquare(x, y, z)
    assert (f.statistic, f.p, f.n) == pytest.approx((ref.statistic, ref.pvalue, 25))
    s = analysis.spearman(x, z)
    ref = stats.spearmanr(x, z)
    assert (s.statistic, s.p) == pytest.approx((ref.statistic, ref.pvalue))


def test_wilcoxon_with_ties_uses_the_normal_approximation():
    x = np.array([3, 4, 4, 5, 2, 3, 5, 4, 4, 3], dtype=float)
    y = np.array([2, 3, 4, 3, 2, 2, 3, 3, 4, 1], dtype=float)
    w = analysis.wilcoxon_test(x, y)
    ref = stats.wilcoxon(x, y, method="approx")
    assert w.variant == "normal"
    assert (w.statistic, w.p) == pytest.approx((ref.statistic, ref.pvalue))
    assert analysis.wilcoxon_test(x, x).p == 1.0


def test_friedman_needs_three_complete_methods():
    with pytest.raises(ValueError, match="at least 3 methods"):
        analysis.friedman_test(np.ones((4, 2)))
    with pytest.raises(ValueError, match="complete rows"):
        analysis.friedman_test([[1, 2, np.nan], [1, 2, 3]])


def test_friedman_without_any_difference_within_a_unit_has_p_one_not_a_warning():
    tied = np.array([[1.0, 1.0, 1.0], [0.5, 0.5, 0.5], [2.0, 2.0, 2.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = analysis.friedman_test(tied)
    assert np.isnan(result.statistic) and result.p == 1.0 and result.n == 3


@pytest.mark.parametrize("level", ["nominal", "ordinal", "interval"])
def test_krippendorff_alpha_matches_package(level):
    # Krippendorff's own example (4 coders x 12 units, with gaps) plus a random 5-point rating set.
    nan = np.nan
    classic = np.array([
        [1, 2, 3, 3, 2, 1, 4, 1, 2, nan, nan, nan],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, nan, 3],
        [nan, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, nan],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, nan],
    ])
    rng = np.random.default_rng(7)
    truth = rng.integers(1, 6, size=30)
    noisy = np.clip(truth + rng.integers(-1, 2, size=(6, 30)), 1, 5).astype(float)
    noisy[rng.random(noisy.shape) < 0.3] = nan
    for data in (classic, noisy):
        ours = analysis.krippendorff_alpha(data, level)
        ref = krippendorff.alpha(reliability_data=data, level_of_measurement=level)
        assert ours == pytest.approx(ref, abs=1e-10)


def test_krippendorff_alpha_perfect_agreement_is_one():
    data = np.array([[1, 2, 3, 1], [1, 2, 3, 1], [1, 2, np.nan, 1]])
    assert analysis.krippendorff_alpha(data, "nominal") == pytest.approx(1.0)


def test_bootstrap_is_seeded_and_covers_a_known_mean():
    rng = np.random.default_rng(3)
    hits = 0
    trials = 200
    for _ in range(trials):
        # 25 participants, 8 answers each; participant effects make rows correlated.
        effect = rng.normal(0, 1, size=25)
        values = (3.0 + effect[:, None] + rng.normal(0, 1, size=(25, 8))).ravel()
        people = np.repeat(np.arange(25), 8)
        _, low, high = analysis.bootstrap_mean(values, people, n_resamples=1000, seed=1)
        hits += low <= 3.0 <= high
    assert 0.88 <= hits / trials <= 0.99
    values = rng.normal(size=40)
    people = np.repeat(np.arange(10), 4)
    assert analysis.bootstrap_mean(values, people, seed=5) == analysis.bootstrap_mean(values, people, seed=5)


def test_bootstrap_resamples_participants_not_rows():
    # Two participants with constant answers: any resample mean is 0, 1 or 0.5, never in between
    # as it would be if rows were resampled independently.
    values = np.array([0.0] * 50 + [1.0] * 50)
    people = np.array([0] * 50 + [1] * 50)
    _, low, high = analysis.bootstrap_mean(values, people, n_resamples=500, seed=0)
    assert low == 0.0 and high == 1.0


def test_vote_scores_follow_the_formula():
    # Unit u1: 3 votes A, 1 B -> shares .75/.25. Unit u2: 1 A, 1 same -> .5/0/.5.
    choices = pd.DataFrame({
        "unit": ["u1"] * 4 + ["u2"] * 2,
        "method_a": ["A"] * 6, "method_b": ["B"] * 6,
        "choice": ["A", "A", "A", "B", "A", "same"],
    })
    scores = analysis.vote_scores(choices).set_index("method")
    assert scores.loc["A", "vote_score"] == pytest.approx((0.75 + 0.5) / 2)
    assert scores.loc["B", "vote_score"] == pytest.approx((0.25 + 0.0) / 2)
    assert list(scores["n_units"]) == [2, 2]


def test_vote_scores_reject_unknown_choice():
    bad = pd.DataFrame({"unit": ["u"], "method_a": ["A"], "method_b": ["B"], "choice": ["C"]})
    with pytest.raises(ValueError, match="choice"):
        analysis.vote_scores(bad)


# --- table builders on synthetic study results ---------------------------------------------

@pytest.fixture
def flagged():
    responses, participants = synthetic_results()
    return analysis.flag_exclusions(responses, participants, min_rt_ms=300)


def test_exclusions_flag_the_right_rows_and_delete_none(flagged):
    raw_responses, raw_participants = synthetic_results()
    responses, participants = flagged
    assert len(responses) == len(raw_responses) and len(participants) == len(raw_participants)
    excluded_people = set(participants.loc[participants["excluded"], "participant_id"])
    assert excluded_people == {6, 8}  # 6 failed the attention check, 8 did not complete
    assert list(participants.loc[~participants["attention_passed"], "participant_id"]) == [6]
    by_person = responses.groupby("participant_id")["excluded"]
    assert by_person.all()[6] and by_person.all()[8]
    seven = responses[responses["participant_id"] == 7]
    assert list(seven.loc[seven["excluded"], "rt_ms"]) == [120]  # only the too-fast answer
    assert not responses[responses["participant_id"].isin([1, 2, 3, 4, 5])]["excluded"].any()
    assert not raw_responses["excluded"].any()  # inputs untouched


def test_tolerated_attention_failures_do_not_exclude():
    responses, participants = synthetic_results()
    _, people = analysis.flag_exclusions(responses, participants, max_failed_attention_checks=1)
    assert people["attention_passed"].all()
    assert set(people.loc[people["excluded"], "participant_id"]) == {8}


def test_summary_counts_only_analysable_rows(flagged):
    responses, _ = flagged
    summary = analysis.summarize(responses, n_resamples=500)
    assert list(summary.columns) == analysis.SUMMARY_COLUMNS
    keep = responses[~responses["excluded"] & ~responses["is_practice"] & ~responses["is_attention_check"]]
    disc = keep[(keep["task"] == "class_discrimination") & (keep["method"] == "gradcam")]
    row = summary[(summary["task"] == "class_discrimination") & (summary["method"] == "gradcam")].iloc[0]
    k, n = int(disc["correct"].sum()), len(disc)
    assert (row["n"], row["estimate"]) == (n, pytest.approx(k / n))
    ref = proportion_confint(k, n, method="wilson")
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(ref)
    rating = summary[(summary["task"] == "rating") & (summary["method"] == "scorecam")].iloc[0]
    values = keep[(keep["task"] == "rating") & (keep["method"] == "scorecam")]["rating"]
    assert rating["estimate"] == pytest.approx(values.mean())
    assert rating["ci_low"] <= rating["estimate"] <= rating["ci_high"]
    assert rating["ci_method"] == "bootstrap"


def test_summary_compare_rows_carry_vote_scores(flagged):
    responses, _ = flagged
    summary = analysis.summarize(responses, n_resamples=200)
    compare = summary[summary["task"] == "compare"].set_index("method")
    assert set(compare.index) == {"cam", "gradcam"}
    assert compare["vote_score"].between(0, 1).all()
    # Each image weighs the same; the two scores plus the share of "same" answers make 1.
    keep = analysis.analysable(responses)
    choices = analysis.compare_choices(keep)
    same = choices.groupby("unit")["choice"].apply(lambda c: (c == "same").mean()).mean()
    assert compare["vote_score"].sum() + same == pytest.approx(1.0)


def test_method_tests_match_scipy_on_participant_means(flagged):
    responses, _ = flagged
    tests = analysis.method_tests(responses)
    assert list(tests.columns) == analysis.TEST_COLUMNS
    keep = analysis.analysable(responses)
    rating = keep[keep["task"] == "rating"]
    means = rating.groupby(["participant_id", "method"])["rating"].mean().unstack()
    both = means[["cam", "gradcam"]].dropna()
    ref = stats.wilcoxon(both["cam"], both["gradcam"], method="approx")  # tied means
    row = tests[(tests["task"] == "rating") & tests["test"].str.startswith("wilcoxon_")
                & (tests["method_a"] == "cam") & (tests["method_b"] == "gradcam")].iloc[0]
    assert (row["statistic"], row["p"], row["n"]) == (pytest.approx(ref.statistic), pytest.approx(ref.pvalue), len(both))
    complete = means.dropna()
    ref = stats.friedmanchisquare(*complete.to_numpy().T)
    row = tests[(tests["task"] == "rating") & (tests["test"] == "friedman")].iloc[0]
    assert (row["statistic"], row["p"]) == (pytest.approx(ref.statistic), pytest.approx(ref.pvalue))
    # Krippendorff's alpha: raters = participants, units = stimuli.
    unit = rating["image_id"] + "|" + rating["method"]
    wide = rating.assign(unit=unit).pivot_table(index="participant_id", columns="unit", values="rating")
    row = tests[(tests["task"] == "rating") & (tests["test"] == "krippendorff_alpha_ordinal")].iloc[0]
    assert row["statistic"] == pytest.approx(krippendorff.alpha(reliability_data=wide.to_numpy(), level_of_measurement="ordinal"))
    # Nominal alpha of class_discrimination is on the answers (A/B), not on correctness.
    disc = keep[keep["task"] == "class_discrimination"]
    codes = disc["response"].map({"A": 0, "B": 1})
    wide = disc.assign(unit=disc["image_id"] + "|" + disc["method"], code=codes).pivot_table(
        index="participant_id", columns="unit", values="code")
    row = tests[(tests["task"] == "class_discrimination") & (tests["test"] == "krippendorff_alpha_nominal")].iloc[0]
    assert row["measure"] == "response"
    assert row["statistic"] == pytest.approx(krippendorff.alpha(reliability_data=wide.to_numpy(), level_of_measurement="nominal"))


def test_mcnemar_runs_when_participants_saw_an_image_under_both_methods():
    responses, participants = synthetic_results()
    disc = responses[responses["task"] == "class_discrimination"].copy()
    twin = disc.assign(method=disc["method"].map({"cam": "gradcam", "gradcam": "cam"}), correct=~disc["correct"].astype(bool))
    paired = pd.concat([responses, twin], ignore_index=True)
    tests = analysis.method_tests(paired)
    row = tests[tests["test"] == "mcnemar_exact"].iloc[0]
    wide = pd.concat([disc, twin]).pivot_table(index=["participant_id", "image_id"], columns="method", values="correct")
    ref = mcnemar(pd.crosstab(wide["cam"] > 0.5, wide["gradcam"] > 0.5).to_numpy(), exact=True)
    assert (row["statistic"], row["p"], row["n"]) == (pytest.approx(ref.statistic), pytest.approx(ref.pvalue), len(wide))


def test_correlations_match_spearman_per_method(flagged):
    responses, _ = flagged
    faith = synthetic_faithfulness(responses)
    corr = analysis.correlate(responses, faith)
    assert list(corr.columns) == analysis.CORRELATION_COLUMNS
    keep = analysis.analysable(responses)
    rating = keep[(keep["task"] == "rating") & (keep["method"] == "cam")].groupby("image_id")["rating"].mean()
    auc = faith[faith["method"] == "cam"].set_index("image_id")["value"].reindex(rating.index)
    ref = stats.spearmanr(rating, auc)
    row = corr[(corr["level"] == "method") & (corr["method"] == "cam") & (corr["human_measure"] == "rating")].iloc[0]
    assert (row["rho"], row["n"]) == (pytest.approx(ref.statistic), len(rating))
    assert set(corr["level"]) == {"method", "image"}


def test_correlations_empty_without_faithfulness(flagged):
    responses, _ = flagged
    empty = pd.DataFrame(columns=["image_id", "model", "method", "target_class", "metric", "value", "params"])
    corr = analysis.correlate(responses, empty)
    assert corr.empty and list(corr.columns) == analysis.CORRELATION_COLUMNS


def test_bad_inputs_name_the_problem():
    responses, participants = synthetic_results()
    with pytest.raises(ValueError, match="lacks columns"):
        analysis.flag_exclusions(responses.drop(columns="rt_ms"), participants)
    broken = responses.copy()
    broken.loc[broken["task"] == "compare", "response"] = "left"
    with pytest.raises(ValueError, match="compare answer must name one of the two methods"):
        analysis.compare_choices(broken)
    with pytest.raises(ValueError, match="level of measurement"):
        analysis.krippendorff_alpha([[1, 2]], "ratio")
    with pytest.raises(ValueError, match="one participant id per value"):
        analysis.bootstrap_mean([1.0, 2.0], [1])
