"""HIVE: the model's prediction and its map; is the prediction correct?"""
from __future__ import annotations

from dataclasses import dataclass

from study.protocol.tasks.base import ENGLISH, Measure, TaskType, Unit, confidence_options, confidence_points, labelled
from study.protocol.tasks.spec import TrialSpec


@dataclass(frozen=True)
class AgreementOptions:
    confidence_points: int = 4    # 4 or 5 (0: not asked)


class Agreement(TaskType):
    name = "agreement"
    options_type = AgreementOptions
    hosts_attention_checks = True
    measures = (Measure("correct", "accuracy", "nominal"), Measure("confidence", "confidence", "ordinal"))
    codebook = "yes/no"

    def parse_options(self, check, raw, path, methods, models):
        return AgreementOptions(confidence_points(check, raw, path))

    def units(self, task, items, ctx):
        units = []
        for item in labelled(items):
            top = ctx.predictions[task.model][item.image_id][0][0]
            units.append(Unit(item, (top,), answer=int(top in item.labels)))
        return units

    def spec(self, task, unit, cond, names, say=ENGLISH):
        answer = "yes" if unit.answer else "no"
        return TrialSpec(say("task.agreement.prompt", name=names[unit.classes[0]]),
                         (("yes", say("task.agreement.yes")), ("no", say("task.agreement.no"))), answer=answer,
                         confidence_options=confidence_options(task.options.confidence_points, say),
                         feedback_md=say("task.agreement.was_right" if unit.answer else "task.agreement.was_wrong"))
