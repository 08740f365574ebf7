"""HIVE: the model's prediction and its map; is the prediction correct?"""
from __future__ import annotations

from study.tasks.base import CONFIDENCE, Measure, TaskType, Unit, confidence_points, labelled
from study.tasks.spec import TrialSpec


class Agreement(TaskType):
    name = "agreement"
    option_keys = TaskType.option_keys | {"confidence_points"}
    hosts_attention_checks = True
    measures = (Measure("correct", "accuracy", "nominal"), Measure("confidence", "confidence", "ordinal"))
    codebook = "yes/no"

    def parse_options(self, check, raw, path, methods, models):
        return {"confidence_points": confidence_points(check, raw, path)}

    def units(self, task, items, predictions, combine, rng):
        units = []
        for item in labelled(items):
            top = predictions[task.model][item.image_id][0][0]
            units.append(Unit(item, (top,), answer=int(top in item.labels)))
        return units

    def spec(self, task, unit, cond, names):
        name = names[unit.classes[0]]
        answer = "yes" if unit.answer else "no"
        return TrialSpec(f"The model predicts **{name}**. Looking at the explanation, is the prediction correct?",
                         (("yes", "Yes, it is correct"), ("no", "No, it is wrong")), answer=answer,
                         confidence_options=CONFIDENCE.get(task.confidence_points, ()),
                         feedback_md=f"The prediction was {'correct' if unit.answer else 'wrong'}.")
