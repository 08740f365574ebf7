"""A trial's spec: what the survey shows and how an answer is read, frozen and stored as JSON.

The build makes one `TrialSpec` per trial template (the task plugins write them) and stores it
as JSON; the survey shows and scores trials from it alone, so showing and scoring never need
torch, the config or the task plugins.
"""
from __future__ import annotations

import random
from dataclasses import asdict, dataclass, replace
from typing import Any

from study.protocol.messages import DEFAULT_LANGUAGE, Say, speaker

Option = tuple[str, str]     # (value stored, label shown)


@dataclass(frozen=True)
class TrialSpec:
    """One trial as the task made it, in canonical (unshuffled) order.

    `linked`: leading options that travel with the stimuli when those are shuffled (compare's
    Left/Right, distinction's classes); `position_labels`: labels by display position;
    `fixed_tail`: trailing options never shuffled ("same", "both or neither"); `answer`: the
    right value or None; `scale`: how a response is read as a number ("likert", "trust" or None).
    No `options`: the participant studies the screen and goes on (the answer is stored as "").
    `feedback_md` is shown once a practice answer is stored.
    """
    prompt_md: str
    options: tuple[Option, ...]
    stimuli: tuple[int, ...] = ()
    captions: tuple[str, ...] | None = None
    linked: int = 0
    position_labels: tuple[str, ...] | None = None
    fixed_tail: int = 0
    shuffle_stimuli: bool = False
    shuffle_options: bool = False
    confidence_options: tuple[Option, ...] = ()
    answer: str | None = None
    scale: str | None = None
    feedback_md: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrialSpec:
        """The spec from its stored JSON (lists back to tuples)."""
        fields = dict(data)
        for key in ("options", "confidence_options"):
            fields[key] = tuple(tuple(o) for o in fields.get(key) or ())
        for key in ("stimuli", "captions", "position_labels"):
            if fields.get(key) is not None:
                fields[key] = tuple(fields[key])
        return cls(**fields)

    def with_stimuli(self, ids) -> TrialSpec:
        return replace(self, stimuli=tuple(ids))

    def as_attention_check(self, rng: random.Random, say: Say | None = None) -> TrialSpec:
        """The same trial turned into an instructed-response check with a known right answer,
        worded by `say` (study.protocol.messages; English by default)."""
        say = say or speaker(DEFAULT_LANGUAGE)
        value, label = rng.choice(self.options)
        return replace(self, answer=value, scale=None, prompt_md=say("task.attention.prompt", label=label),
                       feedback_md=say("task.attention.feedback", label=label))

    def randomise(self, rng: random.Random) -> dict[str, Any]:
        """A participant's display of the trial: stimulus order and option order."""
        order = list(range(len(self.stimuli)))
        if self.shuffle_stimuli:
            rng.shuffle(order)
        n_options = len(self.options)
        head = list(range(n_options - self.fixed_tail))
        if self.linked:
            head = order[: self.linked] + head[self.linked:]
        elif self.shuffle_options:
            rng.shuffle(head)
        return {"order": order, "options": head + list(range(n_options - self.fixed_tail, n_options))}

    def view(self, display: dict[str, Any]) -> tuple[list[int], list[str], list[Option]]:
        """Stimulus ids, captions and (value, label) options in display order."""
        order = display["order"]
        stimuli = [self.stimuli[i] for i in order]
        if self.position_labels:
            captions = list(self.position_labels)
        else:
            captions = [self.captions[i] if self.captions else "" for i in order]
        options = []
        for position, index in enumerate(display["options"]):
            value, label = self.options[index]
            if self.position_labels and position < self.linked:
                label = self.position_labels[position]
            options.append((value, label))
        return stimuli, captions, options

    def score(self, display: dict[str, Any], response: str) -> tuple[bool | None, int | None]:
        """(correct, rating) of a response; `rating` on trust is + when the trial's `model` wins."""
        correct = None if self.answer is None else response == self.answer
        if self.scale == "likert":
            return correct, int(response)
        if self.scale == "trust":
            model_a_on_left = display["order"][0] == 0
            return correct, -int(response) if model_a_on_left else int(response)
        return correct, None


def specs_to_json(specs: dict[str, TrialSpec], default: str) -> dict[str, Any]:
    """A trial's specs in every language as one JSON object: the default language's spec as it
    always was, plus `translations` ({language: spec}) when there are other languages. A
    one-language study's rows are therefore exactly what they were before languages existed."""
    data = specs[default].to_json()
    others = {lang: spec.to_json() for lang, spec in specs.items() if lang != default}
    if others:
        data["translations"] = others
    return data


def specs_from_json(data: dict[str, Any], default: str) -> dict[str, TrialSpec]:
    """{language: spec} from `specs_to_json`'s object (a spec stored without translations is the
    default language's only)."""
    data = dict(data)
    others = data.pop("translations", {})
    return {default: TrialSpec.from_json(data), **{lang: TrialSpec.from_json(d) for lang, d in others.items()}}
