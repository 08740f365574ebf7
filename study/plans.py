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
from collections.abc import Sequence
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
    """The main trials of one task (by cell index) and how many each participant sees."""
    trials: Sequence[Any]          # storage.Trial rows, trials[j].cell_index == j
    n_units: int
    n_conditions: int
    per_participant: int


@dataclass(frozen=True)
class PlannedTrial:
    trial: Any                     # a storage.Trial
    display: dict[str, Any]
    is_practice: bool
    is_attention_check: bool


def make_plan(blocks: Sequence[TaskBlock], practice: Sequence[Any], attention: Sequence[Any],
              slot: int, seed: int) -> list[PlannedTrial]:
    """Practice first, then each task's block (config order, shuffled within), with the
    attention checks at random places after the first main trial."""
    rng = random.Random(seed)
    main: list[PlannedTrial] = []
    for block in blocks:
        picked = [block.trials[j] for j in slot_cells(slot, block.n_units, block.n_conditions,
                                                       block.per_participant)]
        rng.shuffle(picked)
        main += [PlannedTrial(t, t.spec.randomise(rng), False, False) for t in picked]
    for check in attention:
        position = rng.randint(1, len(main)) if main else 0
        main.insert(position, PlannedTrial(check, check.spec.randomise(rng), False, True))
    head = [PlannedTrial(t, t.spec.randomise(rng), True, False) for t in practice]
    return head + main
