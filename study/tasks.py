"""The six task types: which images and conditions make their trials, how a trial is shown,
how its answer is scored.

A task type turns images into *units* (what one trial shows: an image and the class it is
about) and the task's config into *conditions* (method, method pair, models, ...). Every
unit x condition pair is a cell; `study.plans` decides which cells a participant sees. The
build renders the maps a cell needs (`maps`) and stores a JSON `spec` per trial; the survey
uses `view` and `score` on that spec, so showing and scoring never need torch.

Spec keys: prompt_md, stimuli (stimulus ids, canonical order), captions, options ([value,
label] pairs), linked (leading options that travel with the stimuli when those are shuffled),
position_labels (labels by display position, e.g. Left/Right), fixed_tail (trailing options
never shuffled), shuffle_stimuli, shuffle_options, confidence_options, answer (the right
value or None), scale ("likert" | "trust" | None), feedback_md.
"""
from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from study.config import TaskConfig

LIKERT = [("1", "1 - not at all"), ("2", "2"), ("3", "3"), ("4", "4"), ("5", "5 - very well")]
TRUST = [("-2", "Left is much more reliable"), ("-1", "Left is a little more reliable"),
         ("0", "Equally reliable"), ("1", "Right is a little more reliable"),
         ("2", "Right is much more reliable")]
CONFIDENCE = {
    4: [("1", "Not confident"), ("2", "Somewhat confident"), ("3", "Fairly confident"), ("4", "Very confident")],
    5: [("1", "Not at all confident"), ("2", "Slightly confident"), ("3", "Moderately confident"),
        ("4", "Quite confident"), ("5", "Completely confident")],
}
NEITHER = "both_or_neither"


@dataclass(frozen=True)
class Unit:
    """What one trial is about: an image item (`study.images.ImageItem`) and its classes."""
    item: Any
    classes: tuple[int, ...]      # class(es) the trial's maps explain, in canonical order
    answer: int | None = None     # distinction: the right class; agreement: 1/0 prediction right


@dataclass(frozen=True)
class Condition:
    """What varies between cells of one unit."""
    method: str
    model: str
    method_b: str | None = None
    model_b: str | None = None
    which: int = 0                # class_discrimination: which of the two classes is explained


@dataclass(frozen=True)
class MapRequest:
    """Maps to render: one PNG per target; `joint` scales them together (distinction)."""
    image_id: str
    model: str
    method: str
    targets: tuple[int, ...]
    joint: bool = False


Predictions = dict[str, dict[str, list[tuple[int, float]]]]   # model -> image_id -> top-5


class TaskType:
    """Base task: one map of the unit's class per trial, under each configured method."""
    name = ""

    def conditions(self, task: TaskConfig) -> list[Condition]:
        return [Condition(method=m, model=task.model) for m in task.methods]

    def units(self, task: TaskConfig, items: Sequence, predictions: Predictions,
              combine: Callable, rng: random.Random) -> list[Unit]:
        return [Unit(item, (item.labels[0],)) for item in _labelled(items)]

    def maps(self, unit: Unit, cond: Condition) -> list[MapRequest]:
        return [MapRequest(unit.item.image_id, cond.model, cond.method, (self.target(unit, cond),))]

    def target(self, unit: Unit, cond: Condition) -> int:
        return unit.classes[cond.which]

    def spec(self, task: TaskConfig, unit: Unit, cond: Condition, names: Sequence[str]) -> dict[str, Any]:
        """The trial's spec; `stimuli` is filled in by the build once the maps are stored."""
        raise NotImplementedError


def _labelled(items: Sequence) -> list:
    """Images with at least one known class: the only ones a trial can be about or score."""
    return [i for i in items if i.labels]


def _spec(prompt: str, options, *, answer=None, captions=None, linked=0,
          position_labels=None, fixed_tail=0, shuffle_stimuli=False, shuffle_options=False,
          confidence=(), scale=None, feedback="") -> dict[str, Any]:
    return {
        "prompt_md": prompt, "stimuli": [],
        "captions": list(captions) if captions else None,
        "options": [list(o) for o in options], "linked": linked, "position_labels": position_labels,
        "fixed_tail": fixed_tail, "shuffle_stimuli": shuffle_stimuli, "shuffle_options": shuffle_options,
        "confidence_options": [list(o) for o in confidence], "answer": answer, "scale": scale,
        "feedback_md": feedback,
    }


