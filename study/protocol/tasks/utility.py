"""Do explanations teach people how the model decides? The utility protocol of Colin, Fel et al. (NeurIPS 2022,
"What I cannot predict, I do not understand"): forward simulation (Hase & Bansal, ACL 2020) after learning.

A participant goes through `rounds` x (a learning phase, then a test phase). A learning trial shows an image,
the model's decision (its class name) and, unless the participant's condition is the control `none`, that
condition's map of the decision; with `learn_guess` a trial of its own comes first, the image alone, on
which they guess the decision (phase `guess`: the reveal that follows is an ordinary learning trial, so
a reload or a server restart cannot skip it and its study time is measured like any other). A test
trial shows only the image and asks which class the model will choose: no map, no feedback. A method's
utility is the relative gain in test accuracy over the control group,

    utility(m) = (acc_m - acc_none) / acc_none,     acc = share of test answers equal to the model's decision,

whether the model was right or not (study.results.analysis.utility_tests). Explanations should matter most
on the model's mistakes, so each phase holds a set share of images the model gets wrong (`model_errors`).

The model's decision is its argmax over the task's `classes` (2-4), computed at build time. The task is
between subjects by nature (maps once seen cannot be unseen). Its images come in a set order
(`order`): for the r-th participant of every condition the same images in the same order, learning and
test images disjoint across all rounds, each phase with round(size * model_errors) model errors and its
decisions spread over the classes as evenly as the set allows; conditions differ only in the maps of
the learning phases. Optional scored questions (`[[tasks.questions]]`, LIME's "insight" question) follow
the last round.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from study.protocol.questions import QuestionItem, parse_questions
from study.protocol.tasks.base import ENGLISH, KNOWN_METHODS, MapRequest, PhotoRequest, TaskType, Unit, labelled
from study.protocol.tasks.spec import TrialSpec

CONTROL = "none"
PHASES = ("learn", "test")
QUESTION_PREFIX = "question:"      # a question trial's image_id: `question:<key>` (it shows no image)


@dataclass(frozen=True)
class UtilityOptions:
    classes: tuple[int | str, ...]        # 2-4 class indices or names: the decisions the scenario is about
    rounds: int = 3
    learn: int = 5                        # images per learning phase
    test: int = 7                         # images per test phase
    model_errors: float = 0.5             # share of each phase on which the model is wrong
    learn_guess: bool = False             # learning trials ask for a guess before they reveal
    questions: tuple[QuestionItem, ...] = ()

    @property
    def unit_phases(self) -> tuple[str, ...]:
        """The phases each image has a unit in, in the order `Utility.units` lists them."""
        return (*PHASES, "guess") if self.learn_guess else PHASES

    def phase_size(self, phase: str) -> int:
        return self.learn if phase == "learn" else self.test

    def errors_in(self, phase: str) -> int:
        """Model errors in one phase: round(size * model_errors), halves rounded up."""
        return int(self.phase_size(phase) * self.model_errors + 0.5)


class Utility(TaskType):
    name = "utility"
    options_type = UtilityOptions
    method_names = KNOWN_METHODS | {CONTROL}
    hosts_practice = False                # a practice trial would show a decision before learning starts
    illustrates_instructions = False      # an example map of its images would be one more learning trial
    within_subjects = False
    between_only_because = ("each participant learns from one condition's maps, and maps once seen cannot be "
                            "unseen; remove design = \"within\" from this task")
    measures = ()                         # phases, rounds and conditions: study.results.utility analyses it
    codebook = ("a class index: the class the participant expects the model to choose (test and guess trials; empty "
                "on learning trials), or a question's option")

    def methods_of(self, methods):
        return tuple(methods) if CONTROL in methods else (*methods, CONTROL)

    def parse_options(self, check, raw, path, methods, models):
        if "trials" in raw:
            raise check.fail(path + ("trials",), "a utility task shows rounds x (learn + test) images; "
                                                 "set rounds, learn and test instead")
        classes = check.typed(raw, path, "classes", list)
        if classes is None:
            raise check.fail(path, "missing required key 'classes' (2-4 class indices or names)")
        if not 2 <= len(classes) <= 4 or len(set(map(str, classes))) != len(classes) or not all(
                (isinstance(c, int) and not isinstance(c, bool) and c >= 0) or (isinstance(c, str) and c)
                for c in classes):
            raise check.fail(path + ("classes",), f"must be 2-4 different class indices or names, got {classes!r}")
        errors = check.typed(raw, path, "model_errors", float, 0.5)
        if not 0.0 <= errors <= 1.0:
            raise check.fail(path + ("model_errors",), f"must be a share between 0 and 1, got {errors}")
        return UtilityOptions(
            classes=tuple(classes), rounds=check.count(raw, path, "rounds", 3, low=1),
            learn=check.count(raw, path, "learn", 5, low=1), test=check.count(raw, path, "test", 7, low=1),
            model_errors=errors, learn_guess=check.typed(raw, path, "learn_guess", bool, False),
            questions=tuple(parse_questions(check, raw.get("questions", []), path + ("questions",), check.languages,
                                            scored=True, table="tasks.questions")))

    # --- units and the plan ---------------------------------------------------------------------

    def units(self, task, items, ctx):
        """Per image of the task's classes, a learning and a test unit (its class: the model's decision) and,
        with `learn_guess`, a guess unit; then one unit per question. Too few images, or too few model errors,
        for the rounds is an error."""
        options = task.options
        classes = resolve_classes(options.classes, ctx.categories[task.model])
        eligible = [item for item in labelled(items) if item.labels[0] in classes]
        scores = ctx.class_scores(task.model, eligible, classes) if eligible else {}
        decided = []
        for item in eligible:
            row = scores[item.image_id]
            decision = classes[max(range(len(classes)), key=row.__getitem__)]
            decided.append((item, decision, decision == item.labels[0]))
        need = {phase: options.rounds * options.phase_size(phase) for phase in PHASES}
        wrong = {phase: options.rounds * options.errors_in(phase) for phase in PHASES}
        n_wrong = sum(not right for _, _, right in decided)
        if len(decided) < sum(need.values()) or n_wrong < sum(wrong.values()) or \
                len(decided) - n_wrong < sum(need.values()) - sum(wrong.values()):
            raise ValueError(
                f"utility task: {options.rounds} rounds of {options.learn} learning and {options.test} test images "
                f"need {sum(need.values())} images of classes {list(options.classes)}, {sum(wrong.values())} of "
                f"them model errors and {sum(need.values()) - sum(wrong.values())} right; the image set gives "
                f"{len(decided)} ({n_wrong} model errors)")
        units = [Unit(item, (decision,), answer=decision, phase=phase, extra={"model_correct": right})
                 for phase in options.unit_phases for item, decision, right in decided]
        return units + [Unit(None, (), phase="question", extra={"question": q, "id": QUESTION_PREFIX + question.key})
                        for q, question in enumerate(options.questions)]

    def layout(self, task, units):
        """The plan needs each image's decision, whether the model was right and the image's true class
        (learning units first)."""
        images = [u for u in units if u.phase == "learn"]
        options = task.options
        learning = options.learn * (2 if options.learn_guess else 1)      # a guess before each learning trial
        return {"per_participant": options.rounds * (learning + options.test) + len(options.questions),
                "decisions": [u.answer for u in images], "model_correct": [u.extra["model_correct"] for u in images],
                "image_classes": [u.item.labels[0] for u in images]}

    def order(self, task, layout, seed):
        """Participant r of any condition gets sequence r (`utility_sequence`), under their condition; with
        `learn_guess`, each learning image's guess comes just before it."""
        options = task.options
        n_images, n_questions = len(layout["decisions"]), len(options.questions)
        n_phases = len(options.unit_phases)
        n_units, n_conditions = n_phases * n_images + n_questions, len(task.methods)
        meta = list(zip(layout["decisions"], layout["model_correct"]))
        truth = layout["image_classes"]
        first_unit = {phase: i * n_images for i, phase in enumerate(options.unit_phases)}

        def cells(rank: int, condition: str | None) -> list[tuple[int, dict]]:
            c = task.methods.index(condition)
            cell = lambda u: ((c - u) % n_conditions) * n_units + u   # inverse of plans.cell
            shown = []
            for rnd, phase, image in utility_sequence(meta, options, random.Random(f"{seed}|utility|{rank}")):
                for step in ("guess", "learn") if phase == "learn" and options.learn_guess else (phase,):
                    shown.append((cell(first_unit[step] + image),
                                  {"phase": step, "round": rnd, "model_correct": meta[image][1],
                                   "image_class": truth[image]}))
            return shown + [(cell(n_phases * n_images + q), {"phase": "question"}) for q in range(n_questions)]

        return cells

    # --- what a trial shows -----------------------------------------------------------------------

    def maps(self, task, unit, cond):
        if unit.phase == "question":
            return []
        if unit.phase != "learn":
            return [PhotoRequest(unit.image_id)]
        # The photo, and beside it the condition's map of the decision (none under the control).
        maps = [MapRequest(unit.image_id, cond.model, cond.method, (unit.answer,))] if cond.method != CONTROL else []
        return [PhotoRequest(unit.image_id), *maps]

    def target(self, unit, cond):
        return unit.answer

    def spec(self, task, unit, cond, names, say=ENGLISH):
        options = task.options
        if unit.phase == "question":
            question = options.questions[unit.extra["question"]]
            language = say.language
            return TrialSpec(question.label_in(language), tuple(question.options_in(language)),
                             answer=question.answer)
        choices = tuple((str(c), names[c]) for c in resolve_classes(options.classes, names))
        name = names[unit.answer]
        explained = cond.method != CONTROL
        captions = (say("task.utility.image"), *((say("task.utility.map"),) if explained else ()))
        told = say("task.utility.chose_map" if explained else "task.utility.chose", name=name)
        if unit.phase in ("test", "guess"):
            return TrialSpec(say(f"task.utility.{unit.phase}"), choices, captions=(say("task.utility.image"),),
                             answer=str(unit.answer))
        return TrialSpec(told + " " + say("task.utility.study"), (), captions=captions)


