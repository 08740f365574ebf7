"""Example-based explanations shown to people (Koh & Liang 2017; HIVE's example-based condition).

The image beside the training images that most helped the model's prediction, with their labels:
"Which class will the model predict?" among the prediction and the model's next most likely classes.
Correct when the answer is the model's prediction, right or wrong, so the measure is how well the
examples let people simulate the model. The examples come from `study.explainers.influence.influence` on the
model's last linear layer ("influence") or from feature similarity ("similarity"); these are the
task's methods, so the two can be compared within or between participants like explainers.
"""
from __future__ import annotations

from dataclasses import dataclass

from study.protocol.tasks.base import (ENGLISH, ExampleRequest, Measure, TaskType, Unit, confidence_options,
                                       confidence_points, labelled)
from study.protocol.tasks.spec import TrialSpec

EXAMPLE_METHODS = ("influence", "similarity")   # study.explainers.influence.EXAMPLE_METHODS, without importing torch
MAX_EXAMPLES = 8


@dataclass(frozen=True)
class ExamplesOptions:
    train_images: str             # the model's training set (required: influence is about it)
    k: int = 4                    # training images shown
    choices: int = 4              # classes to choose from: the prediction and the next most likely
    l2: float = 1e-4              # the weight decay the model's last layer was trained with
    confidence_points: int = 4    # 4 or 5 (0: not asked)


class Examples(TaskType):
    name = "examples"
    options_type = ExamplesOptions
    method_names = frozenset(EXAMPLE_METHODS)
    default_methods = ("influence",)
    hosts_attention_checks = True
    measures = (Measure("correct", "accuracy", "nominal"), Measure("confidence", "confidence", "ordinal"))
    codebook = "a class index: the class the participant expects the model to predict"

    def parse_options(self, check, raw, path, methods, models):
        """`train_images` is required: influence is only about the set the model was trained on."""
        k = check.count(raw, path, "k", 4, low=1)
        if k > MAX_EXAMPLES:
            raise check.fail(path + ("k",), f"must be at most {MAX_EXAMPLES} (one row of pictures), got {k}")
        choices = check.count(raw, path, "choices", 4, low=2)
        if choices > 4:
            raise check.fail(path + ("choices",), f"must be 2, 3 or 4 (the prediction and up to 3 others), got {choices}")
        l2 = check.typed(raw, path, "l2", float, 1e-4)
        if not l2 > 0:
            raise check.fail(path + ("l2",), f"must be > 0 (the weight decay the model's last layer was trained "
                                             f"with), got {l2}")
        train = check.image_set(raw, path, "train_images")
        if train is None:
            raise check.fail(path, "missing required key 'train_images' (the model's training set: 'digits:train', "
                                   "'digits' or a folder of class folders)")
        return ExamplesOptions(train, k, choices, l2, confidence_points(check, raw, path))

    def units(self, task, items, ctx):
        """Every labelled image; its classes are the model's top `choices`, the prediction first."""
        units = []
        for item in labelled(items):
            top = tuple(c for c, _ in ctx.predictions[task.model][item.image_id][: task.options.choices])
            if len(top) == task.options.choices:
                units.append(Unit(item, top, answer=top[0]))
        return units

    def maps(self, task, unit, cond):
        return [ExampleRequest(unit.item.image_id, cond.model, cond.method, (unit.answer,), task.options.train_images,
                               task.options.k, task.options.l2)]

    def target(self, unit, cond):
        return unit.answer

    def spec(self, task, unit, cond, names, say=ENGLISH):
        options = tuple((str(c), names[c]) for c in unit.classes)
        return TrialSpec(
            say("task.examples.prompt", k=task.options.k), options, captions=(say("task.examples.caption", k=task.options.k),),
            shuffle_options=True, answer=str(unit.answer),
            confidence_options=confidence_options(task.options.confidence_points, say),
            feedback_md=say("task.examples.predicted", name=names[unit.answer]))
