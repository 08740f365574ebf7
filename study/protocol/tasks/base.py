"""What every task type shares: units, conditions, map requests, and the plugin interface.

A task type turns images into *units* (what one trial shows: an image and the class it is
about) and the task's config into *conditions* (method, method pair, models, ...). Every
unit x condition pair is a cell; `study.protocol.plans` decides which cells a participant sees. The
build renders the maps a cell needs (`maps`) and stores a `TrialSpec` per trial; the survey
shows and scores trials from that spec alone.

A task type owns everything about itself: its config options (an `options_type` dataclass, read by
`parse_options`), whether it can host attention checks, how its trials are made,
its answer vocabulary, its measures for the analysis and its codebook text. The rest of camstudy
looks these up in `study.protocol.tasks.TASKS`.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, NamedTuple

from study.protocol.messages import DEFAULT_LANGUAGE, Say, speaker
from study.protocol.tasks.spec import Option, TrialSpec

if TYPE_CHECKING:
    import random

# The explainer names of DESIGN.md, which a task's `methods` may name. Kept here so that reading a config
# (the survey does it on every start) does not import torch; tests/test_config.py checks it against
# study.explainers.METHODS so the two cannot drift apart.
KNOWN_METHODS = frozenset({
    "cam", "gradcam", "gradcam++", "scorecam", "ablationcam", "guided_backprop",
    "guided_gradcam", "guided_ablationcam", "rise", "lime", "random", "abn",
})
CONFIDENCE_POINTS = (4, 5)       # the confidence scales of the HIVE tasks (labels: study.protocol.messages)
ENGLISH: Say = speaker(DEFAULT_LANGUAGE)


def confidence_options(points: int, say: Say) -> tuple[Option, ...]:
    """The `points`-point confidence scale in `say`'s language; () when none is asked (0)."""
    return tuple((str(k), say(f"confidence.{points}.{k}")) for k in range(1, points + 1)) if points else ()


@dataclass(frozen=True)
class NoOptions:
    """The options of a task type that has none beyond every task's."""


@dataclass(frozen=True)
class TaskConfig:
    """One `[[tasks]]` table: what every task has, and its type's own options (`options`, an instance of the
    type's `options_type`). Adding a task type therefore never touches the config module."""
    type: str
    methods: tuple[str, ...]
    model: str                             # the classifier its maps explain (trust: the first of its two)
    trials: int | None = None              # per participant; None = one per image
    images: str | None = None              # the task's own image set; None = the study's
    design: str = "within"                 # "within": every participant sees every method (Latin square);
                                           # "between": each participant sees only their condition's method
    options: Any = NoOptions()


@dataclass(frozen=True)
class Unit:
    """What one trial is about: an image item (`study.images.ImageItem`, or None for a question without
    an image) and its classes."""
    item: Any
    classes: tuple[int, ...]      # class(es) the trial's maps explain, in canonical order
    answer: int | None = None     # distinction: the right class; agreement: 1/0 prediction right
    phase: str = ""               # utility: "learn", "test" or "question"
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)   # a task's own facts about it

    @property
    def image_id(self) -> str:
        """The image's id; a unit without an image may name itself in `extra["id"]` (a question)."""
        return self.item.image_id if self.item is not None else self.extra.get("id", "")


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

    def batch_key(self) -> tuple:
        """Requests with equal keys go through the explainer as one batch."""
        return ("maps", self.model, self.method, self.joint, len(self.targets))

    def name_parts(self) -> tuple[str, ...]:
        """What sets this picture apart from others of the same image, model, method and target."""
        return ("joint-" + "-".join(map(str, self.targets)),) if self.joint else ()

    def meta(self) -> dict[str, Any]:
        return {"targets": list(self.targets), "joint": self.joint}


@dataclass(frozen=True)
class ExampleRequest:
    """One picture (the examples task): the image beside the `k` training images of `train_images` that
    most helped the model predict `targets[0]`, by `method` ("influence" with the head's weight decay
    `l2`, or "similarity")."""
    image_id: str
    model: str
    method: str
    targets: tuple[int]
    train_images: str
    k: int
    l2: float

    def batch_key(self) -> tuple:
        return ("examples", self.model, self.method, self.train_images, self.k, self.l2)

    def name_parts(self) -> tuple[str, ...]:
        return (f"k{self.k}", f"l2-{self.l2:g}", self.train_images)

    def meta(self) -> dict[str, Any]:
        return {"targets": list(self.targets), "train_images": self.train_images, "k": self.k, "l2": self.l2}


class Measure(NamedTuple):
    """How a task's answers enter the analysis: the response column, the measure's name and its
    level of measurement (Krippendorff's alpha). `correct` is a proportion (Wilson interval); the
    other columns are means (bootstrap over participants)."""
    column: str
    name: str
    level: str


@dataclass(frozen=True)
class PhotoRequest:
    """The photo itself, at the stimuli's display size (a utility task's test phase shows no map).
    It is about no model, method or class: one picture (`targets` holds one None)."""
    image_id: str
    model: str = ""
    method: str = "photo"
    targets: tuple[None] = (None,)

    def batch_key(self) -> tuple:
        return ("photo",)

    def name_parts(self) -> tuple[str, ...]:
        return ()

    def meta(self) -> dict[str, Any]:
        return {"photo": True}


