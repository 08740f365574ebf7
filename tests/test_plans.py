"""Plans and task displays as pure functions: counterbalancing, quotas, order, scoring."""
from __future__ import annotations

import json
import random
from collections import Counter
from types import SimpleNamespace

import pytest

from study.protocol import plans, tasks
from study.protocol.tasks.class_discrimination import NEITHER


@pytest.mark.parametrize("units, conditions, per_participant", [(7, 3, 7), (5, 6, 4), (8, 2, 3), (6, 4, 6), (3, 1, 2)])
def test_any_number_of_participants_keeps_cells_balanced_and_units_distinct(units, conditions, per_participant):
    counts = Counter()
    for slot in range(3 * units * conditions):
        cells = plans.slot_cells(slot, units, conditions, per_participant)
        shown = [plans.cell(j, units, conditions) for j in cells]
        assert len({u for u, _ in shown}) == per_participant            # never the same image twice
        counts.update(cells)
        every = [counts[j] for j in range(units * conditions)]
        assert max(every) - min(every) <= 1                             # the quota, after every participant


def test_a_full_latin_square_row_shows_each_condition_equally_often():
    for slot in range(12):
        conditions = Counter(plans.cell(j, 6, 3)[1] for j in plans.slot_cells(slot, 6, 3, 6))
        assert sorted(conditions.values()) == [2, 2, 2]


def test_bad_trial_counts_and_free_slots():
    with pytest.raises(ValueError, match="between 1 and the 4 images"):
        plans.slot_cells(0, 4, 2, 5)
    assert plans.first_free_slot([]) == 0
    assert plans.first_free_slot([0, 1, 3]) == 2
    assert plans.first_free_slot([1, 0, 2]) == 3


def test_participant_seeds_are_reproducible_and_distinct():
    assert plans.participant_seed(1, "a") == plans.participant_seed(1, "a")
    assert len({plans.participant_seed(1, f"p{i}") for i in range(200)}) == 200
    assert plans.participant_seed(1, "a") != plans.participant_seed(2, "a")


def rating_spec():
    unit = tasks.Unit(SimpleNamespace(image_id="x", labels=(3,)), (3,))
    spec = tasks.TASKS["rating"].spec(None, unit, tasks.Condition(method="cam", model="m"), ["c"] * 5)
    return spec.with_stimuli([100])


def fake_trial(name, spec=None):
    return SimpleNamespace(name=name, spec=spec or rating_spec())


def test_plans_put_practice_first_tasks_in_order_and_checks_inside():
    blocks = [plans.TaskBlock([fake_trial(f"a{j}") for j in range(8)], 4, 2, 4),
              plans.TaskBlock([fake_trial(f"b{j}") for j in range(6)], 3, 2, 2)]
    practice = [[fake_trial("practice")]]
    checks = [[fake_trial("check1")], [fake_trial("check2")]]
    plan = plans.make_plan(blocks, practice, checks, slot=1, seed=7)
    names = [p.trial.name for p in plan]
    assert names[0] == "practice" and plan[0].is_practice
    main = [n for n in names[1:] if not n.startswith("check")]
    assert [n[0] for n in main] == ["a"] * 4 + ["b"] * 2
    assert sorted(main[:4]) == sorted(f"a{j}" for j in plans.slot_cells(1, 4, 2, 4))
    assert names.index("check1") > 1 and names.index("check2") > 1
    assert [p.is_attention_check for p in plan].count(True) == 2
    assert plans.make_plan(blocks, practice, checks, 1, 7) == plan
    orders = {tuple(p.trial.name for p in plans.make_plan(blocks, practice, checks, 1, s)) for s in range(20)}
    assert len(orders) > 1                                             # the seed shuffles


def compare_spec():
    unit = tasks.Unit(SimpleNamespace(image_id="x", labels=(3,)), (3,))
    cond = tasks.Condition(method="gradcam", method_b="cam", model="m")
    spec = tasks.TASKS["compare"].spec(None, unit, cond, [f"c{i}" for i in range(5)])
    return spec.with_stimuli([11, 22])      # 11: the gradcam map, 22: the cam map


def test_compare_options_follow_the_maps_when_left_and_right_swap():
    spec = compare_spec()
    method_of = {11: "gradcam", 22: "cam"}
    seen = set()
    for seed in range(20):
        display = spec.randomise(random.Random(seed))
        stimuli, captions, options = spec.view(display)
        assert captions == ["Left", "Right"]
        assert options[0] == (method_of[stimuli[0]], "Left") and options[1] == (method_of[stimuli[1]], "Right")
        assert options[2] == ("same", "About the same")
        seen.add(tuple(stimuli))
    assert seen == {(11, 22), (22, 11)}


def test_trust_ratings_favour_the_first_model_whichever_side_it_is_on():
    unit = tasks.Unit(SimpleNamespace(image_id="x", labels=(3,)), (3,))
    cond = tasks.Condition(method="gradcam", model="A", model_b="B")
    spec = tasks.TASKS["trust"].spec(None, unit, cond, ["c"] * 5).with_stimuli([1, 2])
    a_left, a_right = {"order": [0, 1], "options": list(range(5))}, {"order": [1, 0], "options": list(range(5))}
    assert spec.score(a_left, "-2") == (None, 2)      # "left much more reliable", A on the left
    assert spec.score(a_right, "-2") == (None, -2)
    assert spec.score(a_right, "1") == (None, 1)


def test_class_discrimination_scores_the_explained_class_and_keeps_neither_last():
    unit = tasks.Unit(SimpleNamespace(image_id="a+b", labels=(3, 7)), (3, 7))
    kind = tasks.TASKS["class_discrimination"]
    spec = kind.spec(None, unit, tasks.Condition(method="gradcam", model="m", which=1), [f"c{i}" for i in range(9)])
    orders = set()
    for seed in range(20):
        display = spec.randomise(random.Random(seed))
        _, _, options = spec.view(display)
        assert options[-1][0] == NEITHER
        orders.add(tuple(v for v, _ in options))
    assert orders == {("3", "7", NEITHER), ("7", "3", NEITHER)}
    assert spec.score(display, "7") == (True, None)
    assert spec.score(display, "3") == (False, None)
    assert spec.score(display, NEITHER) == (False, None)


def test_attention_checks_have_a_known_right_answer_and_likert_is_never_shuffled():
    spec = rating_spec()
    check = spec.as_attention_check(random.Random(3))
    value, label = next(o for o in check.options if o[0] == check.answer)
    assert f"**{label}**" in check.prompt_md
    assert check.score(check.randomise(random.Random(0)), value) == (True, None)
    for seed in range(10):
        _, _, options = spec.view(spec.randomise(random.Random(seed)))
        assert [v for v, _ in options] == ["1", "2", "3", "4", "5"]
    assert spec.score(spec.randomise(random.Random(0)), "4") == (None, 4)


def test_a_trial_spec_survives_its_json_round_trip():
    spec = compare_spec()
    assert tasks.TrialSpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec
