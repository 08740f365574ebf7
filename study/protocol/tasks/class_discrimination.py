"""Grad-CAM 5.1 / Ablation-CAM 6.5: a two-category image and a map of one category; which is it?"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

from study.protocol.tasks.base import ENGLISH, Condition, Measure, TaskType, Unit, labelled
from study.protocol.tasks.spec import TrialSpec

NEITHER = "both_or_neither"


@dataclass(frozen=True)
class ClassDiscriminationOptions:
    composites: int = 8           # two-category composites to make from single-category photos


class ClassDiscrimination(TaskType):
    name = "class_discrimination"
    options_type = ClassDiscriminationOptions
    hosts_attention_checks = True
    measures = (Measure("correct", "accuracy", "nominal"),)
    codebook = f"a class index, or {NEITHER} (counted wrong)"

    def parse_options(self, check, raw, path, methods, models):
        return ClassDiscriminationOptions(check.count(raw, path, "composites", 8))

    def conditions(self, task):
        return [Condition(method=m, model=task.model, which=w) for m in task.methods for w in (0, 1)]

    def units(self, task, items, ctx):
        two = [i for i in labelled(items) if len(set(i.labels)) >= 2 and len(i.boxes) >= 2]
        single = [i for i in labelled(items) if i not in two]
        pairs = [(a, b) for a, b in itertools.combinations(single, 2) if a.labels[0] != b.labels[0]]
        ctx.rng.shuffle(pairs)
        # Prefer pairs that use images evenly, so no photo dominates the composites.
        used: dict[str, int] = {}
        chosen = []
        for _ in range(min(task.options.composites, len(pairs))):
            best = min(pairs, key=lambda p: used.get(p[0].image_id, 0) + used.get(p[1].image_id, 0))
            pairs.remove(best)
            chosen.append(best)
            for item in best:
                used[item.image_id] = used.get(item.image_id, 0) + 1
        units = two + [ctx.combine(a, b) for a, b in chosen]
        return [Unit(u, (u.labels[0], next(c for c in u.labels if c != u.labels[0]))) for u in units]

    def spec(self, task, unit, cond, names, say=ENGLISH):
        a, b = unit.classes
        target = unit.classes[cond.which]
        options = ((str(a), names[a]), (str(b), names[b]), (NEITHER, say("task.class_discrimination.neither")))
        return TrialSpec(
            say("task.class_discrimination.prompt", a=names[a], b=names[b]),
            options, answer=str(target), fixed_tail=1, shuffle_options=True,
            feedback_md=say("task.class_discrimination.feedback", name=names[target]))