Predictions = dict[str, dict[str, list[tuple[int, float]]]]   # model -> image_id -> top-5


@dataclass(frozen=True)
class UnitContext:
    """What the build knows when a task makes its units: the models' top-5 `predictions`, their class
    names (`categories`), `class_scores(model, items, classes)` (each image's logits of `classes`, for
    decisions among a few classes), `combine` (two images side by side) and a seeded `rng`."""
    predictions: Predictions
    categories: Mapping[str, Sequence[str]]
    class_scores: Callable[[str, Sequence, Sequence[int]], dict[str, list[float]]]
    combine: Callable
    rng: random.Random


class TaskType:
    """Base task: one map of the unit's class per trial, under each configured method."""
    name = ""
    options_type: type = NoOptions              # a frozen dataclass: the type's own config keys and defaults
    takes_model = True                          # reads the `model` key (trust names its two in `models`)
    method_names: frozenset[str] | None = None  # what `methods` may name (None: the explainers)
    default_methods: tuple[str, ...] | None = None   # `methods` when the task names none (None: the study's)
    hosts_attention_checks = False              # can a trial be turned into an instructed-response check
    hosts_practice = True                       # can a practice trial take this task's form
    between_subjects = True                     # can each participant see one method only (design = "between")
    within_subjects = True                      # can a participant see every method (design = "within")
    between_only_because = ""                   # why not, where it cannot (the config error says it)
    illustrates_instructions = True             # may the instructions' example map be one of its images
    measures: tuple[Measure, ...] = ()
    codebook = ""                               # what `response` holds for this task (codebook.csv)

    @property
    def option_keys(self) -> frozenset[str]:
        """Config keys beyond every task's (type, methods, trials, images, design)."""
        return frozenset(f.name for f in fields(self.options_type)) | ({"model"} if self.takes_model else set())

    def parse_options(self, check, raw: dict, path: tuple, methods: tuple[str, ...], models: tuple[str, ...]):
        """The task's `options_type` from its own config keys; `check` is the config validator (its
        `typed`, `count`, `strings`, `image_set` and `fail` give errors that name the key and line)."""
        return self.options_type()

    def methods_of(self, methods: tuple[str, ...]) -> tuple[str, ...]:
        """The task's methods from its `methods` key (utility: the control "none" is always among them)."""
        return methods

    def task_model(self, options, model: str) -> str:
        """The model a task's maps explain: the `model` key's (trust: the first of its `models`)."""
        return model

    def models(self, task: TaskConfig) -> tuple[str, ...]:
        """Every model whose predictions the task's units need."""
        return (task.model,)

    def conditions(self, task: TaskConfig) -> list[Condition]:
        return [Condition(method=m, model=task.model) for m in task.methods]

    def units(self, task: TaskConfig, items: Sequence, ctx: UnitContext) -> list[Unit]:
        return [Unit(item, (item.labels[0],)) for item in labelled(items)]

    def maps(self, task: TaskConfig, unit: Unit, cond: Condition) -> list[MapRequest | ExampleRequest | PhotoRequest]:
        """The pictures a trial shows, in order."""
        return [MapRequest(unit.item.image_id, cond.model, cond.method, (self.target(unit, cond),))]

    def target(self, unit: Unit, cond: Condition) -> int | None:
        return unit.classes[cond.which]

    def layout(self, task: TaskConfig, units: Sequence[Unit]) -> dict[str, Any]:
        """What a participant's plan needs of the built task beyond its cells (stored with the study)."""
        return {}

    def order(self, task: TaskConfig, layout: Mapping[str, Any], seed: str):
        """None: a participant's cells of this task come from the Latin square and are shuffled
        (`study.protocol.plans`). A task whose trials must come in a set order returns
        `order(rank, condition) -> [(cell index, display extras)]`: the cells of the `rank`-th
        participant of `condition`, in the order shown, each with facts to keep in its plan row.
        `seed` is this task's own (the study's seed and the task's position: two such tasks differ)."""
        return None

    def spec(self, task: TaskConfig, unit: Unit, cond: Condition, names: Sequence[str],
             say: Say = ENGLISH) -> TrialSpec:
        """The trial's spec; `stimuli` is filled in by the build once the maps are stored.

        `names` are the class names and `say` the catalogue (study.protocol.messages) of one language: the
        build calls this once per language of the study, and the specs must differ only in their
        wording (same options, answer and order), so that every language is scored alike."""
        raise NotImplementedError

    def shown_methods(self, method: str, method_b: str | None, display: dict[str, Any]) -> tuple[str, str | None]:
        """(method, method_b) as the participant saw them (compare: left, then right)."""
        return method, method_b


def labelled(items: Sequence) -> list:
    """Images with at least one known class: the only ones a trial can be about or score."""
    return [i for i in items if i.labels]


def confidence_points(check, raw: dict, path: tuple) -> int:
    """The `confidence_points` key of the HIVE tasks: a 4- or 5-point scale, or 0 (not asked)."""
    points = check.typed(raw, path, "confidence_points", int, 4)
    if points not in (0, *CONFIDENCE_POINTS):
        raise check.fail(path + ("confidence_points",), f"must be 4 or 5 (or 0: not asked), got {points}")
    return points
