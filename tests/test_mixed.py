"""study.results.mixed against known effects and against R's lme4 (glmer Laplace, lmer REML).

The R comparisons skip when Rscript or lme4 is missing (.ci/run installs Debian's r-cran-lme4).
"""
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
from scipy.special import logit

from study.results import analysis, mixed
from study.results.power import PowerPlan, layout, simulate_correct

METHODS = ("gradcam", "cam", "ablationcam")
ACCURACY = (0.8, 0.55, 0.7)
RATING_MEANS = (3.6, 2.8, 3.3)


def _has_lme4() -> bool:
    if shutil.which("Rscript") is None:
        return False
    return subprocess.run(["Rscript", "-e", "library(lme4)"], capture_output=True).returncode == 0


needs_lme4 = pytest.mark.skipif(not _has_lme4(), reason="needs Rscript with the lme4 package")


def study_data(design: str, seed: int = 1, participants: int = 30) -> pd.DataFrame:
    """30 simulated participants x 12 images, 3 methods: correct from the mixed logit, a rating from
    the linear model, both with participant and image random intercepts."""
    plan = PowerPlan(METHODS, ACCURACY, participant_sd=0.6, image_sd=0.5, images=12, per_participant=12, design=design)
    rng = np.random.default_rng(seed)
    correct = simulate_correct(plan, participants, 1, rng)[0]
    person, image, method = layout(plan, participants)
    rating = (np.asarray(RATING_MEANS)[method] + rng.normal(0, 0.5, participants)[person]
              - rng.normal(0, 0.4, plan.images)[image] + rng.normal(0, 1.0, person.size))
    return pd.DataFrame({"participant_id": person, "image_id": [f"img{i:02d}" for i in image],
                         "method": np.asarray(METHODS)[method], "correct": correct, "rating": rating})


def fit(data: pd.DataFrame, column: str) -> mixed.MixedFit:
    groups = mixed.Crossed({"participant": mixed.codes_of(data["participant_id"]),
                            "image": mixed.codes_of(data["image_id"])})
    X, terms = mixed.treatment_design(data["method"], list(METHODS))
    fitter = mixed.fit_logit if column == "correct" else mixed.fit_linear
    return fitter(data[column].to_numpy(float), X, groups, terms)


def lme4(data: pd.DataFrame, column: str, tmp_path) -> pd.DataFrame:
    """Fixed effects, SEs and random-effect SDs of the same model fitted by lme4."""
    data.to_csv(tmp_path / "data.csv", index=False)
    call = ("glmer(y ~ method + (1|participant_id) + (1|image_id), data = d, family = binomial)"
            if column == "correct" else "lmer(y ~ method + (1|participant_id) + (1|image_id), data = d)")
    script = f"""
    suppressPackageStartupMessages(library(lme4))
    d <- read.csv("data.csv"); d$y <- d${column}
    d$participant_id <- factor(d$participant_id)
    d$method <- factor(d$method, levels = c({", ".join(f'"{m}"' for m in METHODS)}))
    m <- {call}
    s <- as.data.frame(VarCorr(m))
    write.csv(data.frame(term = c(names(fixef(m)), paste0("sd_", s$grp)),
                         value = c(fixef(m), s$sdcor), se = c(sqrt(diag(vcov(m))), rep(NA, nrow(s)))),
              "lme4.csv", row.names = FALSE)
    """
    subprocess.run(["Rscript", "-e", script], cwd=tmp_path, check=True, capture_output=True)
    return pd.read_csv(tmp_path / "lme4.csv").set_index("term")


def assert_recovered(result: mixed.MixedFit, per_method) -> None:
    """Every true coefficient (reference level, then differences to it) lies in its 95% interval.

    One fixed seed: a 95% interval misses 1 time in 20 (over 60 seeds of the within design the
    three intervals covered 95%, 90% and 98% of the time), so the seed is part of the test."""
    per_method = np.asarray(per_method, dtype=float)
    for term, true_value in zip(result.terms, [per_method[0], *(per_method[1:] - per_method[0])]):
        c = result.contrast(term)
        assert c.ci_low < true_value < c.ci_high, (term, c, true_value)
        assert c.se > 0 and 0 <= c.p <= 1


@pytest.mark.parametrize("design", ["within", "between"])
def test_the_mixed_models_recover_the_simulated_effects(design):
    data = study_data(design)
    accuracy = fit(data, "correct")
    assert_recovered(accuracy, logit(np.asarray(ACCURACY)))
    assert accuracy.sd["participant"] > 0 and not accuracy.singular
    rating = fit(data, "rating")
    assert_recovered(rating, RATING_MEANS)
    assert rating.sd["residual"] == pytest.approx(1.0, abs=0.1)


