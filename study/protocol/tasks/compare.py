"""Ablation-CAM 6.3: two methods' maps of one image side by side; which highlights the class best?"""
from __future__ import annotations

from dataclasses import dataclass

from study.protocol.tasks.base import ENGLISH, Condition, MapRequest, TaskType
from study.protocol.tasks.spec import TrialSpec

SAME = "same"


@dataclass(frozen=True)
class CompareOptions:
    pairs: tuple[tuple[str, str], ...] = ()   # method pairs shown side by side (default: every pair)


class Compare(TaskType):
    name = "compare"
    options_type = CompareOptions
    codebook = f"the preferred method's name, or {SAME!r}"
    between_subjects = False      # its trials show two methods to the same person
    # Its measures (share preferred, vote score) come from study.results.analysis.vote_scores.

    def parse_options(self, check, raw, path, methods, models):
        value = check.typed(raw, path, "pairs", list)
        if value is None:
            if len(methods) < 2:
                raise check.fail(path + ("methods",), "compare needs at least two methods")
            return CompareOptions(tuple((a, b) for i, a in enumerate(methods) for b in methods[i + 1:]))
        pairs = []
        for pair in value:
            if (not isinstance(pair, list) or len(pair) != 2 or pair[0] == pair[1]
                    or any(m not in methods for m in pair)):
                raise check.fail(path + ("pairs",), f"each pair must be two different methods of {list(methods)}, got {pair!r}")
            pairs.append((pair[0], pair[1]))
        if not pairs:
            raise check.fail(path + ("pairs",), "must not be empty")
        return CompareOptions(tuple(pairs))

    def conditions(self, task):
        return [Condition(method=a, method_b=b, model=task.model) for a, b in task.options.pairs]

    def maps(self, task, unit, cond):
        return [MapRequest(unit.item.image_id, cond.model, m, unit.classes) for m in (cond.method, cond.method_b)]

    def spec(self, task, unit, cond, names, say=ENGLISH):
        sides = (say("task.left"), say("task.right"))
        options = ((cond.method, sides[0]), (cond.method_b, sides[1]), (SAME, say("task.compare.same")))
        return TrialSpec(say("task.compare.prompt", name=names[unit.classes[0]]), options, linked=2,
                         position_labels=sides, fixed_tail=1, shuffle_stimuli=True,
                         captions=sides, feedback_md=say("task.no_right_answer"))

    def shown_methods(self, method, method_b, display):
        """The stimuli are (method, method_b) in canonical order; `display["order"]` lists which
        of them was shown in each position (TrialSpec.randomise)."""
        if not method_b:
            return method, method_b
        pair = (method, method_b)
        order = (display or {}).get("order", [0, 1])
        return pair[order[0]], pair[order[1]]
