"""Grad-CAM 5.3: two models' maps of an image both classify correctly; which is more reliable?"""
from __future__ import annotations

from dataclasses import dataclass

from study.protocol.tasks.base import ENGLISH, Condition, MapRequest, Measure, TaskType, Unit, labelled
from study.protocol.tasks.spec import TrialSpec

# The -2..+2 scale: each value's message key (study.protocol.messages).
TRUST = (("-2", "left_much"), ("-1", "left_little"), ("0", "equal"), ("1", "right_little"), ("2", "right_much"))


@dataclass(frozen=True)
class TrustOptions:
    models: tuple[str, str]       # the two models whose maps are compared (default: the study's two)


class Trust(TaskType):
    name = "trust"
    options_type = TrustOptions
    takes_model = False
    measures = (Measure("rating", "trust", "interval"),)
    codebook = "-2..2 as shown (negative = left model)"

    def parse_options(self, check, raw, path, methods, models):
        pair = check.strings(raw, path, "models", list(models), allowed=set(models))
        if len(pair) != 2:
            raise check.fail(path + ("models",), "trust compares exactly two models")
        return TrustOptions(pair)

    def task_model(self, options, model):
        return options.models[0]

    def models(self, task):
        return task.options.models

    def conditions(self, task):
        a, b = task.options.models
        return [Condition(method=m, model=a, model_b=b) for m in task.methods]

    def units(self, task, items, ctx):
        a, b = task.options.models
        units = []
        for item in labelled(items):
            top_a, top_b = ctx.predictions[a][item.image_id][0][0], ctx.predictions[b][item.image_id][0][0]
            if top_a == top_b and top_a in item.labels:
                units.append(Unit(item, (top_a,)))
        return units

    def maps(self, task, unit, cond):
        return [MapRequest(unit.item.image_id, model, cond.method, unit.classes) for model in (cond.model, cond.model_b)]

    def spec(self, task, unit, cond, names, say=ENGLISH):
        options = tuple((value, say(f"task.trust.{key}")) for value, key in TRUST)
        return TrialSpec(say("task.trust.prompt", name=names[unit.classes[0]]), options,
                         captions=(say("task.left"), say("task.right")),
                         shuffle_stimuli=True, scale="trust", feedback_md=say("task.no_right_answer"))
