"""Questions a study asks in its own words: the end questionnaire, and a task's scored questions (a utility
task's "What does the model rely on?", LIME's insight question).

Both are written the same way in a config (`key`, `label`, `options`, and `label_<lang>` / `options_<lang>`
for other languages, `study.protocol.languages`); a scored question also names its right `answer`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from study.protocol import languages as _languages


@dataclass(frozen=True)
class QuestionItem:
    """One question; `options=None` asks for free text; `answer`, when given, is the right option."""
    key: str
    label: str
    options: list[str] | None = None
    # Other languages' wording (study.protocol.languages): {lang: label}, {lang: option labels}.
    labels: dict[str, str] = field(default_factory=dict, compare=False)
    option_labels: dict[str, list[str]] = field(default_factory=dict, compare=False)
    answer: str | None = None

    def label_in(self, language: str) -> str:
        return self.labels.get(language, self.label)

    def options_in(self, language: str) -> list[tuple[str, str]]:
        """(value stored, label shown) per option: values are the default language's options."""
        return list(zip(self.options or [], self.option_labels.get(language, self.options or [])))


def parse_questions(check, raw: Any, path: tuple, languages: tuple[str, ...], *, scored: bool = False,
                    table: str = "questionnaire") -> list[QuestionItem]:
    """The `[[<table>]]` items at `path`, through the config validator `check` (errors name the key and
    line); `scored` items are choices that must name their `answer` among their options."""
    if not isinstance(raw, list):
        raise check.fail(path, f"must be an array of tables ([[{table}]])")
    items, seen = [], set()
    for i, item in enumerate(raw):
        where = path + (i,)
        required = {"key", "label"} | ({"options", "answer"} if scored else set())
        check.table(item, where, {"key", "label", "options"} | _languages.question_keys(languages)
                    | ({"answer"} if scored else set()), required)
        key = check.typed(item, where, "key", str)
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key) or key in seen:
            raise check.fail(where + ("key",), f"must be a unique identifier, got {key!r}")
        seen.add(key)
        options = check.strings(item, where, "options") if "options" in item else None
        answer = check.typed(item, where, "answer", str)
        if scored and answer not in options:
            raise check.fail(where + ("answer",), f"must be one of the options {list(options)}, got {answer!r}")
        labels, option_labels = _languages.question_wording(check, item, where, languages, options)
        items.append(QuestionItem(key=key, label=check.typed(item, where, "label", str),
                                  options=list(options) if options else None, labels=labels,
                                  option_labels=option_labels, answer=answer))
    return items
