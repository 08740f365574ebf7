"""study.results.power: the planned layout, an honest test (alpha at zero effect) and growing power."""
import numpy as np
import pytest

from study.results.power import PowerPlan, layout, power_curve


def test_the_layout_follows_the_plans():
    within = PowerPlan(("a", "b", "c"), (0.6, 0.7, 0.8), images=6, per_participant=6)
    person, image, method = layout(within, 6)
    for s in range(6):
        mine = person == s
        assert sorted(image[mine]) == list(range(6))              # every image once
        assert np.bincount(method[mine], minlength=3).tolist() == [2, 2, 2]   # every method equally
    between = PowerPlan(("a", "b"), (0.6, 0.7), images=4, per_participant=4, design="between")
    person, image, method = layout(between, 4)
    assert [set(method[person == s]) for s in range(4)] == [{0}, {1}, {0}, {1}]


def test_at_zero_effect_the_test_rejects_at_alpha():
    """400 simulated studies without a method effect: the rejection rate is 0.05 +- 0.03."""
    plan = PowerPlan(("a", "b"), (0.7, 0.7), participant_sd=0.5, image_sd=0.5, images=4, per_participant=4)
    result = power_curve(plan, [12], 400, seed=11, workers=2)
    assert list(result.columns) == ["participants", "power", "ci_low", "ci_high"]
    assert 0.02 <= result["power"].iloc[0] <= 0.08
    assert result["ci_low"].iloc[0] <= result["power"].iloc[0] <= result["ci_high"].iloc[0]


def test_power_grows_with_participants():
    plan = PowerPlan(("a", "b", "c"), (0.55, 0.75, 0.65), images=6, per_participant=6)
    power = power_curve(plan, [6, 30], 60, seed=2, workers=2)["power"].to_numpy()
    assert power[1] > power[0] + 0.2


def test_the_same_seed_gives_the_same_curve_whatever_the_workers():
    plan = PowerPlan(("a", "b"), (0.6, 0.8), images=4, per_participant=4, design="between")
    one = power_curve(plan, [6], 12, seed=5, workers=1)
    two = power_curve(plan, [6], 12, seed=5, workers=2)
    assert one.equals(two)


@pytest.mark.parametrize("change,message", [
    (dict(accuracy=(0.7, 1.0)), "strictly between 0 and 1"),
    (dict(methods=("a",), accuracy=(0.7,)), "at least two methods"),
    (dict(design="mixed"), "design must be"),
    (dict(per_participant=9), "each participant sees"),
    (dict(image_sd=-1.0), "SDs must be"),
])
def test_bad_plans_name_the_problem(change, message):
    settings = dict(methods=("a", "b"), accuracy=(0.7, 0.8), images=4, per_participant=4) | change
    with pytest.raises(ValueError, match=message):
        PowerPlan(**settings)
