"""study.analysis checked against independent oracles (statsmodels, scipy, krippendorff) on known data."""
import krippendorff
import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.proportion import proportion_confint

from study import analysis


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
    assert (w.statistic, w.p) == pytest.approx((ref.statistic, ref.pvalue))
    f = analysis.friedman_test(np.column_stack([x, y, z]))
    ref = stats.friedmanchisquare(x, y, z)
    assert (f.statistic, f.p, f.n) == pytest.approx((ref.statistic, ref.pvalue, 25))
    s = analysis.spearman(x, z)
    ref = stats.spearmanr(x, z)
    assert (s.statistic, s.p) == pytest.approx((ref.statistic, ref.pvalue))


def test_friedman_needs_three_complete_methods():
    with pytest.raises(ValueError, match="at least 3 methods"):
        analysis.friedman_test(np.ones((4, 2)))
    with pytest.raises(ValueError, match="complete rows"):
        analysis.friedman_test([[1, 2, np.nan], [1, 2, 3]])


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
