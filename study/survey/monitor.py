"""What the admin page asks of a running study: progress per cell, link views, and the
instructions' example.

Read-only queries, kept apart from the participant flow (`study.survey.session`) so neither grows the
other's concerns; both share one `BuiltStudy` and database.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import func, select

from study.protocol.languages import names_in, read_class_names
from study.protocol.tasks import TASKS
from study.store.built_study import BuiltStudy
from study.store.database import Database, Event, Image, Model, PlanRow, Response, Stimulus, Trial

if TYPE_CHECKING:
    import pandas as pd


class StudyMonitor:
    """Admin queries over one study; cheap to create, safe to share between threads."""

    def __init__(self, built: BuiltStudy, db: Database):
        self.built, self.db = built, db
        # The study never changes once built: each example is looked up once per process, not per visitor.
        self.instructions_map = lru_cache(maxsize=64)(self._instructions_map)

    def _instructions_map(self, condition: str | None = None, language: str | None = None) -> tuple[Path, str] | None:
        """An explanation for the instructions page, with its class name in `language`: a map of a
        plain photo's own class (not a composite), by the study's first model and, of the study-wide
        methods, the first in config order; for a between-subject participant, of their own `condition`
        (method) only, so that nobody is shown a method they are not assigned (the control `none` of a
        utility task: no example). Never an image of a task that teaches (utility): for the method
        groups alone it would be one more learning trial. The class is named as the trials
        name it: from the config's `class_names` CSV of that language (kept in the study folder), else
        the model's own name."""
        config, study_id = self.built.config, self.built.study_id
        model = config.models[0]
        taught = [kind.name for kind in TASKS.values() if not kind.illustrates_instructions]
        with self.db.read() as s:
            rows = s.execute(select(Stimulus.path, Stimulus.method, Stimulus.target_class, Image.source, Image.labels)
                             .join(Image, Image.id == Stimulus.image_ref)
                             .where(Stimulus.study_id == study_id, Stimulus.model == model,
                                    Stimulus.target_class.is_not(None),
                                    Image.image_id.not_in(select(Trial.image_id).where(
                                        Trial.study_id == study_id, Trial.task.in_(taught), Trial.image_id.is_not(None))))
                             .order_by(Stimulus.id)).all()
            rank = {m: i for i, m in enumerate(config.methods)}
            best = min((r for r in rows if condition is None or r.method == condition), default=None,
                       key=lambda r: (r.source.startswith("composite:"), r.labels[:1] != [r.target_class],
                                      rank.get(r.method, len(rank))))
            if best is None:
                return None
            categories = s.scalar(select(Model.categories).where(Model.study_id == study_id, Model.name == model))
        table = config.class_names.get(language)
        if table is not None and config.resolve(table).is_file():
            categories = names_in(categories, read_class_names(config.resolve(table)))
        return self.built.study_dir / best.path, categories[best.target_class]

    def link_views(self) -> int:
        """How often the consent page was shown to someone who had not answered it yet (reloads and
        people who then answered included; no row is kept for a view, only this count)."""
        with self.db.read() as s:
            return s.scalar(select(func.count(Event.id)).where(Event.study_id == self.built.study_id,
                                                               Event.kind == "viewed"))

    def cell_progress(self) -> pd.DataFrame:
        """Answers so far per main-trial cell (task, image, method) against the quota target,
        `answers_per_cell`. A task whose trials come in a set order (utility) shows a participant only some
        of its images, so its cells have no quota: it is counted per condition (image_id empty), against
        `answers_per_cell` participants each answering its whole sequence."""
        import pandas as pd   # here, not at the top: a process that only serves participants never loads it
        trials = [t for block in self.built.blocks for t in block.trials]
        sequence = {t.id: block.per_participant for block in self.built.blocks if block.order for t in block.trials}
        with self.db.read() as s:
            counts = dict(s.execute(
                select(PlanRow.trial_id, func.count(Response.id))
                .join(Response, Response.plan_row_id == PlanRow.id)
                .where(PlanRow.trial_id.in_([t.id for t in trials]))
                .group_by(PlanRow.trial_id)).all()) if trials else {}
        frame = pd.DataFrame(
            [(t.task, "" if t.id in sequence else t.image_id, f"{t.method} vs {t.method_b}" if t.method_b else t.method,
              counts.get(t.id, 0), sequence.get(t.id)) for t in trials],
            columns=["task", "image_id", "method", "n_answers", "sequence"])
        frame = frame.groupby(["task", "image_id", "method"], as_index=False, dropna=False).agg(
            n_answers=("n_answers", "sum"), cells=("n_answers", "size"), sequence=("sequence", "first"))
        # answers_per_cell per cell, or answers_per_cell participants through a set order's whole sequence
        frame["target"] = (frame.pop("sequence").fillna(frame.pop("cells")) * self.built.config.answers_per_cell
                           ).astype(int)
        return frame
