"""A built study, read back: its config, trial templates, stimuli and Latin-square blocks.

Everything here is fixed by `camstudy build`, so it is read from the database once and never
changes; the participant flow (`study.survey.session`), the admin queries (`study.survey.monitor`) and the
simulator share one `BuiltStudy` instead of each querying the trial tables.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from study.protocol import plans
from study.protocol.config import StudyConfig
from study.store.database import Stimulus, Study, StudyFolder, Trial
from study.protocol.tasks import TASKS, TrialSpec
from study.protocol.tasks.spec import specs_from_json


@dataclass(frozen=True)
class TrialTemplate:
    """One trial as built: a cell (task x image x condition), a practice or an attention item."""
    id: int
    task: str
    role: str                     # "main" | "practice" | "attention"
    task_position: int
    cell_index: int | None
    image_id: str
    model: str
    model_b: str | None
    method: str
    method_b: str | None
    target_class: int | None
    spec: TrialSpec                                  # in the study's default language: scoring uses it
    specs: Mapping[str, TrialSpec] = field(default_factory=dict)   # every language's wording

    def spec_in(self, language: str | None) -> TrialSpec:
        """The trial worded in `language` (the default language's where it has none)."""
        return self.specs.get(language, self.spec)


@dataclass(frozen=True)
class BuiltStudy:
    """One built study version in `study_dir`, immutable (its participants' plans are drawn from it)."""
    study_dir: Path
    config: StudyConfig
    study_id: int
    seed: int
    blocks: tuple[plans.TaskBlock, ...]
    practice: tuple[tuple[TrialTemplate, ...], ...]     # groups: one copy, or one per condition
    attention: tuple[tuple[TrialTemplate, ...], ...]
    trials: Mapping[int, TrialTemplate]
    stimuli: Mapping[int, str]      # stimulus id -> path relative to the study folder

    @classmethod
    def load(cls, folder: StudyFolder) -> BuiltStudy:
        """Read the study version `folder` opened (one read transaction)."""
        with folder.database.read() as s:
            study = s.get(Study, folder.study_id)
            rows = s.scalars(select(Trial).where(Trial.study_id == folder.study_id).order_by(Trial.id)).all()
            templates = []
            for t in rows:
                specs = specs_from_json(t.spec, folder.config.language)
                templates.append(TrialTemplate(t.id, t.task, t.role, t.task_position, t.cell_index, t.image_id,
                                               t.model, t.model_b, t.method, t.method_b, t.target_class,
                                               specs[folder.config.language], specs))
            stimuli = dict(s.execute(select(Stimulus.id, Stimulus.path)
                                     .where(Stimulus.study_id == folder.study_id)).all())
            seed, layout = study.seed, list(study.layout)
        blocks = []
        for position, (block, task) in enumerate(zip(layout, folder.config.tasks)):
            main = sorted((t for t in templates if t.role == "main" and t.task_position == position),
                          key=lambda t: t.cell_index)
            blocks.append(plans.TaskBlock(main, block["units"], block["conditions"], block["per_participant"],
                                          between=task.design == "between",
                                          order=TASKS[task.type].order(task, block, f"{seed}|task {position}")))
        return cls(folder.path, folder.config, folder.study_id, seed, tuple(blocks),
                   _groups(templates, "practice"), _groups(templates, "attention"),
                   {t.id: t for t in templates}, stimuli)

    @property
    def conditions(self) -> list[str]:
        """The between-subject conditions in their assignment order (empty within subjects)."""
        return plans.condition_order(self.config.conditions, self.seed)

    def condition_of(self, slot: int) -> str | None:
        """The condition that Latin-square slot `slot` is assigned (None within subjects)."""
        order = self.conditions
        return order[slot % len(order)] if order else None

    @property
    def plan_length(self) -> int:
        """Trials in every participant's plan: practice, attention checks and each task's share."""
        return len(self.practice) + len(self.attention) + sum(b.per_participant for b in self.blocks)

    def plan(self, slot: int, seed: int) -> list[plans.PlannedTrial]:
        """The plan of the participant in `slot` with plan seed `seed`."""
        return plans.make_plan(self.blocks, self.practice, self.attention, slot, seed,
                               self.condition_of(slot), max(len(self.conditions), 1))

    def trial(self, trial_id: int) -> TrialTemplate:
        return self.trials[trial_id]

    def stimulus_path(self, stimulus_id: int) -> Path:
        return self.study_dir / self.stimuli[stimulus_id]


def _groups(templates: list[TrialTemplate], role: str) -> tuple[tuple[TrialTemplate, ...], ...]:
    """Practice or attention trials grouped into the copies of one extra trial (task, number)."""
    groups: dict[tuple, list[TrialTemplate]] = {}
    for t in templates:
        if t.role == role:
            # Studies built before extras were numbered (cell_index None) have one copy of each.
            key = (t.task_position, t.cell_index) if t.cell_index is not None else ("built before copies", t.id)
            groups.setdefault(key, []).append(t)
    return tuple(tuple(group) for group in groups.values())