def resolve_classes(classes, names) -> tuple[int, ...]:
    """The task's classes as indices into the model's class `names` (given as indices or names)."""
    resolved = []
    for c in classes:
        if isinstance(c, int):
            if c >= len(names):
                raise ValueError(f"utility task: class {c} is not a class of the model ({len(names)} classes)")
            resolved.append(c)
        elif c in names:
            resolved.append(list(names).index(c))
        else:
            raise ValueError(f"utility task: {c!r} is not a class name of the model (e.g. {', '.join(names[:5])})")
    return tuple(resolved)


def utility_sequence(images, options: UtilityOptions, rng: random.Random) -> list[tuple[int, str, int]]:
    """One participant's (round, phase, image index) in order, from `images` = [(decision, model right)].

    Each phase takes round(size * model_errors) model errors and the rest from the model's right answers,
    each drawn class by class (the class with fewest in the phase so far, among those with images left) so
    the decisions are as balanced as the set allows; no image is used twice; a phase's order is shuffled.
    """
    pools: dict[tuple[bool, int], list[int]] = {}
    for index, (decision, right) in enumerate(images):
        pools.setdefault((right, decision), []).append(index)
    for pool in pools.values():
        rng.shuffle(pool)
    sequence = []
    for rnd in range(1, options.rounds + 1):
        for phase in PHASES:
            counts: dict[int, int] = {}
            chosen = []
            errors = options.errors_in(phase)
            for right, n in ((False, errors), (True, options.phase_size(phase) - errors)):
                for _ in range(n):
                    open_classes = [d for (r, d), pool in pools.items() if r == right and pool]
                    fewest = min(open_classes, key=lambda d: (counts.get(d, 0), d))
                    chosen.append(pools[(right, fewest)].pop())
                    counts[fewest] = counts.get(fewest, 0) + 1
            rng.shuffle(chosen)
            sequence += [(rnd, phase, image) for image in chosen]
    return sequence
