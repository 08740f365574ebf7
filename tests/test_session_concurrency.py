"""Many simulated participants at once against one SQLite file: nothing lost, nothing doubled,
accuracies recovered, and the Latin-square and quota properties hold over the stored plans."""
from __future__ import annotations

import math
import threading
from collections import Counter, defaultdict

import pytest
from sqlalchemy import func, select

from _study_fixtures import build_fake_study, memory_backed_dir
from study.protocol import plans
from study.survey.session import SurveySession
from study.survey.simulator import simulate_participants
from study.store.database import Participant, PlanRow, Response, Study, Trial

ACCURACY = {"gradcam": 0.9, "cam": 0.55, "ablationcam": 0.75}
N_PARTICIPANTS = 30
# Scored tasks (and a compare task, to check counterbalancing of pairs), a dozen trials each.
TASKS = """
[[tasks]]
type = "class_discrimination"
composites = 6
trials = 4

[[tasks]]
type = "agreement"
trials = 3

[[tasks]]
type = "distinction"
methods = ["gradcam", "cam"]
trials = 2

[[tasks]]
type = "compare"
trials = 2
"""


def wilson(successes: int, n: int, z: float = 3.89) -> tuple[float, float]:
    """Wilson score interval (z = 3.89: 99.99%; thread timing decides the plans, so runs differ)."""
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


@pytest.fixture(scope="module")
def crowd():
    with memory_backed_dir() as scratch:
        yield _run_crowd(scratch)


def _run_crowd(scratch):
    study_dir = build_fake_study(scratch, TASKS, practice=1, attention=1)
    states = simulate_participants(study_dir, N_PARTICIPANTS, ACCURACY, seed=5, threads=20)
    session = SurveySession(study_dir)
    with session.db.read() as s:
        rows = s.execute(select(PlanRow, Response, Trial)
                         .join(Trial, PlanRow.trial_id == Trial.id)
                         .outerjoin(Response, Response.plan_row_id == PlanRow.id)).all()
        people = s.scalars(select(Participant)).all()
        layout = s.scalar(select(Study.layout))
    return session, states, rows, people, layout


def test_every_answer_is_stored_exactly_once(crowd):
    session, states, rows, people, _ = crowd
    assert len(states) == len(people) == N_PARTICIPANTS
    assert all(s.completed and s.n_done == s.n_total and s.external_id.startswith("SIM-") for s in states)
    assert all(response is not None for _, response, _ in rows)            # nothing lost
    keys = [(r.participant_id, r.trial_index) for _, r, _ in rows]
    assert len(keys) == len(set(keys))                                     # nothing doubled
    with session.db.read() as s:
        assert s.scalar(select(func.count(Response.id))) == len(rows)


def test_recovered_accuracy_per_method_matches_the_simulated_one(crowd):
    _, _, rows, _, _ = crowd
    tally = defaultdict(lambda: [0, 0])
    for plan, response, trial in rows:
        if trial.role == "main" and response.correct is not None:
            tally[plan.method][0] += response.correct
            tally[plan.method][1] += 1
    assert set(tally) == set(ACCURACY)
    for method, (right, n) in tally.items():
        assert n >= 60
        low, high = wilson(right, n)
        assert low <= ACCURACY[method] <= high, (method, right, n)
    attention = [r.correct for p, r, _ in rows if p.is_attention_check]
    assert attention and all(attention)


def test_no_participant_sees_an_image_twice_within_a_task_and_conditions_are_balanced(crowd):
    _, _, rows, _, layout = crowd
    seen = defaultdict(list)
    conditions = defaultdict(Counter)
    for plan, _, trial in rows:
        if trial.role == "main":
            seen[plan.participant_id, plan.task].append(plan.image_id)
            conditions[plan.participant_id, plan.task][(plan.method, plan.method_b, trial.target_class)] += 1
    for images in seen.values():
        assert len(images) == len(set(images))
    by_task = {entry["task"]: entry for entry in layout}
    for (pid, task), counts in conditions.items():
        if by_task[task]["per_participant"] == by_task[task]["units"]:     # a full Latin-square row
            assert max(counts.values()) - min(counts.values()) <= 1


def test_quotas_every_cell_is_assigned_equally_often_give_or_take_one(crowd):
    _, _, rows, people, _ = crowd
    assert sorted(p.slot for p in people) == list(range(N_PARTICIPANTS))  # one slot each, none skipped
    per_cell = Counter(trial.id for plan, _, trial in rows if trial.role == "main")
    main_trials = {trial.id: trial.task for _, _, trial in rows if trial.role == "main"}
    session = crowd[0]
    with session.db.read() as s:
        all_main = s.execute(select(Trial.id, Trial.task).where(Trial.role == "main")).all()
    for task in {t for _, t in all_main}:
        counts = [per_cell.get(tid, 0) for tid, t in all_main if t == task]
        assert max(counts) - min(counts) <= 1, task
    assert set(main_trials) <= {tid for tid, _ in all_main}


def test_a_full_cycle_of_latin_square_rows_covers_every_cell_once():
    for units, conditions in [(7, 3), (5, 6), (4, 4)]:
        cells = [j for slot in range(conditions) for j in plans.slot_cells(slot, units, conditions, units)]
        assert sorted(cells) == list(range(units * conditions))
        for slot in range(conditions):   # row `slot`: unit u under condition (slot + u) mod k
            got = [plans.cell(j, units, conditions) for j in plans.slot_cells(slot, units, conditions, units)]
            assert sorted(got) == [(u, (slot + u) % conditions) for u in range(units)]


def test_twenty_threads_replaying_one_answer_store_it_once(tmp_path):
    session = SurveySession(build_fake_study(tmp_path, TASKS))
    state = session.consent("replayer", True)
    trial = session.next_trial(state.participant_id)
    barrier = threading.Barrier(20)
    outcomes = []

    def replay():
        barrier.wait()
        outcomes.append(session.answer(state.participant_id, trial.trial_index, trial.options[0][0], 321))

    threads = [threading.Thread(target=replay) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(o.stored for o in outcomes) == 1 and sum(o.duplicate for o in outcomes) == 19
    assert session.progress(state.participant_id)[0] == 1


def test_the_local_wilson_interval_matches_statsmodels():
    from statsmodels.stats.proportion import proportion_confint
    for right, n in [(60, 100), (0, 30), (30, 30), (7, 80)]:
        low, high = proportion_confint(right, n, alpha=1e-4, method="wilson")
        assert wilson(right, n, z=3.8906) == pytest.approx((low, high), abs=1e-4)
