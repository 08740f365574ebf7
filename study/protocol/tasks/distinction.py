"""HIVE: maps of the model's top-k classes, scaled jointly; which is the right class?"""
from __future__ import annotations

from dataclasses import dataclass

from study.protocol.tasks.base import (ENGLISH, MapRequest, Measure, TaskType, Unit, confidence_options, confidence_points,
                                       labelled)
from study.protocol.tasks.spec import TrialSpec


@dataclass(frozen=True)
class DistinctionOptions:
    top_k: int = 4                # classes whose maps are shown
    confidence_points: int = 4    # 4 or 5 (0: not asked)


class Distinction(TaskType):
    name = "distinction"
    options_type = DistinctionOptions
    measures = (Measure("correct", "accuracy", "nominal"), Measure("confidence", "confidence", "ordinal"))
    codebook = "a class index"

    def parse_options(self, check, raw, path, methods, models):
        return DistinctionOptions(check.count(raw, path, "top_k", 4, low=2), confidence_points(check, raw, path))

    def units(self, task, items, ctx):
        units = []
        for item in labelled(items):
            top = [c for c, _ in ctx.predictions[task.model][item.image_id][: task.options.top_k]]
            right = next((c for c in item.labels if c in top), None)
            if right is not None and len(top) == task.options.top_k:
                units.append(Unit(item, tuple(top), answer=right))
        return units

    def maps(self, task, unit, cond):
        return [MapRequest(unit.item.image_id, cond.model, cond.method, unit.classes, joint=True)]

    def target(self, unit, cond):
        return unit.answer

    def spec(self, task, unit, cond, names, say=ENGLISH):
        options = tuple((str(c), names[c]) for c in unit.classes)
        return TrialSpec(say("task.distinction.prompt"), options,
                         captions=tuple(names[c] for c in unit.classes), linked=len(options),
                         shuffle_stimuli=True, answer=str(unit.answer),
                         confidence_options=confidence_options(task.options.confidence_points, say),
                         feedback_md=say("task.distinction.feedback", name=names[unit.answer]))
