"""One map: how well does it highlight the class? (1-5 Likert)"""
from __future__ import annotations

from study.tasks.base import NO_RIGHT_ANSWER, Measure, TaskType
from study.tasks.spec import TrialSpec

LIKERT = (("1", "1 - not at all"), ("2", "2"), ("3", "3"), ("4", "4"), ("5", "5 - very well"))


class Rating(TaskType):
    name = "rating"
    hosts_attention_checks = True
    measures = (Measure("rating", "rating", "ordinal"),)
    codebook = "1-5"

    def spec(self, task, unit, cond, names):
        name = names[unit.classes[0]]
        return TrialSpec(f"How well does this map highlight the **{name}**?", LIKERT,
                         scale="likert", feedback_md=NO_RIGHT_ANSWER)
