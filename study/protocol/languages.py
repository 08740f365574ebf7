"""A study's languages: which it has, and the config's wording and class names in each.

`[text]` holds the default language's texts (English unless the config's `language` names
another); every `[text.<lang>]` adds a language, with the same keys. Questionnaire items give
their wording per language as `label_<lang>` and `options_<lang>` beside `label` and `options`
(answers are stored as the default language's option, whatever language was shown). Class
names may be given per language in a CSV (`class_names = { de = "classes_de.csv" }`: rows of
`index,name`); classes it leaves out keep the model's names.

A language must be complete: a missing text, label or option list is a config error naming
the language and the key, so a study cannot be built that would show a participant a blank or
a sentence in another language. A language must also be one the survey's own strings are
translated into (`study.protocol.messages.LANGUAGES`).

The functions take the config validator (`check`: its `typed`, `table` and `fail` name the key
and line in errors) and return plain values; `study.protocol.config` makes its dataclasses from them.
"""
from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from study.protocol.messages import DEFAULT_LANGUAGE, LANGUAGES

TEXT_KEYS = ("consent_md", "instructions_md", "debrief_md")


def _known(check, path: tuple, language: str) -> str:
    if language not in LANGUAGES:
        raise check.fail(path, f"language {language!r} is not one the survey's own strings are translated "
                               f"into (available: {', '.join(LANGUAGES)}; add it to study/messages.py)")
    return language


def texts(check, raw: dict) -> tuple[str, dict[str, dict[str, str]]]:
    """(default language, {language: {text key: markdown}}) from `language` and `[text]`,
    the default first."""
    default = _known(check, ("language",), check.typed(raw, (), "language", str, DEFAULT_LANGUAGE))
    table = raw.get("text")
    if not isinstance(table, dict):
        raise check.fail(("text",), "must be a table")
    by_language = {default: _text(check, {k: v for k, v in table.items() if not isinstance(v, dict)}, ("text",))}
    for language, sub in table.items():
        if isinstance(sub, dict):
            path = ("text", language)
            if language == default:
                raise check.fail(path, f"{language!r} is the default language (`language`): its texts are [text] itself")
            by_language[_known(check, path, language)] = _text(check, sub, path)
    return default, by_language


def _text(check, raw: dict, path: tuple) -> dict[str, str]:
    check.table(raw, path, set(TEXT_KEYS), set(TEXT_KEYS))
    return {key: check.typed(raw, path, key, str) for key in TEXT_KEYS}


def question_keys(languages: Sequence[str]) -> set[str]:
    """A questionnaire item's translated keys: `label_<lang>` and `options_<lang>` per other language."""
    return {f"{kind}_{lang}" for lang in languages[1:] for kind in ("label", "options")}


def question_wording(check, item: dict, path: tuple, languages: Sequence[str],
                     options: Sequence[str] | None) -> tuple[dict[str, str], dict[str, list[str]]]:
    """({language: label}, {language: option labels}) of one questionnaire item, other languages only."""
    labels, option_labels = {}, {}
    for lang in languages[1:]:
        key = f"label_{lang}"
        if key not in item:
            raise check.fail(path, f"missing required key {key!r}: the study has language {lang!r}")
        labels[lang] = check.typed(item, path, key, str)
        key = f"options_{lang}"
        if options is None:
            if key in item:
                raise check.fail(path + (key,), "a free-text item has no options to translate")
            continue
        if key not in item:
            raise check.fail(path, f"missing required key {key!r}: the study has language {lang!r}")
        translated = check.strings(item, path, key)
        if len(translated) != len(options):
            raise check.fail(path + (key,), f"must translate each of the {len(options)} options, got {len(translated)}")
        option_labels[lang] = list(translated)
    return labels, option_labels


def class_name_files(check, raw: dict, languages: Sequence[str], inside) -> dict[str, str]:
    """`class_names`: {language: CSV path inside the study folder}; the files are read by the build."""
    table = raw.get("class_names", {})
    check.table(table, ("class_names",), set(languages))
    files = {}
    for lang in table:
        relative = check.typed(table, ("class_names",), lang, str)
        try:
            inside(relative)
        except ValueError as err:
            raise check.fail(("class_names", lang), str(err)) from None
        files[lang] = relative
    return files


def read_class_names(path: Path) -> dict[int, str]:
    """{class index: name} from a CSV of `index,name` rows (a header row is allowed)."""
    names: dict[int, str] = {}
    with open(path, newline="", encoding="utf-8-sig") as handle:
        for number, row in enumerate(csv.reader(handle), start=1):
            if not row or not "".join(row).strip():
                continue
            if len(row) != 2:
                raise ValueError(f"{path}, line {number}: expected 'index,name', got {row!r}")
            index, name = row[0].strip(), row[1].strip()
            if not index.isdigit():
                if number == 1:      # a header
                    continue
                raise ValueError(f"{path}, line {number}: class index must be a whole number, got {index!r}")
            if not name or int(index) in names:
                raise ValueError(f"{path}, line {number}: class {index} needs one non-empty name")
            names[int(index)] = name
    return names


def names_in(categories: Sequence[str], overrides: dict[int, str]) -> list[str]:
    """The model's class names with a language's names put in where it gives them."""
    return [overrides.get(i, name) for i, name in enumerate(categories)]