@needs_lme4
@pytest.mark.parametrize("design", ["within", "between"])
@pytest.mark.parametrize("column,tolerance", [("correct", 0.02), ("rating", 0.01)])
def test_fixed_effects_agree_with_lme4(design, column, tolerance, tmp_path):
    data = study_data(design, seed=3)
    ours = fit(data, column)
    theirs = lme4(data, column, tmp_path)
    for term, value in zip(ours.terms, ours.beta):
        r_term = term if term == "(Intercept)" else f"method{term}"
        assert value == pytest.approx(theirs.loc[r_term, "value"], abs=tolerance), term
        assert ours.contrast(term).se == pytest.approx(theirs.loc[r_term, "se"], rel=0.02), term
    assert ours.sd["participant"] == pytest.approx(theirs.loc["sd_participant_id", "value"], abs=0.02)
    assert ours.sd["image"] == pytest.approx(theirs.loc["sd_image_id", "value"], abs=0.02)


def test_the_laplace_gradient_is_exact():
    data = study_data("within", participants=8)
    groups = mixed.Crossed({"participant": mixed.codes_of(data["participant_id"]),
                            "image": mixed.codes_of(data["image_id"])})
    X, _ = mixed.treatment_design(data["method"], list(METHODS))
    model = mixed.LaplaceLogit(data["correct"].to_numpy(float), X, groups)
    for point in ([0.7, 0.3, 0.5, -0.4, 0.2], [1.5, 0.0, -0.2, 0.3, 0.9]):
        point = np.asarray(point)
        _, gradient = model.evaluate(point)
        steps = np.eye(point.size) * 1e-6
        numeric = [(model.objective(point + h) - model.objective(point - h)) / 2e-6 for h in steps]
        np.testing.assert_allclose(gradient, numeric, rtol=1e-5, atol=1e-6)


def test_singular_fits_are_reported_not_raised():
    rng = np.random.default_rng(5)
    person = np.repeat(np.arange(10), 6)
    image = np.tile(np.arange(6), 10)
    method = np.where((person + image) % 2 == 0, "gradcam", "cam")
    correct = (rng.random(person.size) < np.where(method == "gradcam", 0.8, 0.5)).astype(float)
    groups = mixed.Crossed({"participant": person, "image": image})
    X, terms = mixed.treatment_design(method, ["gradcam", "cam"])
    logistic = mixed.fit_logit(correct, X, groups, terms)
    # Noise that averages to zero for every participant, image and method within a participant:
    # no participant or image varies beyond the residual, so both SDs are estimated as 0.
    noise = np.array([1, 1, -1, -1, 0, 0])[image] * np.where(person % 2 == 0, 1.0, -1.0)
    linear = mixed.fit_linear(np.where(method == "gradcam", 4.0, 3.0) + noise, X, groups, terms)
    for result in (logistic, linear):
        assert result.singular and 0.0 in (result.sd["participant"], result.sd["image"])
        c = result.contrast("cam")
        assert np.isfinite([c.estimate, c.se, c.p]).all()
    # Without random-effect variance the logistic fit is the ordinary logistic regression.
    assert logistic.contrast("cam").estimate == pytest.approx(mixed.start_beta(correct, X)[1], abs=1e-4)


def test_tests_csv_rows_use_the_configured_reference():
    data = study_data("within", participants=12)
    responses = data.assign(
        study_id=1, external_id="x", trial_index=0, task="class_discrimination", model="m", method_b=None,
        target_class=1, response="a", confidence=None, rt_ms=1000, is_practice=False,
        is_attention_check=False, excluded=False, correct=data["correct"].astype(bool))
    tests = analysis.method_tests(responses, ["cam", "gradcam", "ablationcam"])
    rows = tests[tests["test"] == "mixed_logit"].set_index("method_a")
    assert set(rows.index) == {"gradcam", "ablationcam"} and set(rows["method_b"]) == {"cam"}
    assert (rows["paired_by"] == "participant+image").all() and (rows["n"] == len(data)).all()
    np.testing.assert_allclose(rows["statistic"], np.exp(rows["estimate"]))
    np.testing.assert_allclose(rows["ci_high"] - rows["estimate"], 1.959964 * rows["se"], rtol=1e-5)
    sds = tests[tests["test"] == "mixed_logit_sd"]
    assert set(sds["paired_by"]) == {"participant", "image"} and (sds["method_a"] == "all").all()
    others = tests[~tests["test"].str.startswith("mixed")]
    assert others[["estimate", "se", "ci_low", "ci_high"]].isna().all().all()
    assert set(analysis.method_tests(responses).query("test == 'mixed_logit'")["method_b"]) == {"ablationcam"}


def test_bad_inputs_name_the_problem():
    groups = mixed.Crossed({"participant": np.array([0, 1]), "image": np.array([0, 0])})
    with pytest.raises(ValueError, match="binary"):
        mixed.fit_logit(np.array([0.0, 2.0]), np.ones((2, 1)), groups)
    with pytest.raises(ValueError, match="not among the levels"):
        mixed.treatment_design(["cam", "rise"], ["cam", "gradcam"])
    with pytest.raises(ValueError, match="3 outcomes"):
        mixed.fit_linear(np.zeros(3), np.ones((3, 1)), groups)
