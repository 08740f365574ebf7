"""Per-participant trial plans: Latin-square counterbalancing, quotas, practice and attention checks.

Cells of a task with U units and k conditions are enumerated cyclically: cell j shows unit
j mod U under condition (j // U + j mod U) mod k. Participant number s (their *slot*) takes
the m consecutive cells s*m .. s*m+m-1 (mod U*k), m <= U, so

* no participant sees a unit twice within a task (m consecutive cells have distinct units);
* with m == U, slot s is row s mod k of the cyclic Latin square (unit u under condition
  (s + u) mod k), so each participant sees every condition equally often;
* slots handed out in order tile the cell sequence, so after any number of participants every
  cell has been assigned the same number of times, give or take one (the quota).

Slots are assigned atomically by the session (the lowest slot not held by an active
participant), everything else here is a pure function of the slot and the participant's seed.
"""
from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


def cell(j: int, n_units: int, n_conditions: int) -> tuple[int, int]:
    """(unit, condition) of cell index j."""
    unit = j % n_units
    return unit, (j // n_units + unit) % n_conditions


def slot_cells(slot: int, n_units: int, n_conditions: int, per_participant: int) -> list[int]:
    """Cell indices that the participant in `slot` sees in one task."""
    if not 1 <= per_participant <= n_units:
        raise ValueError(f"trials per participant must be between 1 and the {n_units} images of the task, "
                         f"got {per_participant}")
    total = n_units * n_conditions
    return [(slot * per_participant + i) % total for i in range(per_participant)]


def first_free_slot(held: Sequence[int]) -> int:
    """The lowest slot not in `held` (slots of participants who left are reused first)."""
    taken = set(held)
    return next(s for s in range(len(taken) + 1) if s not in taken)


def participant_seed(study_seed: int, external_id: str) -> int:
    """A reproducible per-participant seed (recorded with the participant)."""
    return random.Random(f"{study_seed}|{external_id}").getrandbits(31)


@dataclass(frozen=True)
class TaskBlock:
    """The main trials of one task (by cell index), how many each participant sees, and whether each
    participant sees only their condition's method (`between`). `order`, for a task whose trials come
    in a set order (TaskType.order), gives the cells of a participant (by rank and condition) in order,
    each with facts for its plan row; they are then neither shuffled nor interrupted by checks."""
    trials: Sequence[Any]          # trial templates, trials[j].cell_index == j
    n_units: int
    n_conditions: int
    per_participant: int
    between: bool = False
    order: Callable[[int, str | None], list[tuple[int, dict[str, Any]]]] | None = None


@dataclass(frozen=True)
class PlannedTrial:
    trial: Any                     # a trial template (study.store.built_study.TrialTemplate)
    display: dict[str, Any]
    is_practice: bool
    is_attention_check: bool


def condition_order(conditions: Sequence[str], study_seed: int) -> list[str]:
    """The between-subject conditions in a seeded random order: slot s is assigned order[s % k], so
    conditions fill evenly (their counts differ by at most one) in an order nobody chose."""
    order = list(conditions)
    random.Random(f"{study_seed}|conditions").shuffle(order)
    return order


def between_cells(block: TaskBlock, method: str, rank: int) -> list[int]:
    """Cell indices that the `rank`-th participant of a between-subject condition sees in one task:
    `per_participant` different units, rotated by rank so that the condition's participants cover its
    units evenly, each in one of the method's cells (rotated too: class discrimination has two)."""
    by_unit: dict[int, list[int]] = {}
    for j, trial in enumerate(block.trials):
        if trial.method == method:
            by_unit.setdefault(j % block.n_units, []).append(j)
    units = sorted(by_unit)
    if not 1 <= block.per_participant <= len(units):
        raise ValueError(f"trials per participant must be between 1 and the {len(units)} images of the task")
    chosen = [units[(rank * block.per_participant + i) % len(units)] for i in range(block.per_participant)]
    return [by_unit[u][(rank + u) % len(by_unit[u])] for u in chosen]


def make_plan(blocks: Sequence[TaskBlock], practice: Sequence[Sequence[Any]], attention: Sequence[Sequence[Any]],
              slot: int, seed: int, condition: str | None = None, n_conditions: int = 1) -> list[PlannedTrial]:
    """Practice first, then each task's block (config order, shuffled within unless the block sets its
    own order), with the attention checks at random places after the first main trial.

    `practice` and `attention` are groups of copies of one extra trial: a single copy, or one per
    condition (between subjects), of which the participant's `condition` is kept.
    """
    rng = random.Random(seed)
    # Within a condition, participants are ranked slot div k; the within tasks of a mixed design
    # rotate by that rank, so each condition's participants cover the Latin square of those tasks
    # (rotating by the slot itself would tie a condition to a few of its rows).
    rank = slot // n_conditions
    main: list[PlannedTrial] = []
    fixed: set[int] = set()          # positions inside an ordered block, where no check may go
    for block in blocks:
        if block.order is not None:
            ordered = [(block.trials[j], extra) for j, extra in block.order(rank, condition)]
            fixed |= set(range(len(main) + 1, len(main) + len(ordered)))
            main += [PlannedTrial(t, {**t.spec.randomise(rng), **extra}, False, False) for t, extra in ordered]
            continue
        if block.between:
            cells = between_cells(block, condition, rank)
        else:
            cells = slot_cells(rank, block.n_units, block.n_conditions, block.per_participant)
        picked = [block.trials[j] for j in cells]
        rng.shuffle(picked)
        main += [PlannedTrial(t, t.spec.randomise(rng), False, False) for t in picked]
    for check in (_own(group, condition) for group in attention):
        if not fixed:
            position = rng.randint(1, len(main)) if main else 0
        else:                        # after the first trial, never inside an ordered block
            places = [p for p in range(1, len(main) + 1) if p not in fixed]
            position = rng.choice(places) if places else len(main)
            fixed = {p + (p >= position) for p in fixed}
        main.insert(position, PlannedTrial(check, check.spec.randomise(rng), False, True))
    head = [PlannedTrial(t, t.spec.randomise(rng), True, False) for t in (_own(g, condition) for g in practice)]
    return head + main


def _own(copies: Sequence[Any], condition: str | None) -> Any:
    """The copy of an extra trial for this participant's condition (the only one within subjects)."""
    return copies[0] if len(copies) == 1 else next(t for t in copies if t.method == condition)
