"""HIVE: maps of the model's top-k classes, scaled jointly; which is the right class?"""
from __future__ import annotations

from study.protocol.tasks.base import (ENGLISH, MapRequest, Measure, TaskType, Unit, confidence_options, confidence_points,
                              labelled)
from study.protocol.tasks.spec import TrialSpec


class Distinction(TaskType):
    name = "distinction"
    option_keys = TaskType.option_keys | {"top_k", "confidence_points"}
    measures = (Measure("correct", "accuracy", "nominal"), Measure("confidence", "confidence", "ordinal"))
    codebook = "a class index"

    def parse_options(self, check, raw, path, methods, models):
        return {"top_k": check.count(raw, path, "top_k", 4, low=2),
                "confidence_points": confidence_points(check, raw, path)}

    def units(self, task, items, predictions, combine, rng):
        units = []
        for item in labelled(items):
            top = [c for c, _ in predictions[task.model][item.image_id][: task.top_k]]
            right = next((c for c in item.labels if c in top), None)
            if right is not None and len(top) == task.top_k:
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
                         confidence_options=confidence_options(task.confidence_points, say),
                         feedback_md=say("task.distinction.feedback", name=names[unit.answer]))
