"""One map: how well does it highlight the class? (1-5 Likert)"""
from __future__ import annotations

from study.protocol.tasks.base import ENGLISH, Measure, TaskType
from study.protocol.tasks.spec import TrialSpec


class Rating(TaskType):
    name = "rating"
    hosts_attention_checks = True
    measures = (Measure("rating", "rating", "ordinal"),)
    codebook = "1-5"

    def spec(self, task, unit, cond, names, say=ENGLISH):
        likert = (("1", say("task.rating.lowest")), ("2", "2"), ("3", "3"), ("4", "4"),
                  ("5", say("task.rating.highest")))
        return TrialSpec(say("task.rating.prompt", name=names[unit.classes[0]]), likert,
                         scale="likert", feedback_md=say("task.no_right_answer"))