def _no_right_answer() -> str:
    return "There is no right or wrong answer here: we want your own judgement."


class ClassDiscrimination(TaskType):
    """Grad-CAM 5.1: a two-category image, a map of one category; which one is highlighted?"""
    name = "class_discrimination"

    def conditions(self, task):
        return [Condition(method=m, model=task.model, which=w) for m in task.methods for w in (0, 1)]

    def units(self, task, items, predictions, combine, rng):
        two = [i for i in _labelled(items) if len(set(i.labels)) >= 2 and len(i.boxes) >= 2]
        single = [i for i in _labelled(items) if i not in two]
        pairs = [(a, b) for a, b in itertools.combinations(single, 2) if a.labels[0] != b.labels[0]]
        rng.shuffle(pairs)
        # Prefer pairs that use images evenly, so no photo dominates the composites.
        used: dict[str, int] = {}
        chosen = []
        for _ in range(min(task.composites, len(pairs))):
            best = min(pairs, key=lambda p: used.get(p[0].image_id, 0) + used.get(p[1].image_id, 0))
            pairs.remove(best)
            chosen.append(best)
            for item in best:
                used[item.image_id] = used.get(item.image_id, 0) + 1
        units = two + [combine(a, b) for a, b in chosen]
        return [Unit(u, (u.labels[0], next(c for c in u.labels if c != u.labels[0]))) for u in units]

    def spec(self, task, unit, cond, names):
        a, b = unit.classes
        target = unit.classes[cond.which]
        options = [(str(a), names[a]), (str(b), names[b]), (NEITHER, "Both or neither")]
        return _spec(
            f"The picture contains **{names[a]}** and **{names[b]}**. "
            "Which of the two is highlighted by the explanation?",
            options, answer=str(target), fixed_tail=1, shuffle_options=True,
            feedback=f"The explanation was made for **{names[target]}**.")


class Compare(TaskType):
    """Ablation-CAM 6.3: two methods' maps of one image side by side; which is better?"""
    name = "compare"

    def conditions(self, task):
        return [Condition(method=a, method_b=b, model=task.model) for a, b in task.pairs]

    def maps(self, unit, cond):
        return [MapRequest(unit.item.image_id, cond.model, m, unit.classes) for m in (cond.method, cond.method_b)]

    def spec(self, task, unit, cond, names):
        name = names[unit.classes[0]]
        options = [(cond.method, "Left"), (cond.method_b, "Right"), ("same", "About the same")]
        return _spec(f"Which map highlights the **{name}** best?", options, linked=2,
                     position_labels=["Left", "Right"], fixed_tail=1, shuffle_stimuli=True,
                     captions=["Left", "Right"], feedback=_no_right_answer())


class Rating(TaskType):
    """One map, 1-5 Likert."""
    name = "rating"

    def spec(self, task, unit, cond, names):
        name = names[unit.classes[0]]
        return _spec(f"How well does this map highlight the **{name}**?", LIKERT,
                     scale="likert", feedback=_no_right_answer())


class Trust(TaskType):
    """Grad-CAM 5.3: two models' maps of an image both classify correctly; which is more reliable?"""
    name = "trust"

    def conditions(self, task):
        a, b = task.models
        return [Condition(method=m, model=a, model_b=b) for m in task.methods]

    def units(self, task, items, predictions, combine, rng):
        a, b = task.models
        units = []
        for item in _labelled(items):
            top_a, top_b = predictions[a][item.image_id][0][0], predictions[b][item.image_id][0][0]
            if top_a == top_b and top_a in item.labels:
                units.append(Unit(item, (top_a,)))
        return units

    def maps(self, unit, cond):
        return [MapRequest(unit.item.image_id, model, cond.method, unit.classes) for model in (cond.model, cond.model_b)]

    def spec(self, task, unit, cond, names):
        name = names[unit.classes[0]]
        return _spec(f"Both models classify this image as **{name}**. Based on the explanations, "
                     "which model seems more reliable?", TRUST, captions=["Left", "Right"],
                     shuffle_stimuli=True, scale="trust", feedback=_no_right_answer())


class Distinction(TaskType):
    """HIVE: maps of the model's top-k classes, scaled jointly; which is the right class?"""
    name = "distinction"

    def units(self, task, items, predictions, combine, rng):
        units = []
        for item in _labelled(items):
            top = [c for c, _ in predictions[task.model][item.image_id][: task.top_k]]
            right = next((c for c in item.labels if c in top), None)
            if right is not None and len(top) == task.top_k:
                units.append(Unit(item, tuple(top), answer=right))
        return units

    def maps(self, unit, cond):
        return [MapRequest(unit.item.image_id, cond.model, cond.method, unit.classes, joint=True)]

    def target(self, unit, cond):
        return unit.answer

    def spec(self, task, unit, cond, names):
        options = [(str(c), names[c]) for c in unit.classes]
        return _spec("These are the explanations for the model's most likely classes. "
                     "Which one is the correct class for the image?", options,
                     captions=[names[c] for c in unit.classes], linked=len(options),
                     shuffle_stimuli=True, answer=str(unit.answer),
                     confidence=CONFIDENCE.get(task.confidence_points, ()),
                     feedback=f"The image shows **{names[unit.answer]}**.")


class Agreement(TaskType):
    """HIVE: the model's prediction and its map; is the prediction correct?"""
    name = "agreement"

    def units(self, task, items, predictions, combine, rng):
        units = []
        for item in _labelled(items):
            top = predictions[task.model][item.image_id][0][0]
            units.append(Unit(item, (top,), answer=int(top in item.labels)))
        return units

    def spec(self, task, unit, cond, names):
        name = names[unit.classes[0]]
        answer = "yes" if unit.answer else "no"
        return _spec(f"The model predicts **{name}**. Looking at the explanation, is the prediction correct?",
                     [("yes", "Yes, it is correct"), ("no", "No, it is wrong")], answer=answer,
                     confidence=CONFIDENCE.get(task.confidence_points, ()),
                     feedback=f"The prediction was {'correct' if unit.answer else 'wrong'}.")


TASKS: dict[str, TaskType] = {t.name: t for t in (ClassDiscrimination(), Compare(), Rating(), Trust(),
                                                    Distinction(), Agreement())}


def attention_spec(spec: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """The same trial turned into an instructed-response check with a known right answer."""
    value, label = rng.choice(spec["options"])
    return {**spec, "answer": value, "scale": None,
            "prompt_md": f"This question checks attention: please choose **{label}**, whatever the picture shows.",
            "feedback_md": f"The instruction asked for **{label}**."}


def randomise(spec: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """A participant's display of a trial: stimulus order and option order."""
    order = list(range(len(spec["stimuli"])))
    if spec["shuffle_stimuli"]:
        rng.shuffle(order)
    n_options = len(spec["options"])
    head = list(range(n_options - spec["fixed_tail"]))
    if spec["linked"]:
        head = order[: spec["linked"]] + head[spec["linked"]:]
    elif spec["shuffle_options"]:
        rng.shuffle(head)
    return {"order": order, "options": head + list(range(n_options - spec["fixed_tail"], n_options))}


def view(spec: dict[str, Any], display: dict[str, Any]) -> tuple[list[int], list[str], list[tuple[str, str]]]:
    """Stimulus ids, captions and (value, label) options in display order."""
    order = display["order"]
    stimuli = [spec["stimuli"][i] for i in order]
    if spec["position_labels"]:
        captions = list(spec["position_labels"])
    else:
        captions = [spec["captions"][i] if spec["captions"] else "" for i in order]
    options = []
    for position, index in enumerate(display["options"]):
        value, label = spec["options"][index]
        if spec["position_labels"] and position < spec["linked"]:
            label = spec["position_labels"][position]
        options.append((value, label))
    return stimuli, captions, options


def score(spec: dict[str, Any], display: dict[str, Any], response: str) -> tuple[bool | None, int | None]:
    """(correct, rating) of a response; `rating` on trust is + when the trial's `model` wins."""
    correct = None if spec["answer"] is None else response == spec["answer"]
    if spec["scale"] == "likert":
        return correct, int(response)
    if spec["scale"] == "trust":
        model_a_on_left = display["order"][0] == 0
        return correct, -int(response) if model_a_on_left else int(response)
    return correct, None
