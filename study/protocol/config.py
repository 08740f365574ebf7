"""Study configs: a TOML file -> a validated, frozen `StudyConfig`.

A config is the whole design of a study, so a mistake in it should stop `camstudy build`
before anything is rendered: every error names the offending key and the line it is on, and
unknown keys are errors (a typo must not silently fall back to a default). Paths in a config
are relative to the folder the config lives in and may not leave it.
"""
from __future__ import annotations

import hashlib
import json
import re
import string
import tomllib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from study.images.specs import parse_image_set, resolve_path
from study.protocol import languages as _languages
from study.protocol.questions import QuestionItem, parse_questions
from study.protocol.tasks import KNOWN_METHODS, TASKS, TaskConfig


CONFIG_FILE = "study.toml"       # a study folder's copy of the config it was built from
DEFAULT_DATABASE = "study.db"


class ConfigError(ValueError):
    """A config that cannot be used; the message names the file, line and key."""


@dataclass(frozen=True)
class TextConfig:
    """Markdown shown to participants at the start and end of the survey."""
    consent_md: str
    instructions_md: str
    debrief_md: str


@dataclass(frozen=True)
class ExclusionConfig:
    """When a participant's data are flagged as excluded in the export."""
    min_rt_ms: int = 300
    max_failed_attention_checks: int = 0


@dataclass(frozen=True)
class StudyConfig:
    """A validated study design. `root` is the folder relative paths are resolved against."""
    name: str
    seed: int
    models: tuple[str, ...]
    images: str
    methods: tuple[str, ...]
    tasks: tuple[TaskConfig, ...]
    text: TextConfig
    questionnaire: list[QuestionItem]
    exclusion: ExclusionConfig
    practice_trials: int = 2
    attention_checks: int = 2
    answers_per_cell: int = 5
    allow_anonymous: bool = False
    allow_browser_change: bool = False     # a consented id may continue in another browser
    signed_links: bool = False             # only ids with a valid signature (camstudy links) enter
    on_withdraw: str = "delete"            # "delete" the answers of who withdraws, or "keep" them flagged
    completion_code: str | None = None
    redirect_url: str | None = None
    database_url: str | None = None
    # --- languages (study.protocol.languages) ---
    language: str = "en"                   # the language of [text] and the questionnaire's labels
    texts: dict[str, TextConfig] = field(default_factory=dict)     # every language, the default first
    class_names: dict[str, str] = field(default_factory=dict)      # language -> CSV in the study folder
    weights: dict[str, str] = field(default_factory=dict)   # model name -> weights file, relative to root
    root: Path = field(default=Path("."), compare=False)
    source: str = field(default="", repr=False, compare=False)
    hash: str = field(default="", compare=False)   # config_hash of the parsed TOML

    @property
    def conditions(self) -> tuple[str, ...]:
        """The between-subject conditions (the methods of the between tasks, which share them), or ()
        for a study whose every task is within subjects."""
        between = [t for t in self.tasks if t.design == "between"]
        return between[0].methods if between else ()

    @property
    def languages(self) -> tuple[str, ...]:
        """The study's languages, the default first."""
        return tuple(self.texts) or (self.language,)

    def text_in(self, language: str) -> TextConfig:
        return self.texts.get(language, self.text)

    def resolve(self, relative: str) -> Path:
        """A path from the config, resolved inside `root` (ValueError if it would leave it)."""
        return resolve_path(relative, self.root)

    def database(self, study_dir: Path) -> str:
        """The SQLAlchemy URL of the study's database (default: sqlite file in the study folder)."""
        url = self.database_url or f"sqlite:///{DEFAULT_DATABASE}"
        prefix = "sqlite:///"
        if url.startswith(prefix):
            return prefix + str(resolve_path(url[len(prefix):], study_dir))
        return url


def config_hash(parsed: dict[str, Any]) -> str:
    """sha256 of a parsed config: comments and layout do not change it, any value does."""
    return hashlib.sha256(json.dumps(parsed, sort_keys=True).encode()).hexdigest()


def load_config(path: str | Path) -> StudyConfig:
    """Read and validate a study config; FileNotFoundError / ConfigError with a clear message."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"study config not found: {path}")
    text = path.read_text(encoding="utf-8")
    return parse_config(text, root=path.parent, filename=str(path))


def parse_config(text: str, root: Path = Path("."), filename: str = "study.toml") -> StudyConfig:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{filename}: not valid TOML: {err}") from None
    return _Validator(text, filename, Path(root)).study(raw)


# --- validation ---------------------------------------------------------------------------

_TOP_KEYS = {
    "name", "seed", "models", "images", "methods", "practice_trials", "attention_checks",
    "answers_per_cell", "design", "allow_anonymous", "allow_browser_change", "signed_links", "on_withdraw",
    "completion_code", "redirect_url", "database_url",
    "text", "exclusion", "tasks", "questionnaire", "weights",
    "language", "class_names",
}
DESIGNS = ("within", "between")
_TASK_KEYS = {"type", "methods", "trials", "design", "images"}  # every task's; a task type adds its own (most: "model")
_KEY_RE = re.compile(r'^\s*("[^"]*"|[A-Za-z0-9_\-]+)\s*=')
_TABLE_RE = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_\-.]+)\s*\]\]?")


def _key_lines(text: str) -> dict[tuple, int]:
    """Line numbers of tables and keys, by path (`("tasks", 2, "methods")`), for error messages."""
    lines: dict[tuple, int] = {}
    table: tuple = ()
    counts: dict[tuple, int] = {}
    in_string = None
    for number, line in enumerate(text.splitlines(), start=1):
        if in_string:
            if line.count(in_string) % 2 == 1:
                in_string = None
            continue
        table_match = _TABLE_RE.match(line)
        if table_match:
            name = tuple(table_match.group(2).split("."))
            if table_match.group(1) == "[[":
                counts[name] = counts.get(name, -1) + 1
                table = name + (counts[name],)
            else:
                table = name
            lines.setdefault(table, number)
            continue
        key_match = _KEY_RE.match(line)
        if key_match:
            lines.setdefault(table + (key_match.group(1).strip('"'),), number)
            for quote in ('"""', "'''"):
                if line.count(quote) % 2 == 1:
                    in_string = quote
    return lines


class _Validator:
    def __init__(self, text: str, filename: str, root: Path):
        self.text, self.filename, self.root = text, filename, root
        self.lines = _key_lines(text)

    def fail(self, path: tuple, message: str) -> ConfigError:
        line = None
        for cut in range(len(path), 0, -1):
            line = self.lines.get(path[:cut])
            if line:
                break
        where = f"{self.filename}, line {line}" if line else self.filename
        key = "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else p)
                      for i, p in enumerate(path))
        return ConfigError(f"{where}: {key}: {message}")

    def table(self, raw: Any, path: tuple, allowed: set[str], required: set[str] = frozenset()):
        if not isinstance(raw, dict):
            raise self.fail(path, "must be a table")
        for key in raw:
            if key not in allowed:
                raise self.fail(path + (key,), f"unknown key (allowed: {', '.join(sorted(allowed))})")
        for key in sorted(required - raw.keys()):
            raise self.fail(path, f"missing required key {key!r}")
        return raw

    def typed(self, raw: dict, path: tuple, key: str, kind: type, default: Any = None):
        if key not in raw:
            return default
        value = raw[key]
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if not ok:
            raise self.fail(path + (key,), f"must be {kind.__name__}, got {type(value).__name__} {value!r}")
        return value

    def count(self, raw: dict, path: tuple, key: str, default: int | None, low: int = 0):
        value = self.typed(raw, path, key, int, default)
        if value is not None and value < low:
            raise self.fail(path + (key,), f"must be >= {low}, got {value}")
        return value

    def strings(self, raw: dict, path: tuple, key: str, default=None, allowed=None) -> tuple[str, ...]:
        value = self.typed(raw, path, key, list, default)
        if value is None:
            raise self.fail(path, f"missing required key {key!r}")
        if not value or not all(isinstance(v, str) and v for v in value):
            raise self.fail(path + (key,), "must be a non-empty list of non-empty strings")
        for v in value:
            if allowed is not None and v not in allowed:
                raise self.fail(path + (key,), f"unknown name {v!r} (known: {', '.join(sorted(allowed))})")
        if len(set(value)) != len(value):
            raise self.fail(path + (key,), "lists a name twice")
        return tuple(value)

    def study(self, raw: dict) -> StudyConfig:
        self.table(raw, (), _TOP_KEYS, {"name", "images", "methods", "tasks", "text"})
        name = self.typed(raw, (), "name", str)
        if not name.strip():
            raise self.fail(("name",), "must not be empty")
        models = self.strings(raw, (), "models", ["efficientnet_lite0"])
        methods = self.strings(raw, (), "methods", allowed=KNOWN_METHODS)
        images = self.image_set(raw, (), "images")
        tasks_raw = self.typed(raw, (), "tasks", list)
        if not tasks_raw:
            raise self.fail(("tasks",), "a study needs at least one [[tasks]] table")
        if raw.get("signed_links") is True and raw.get("allow_anonymous") is True:
            raise self.fail(("signed_links",), "signed links and anonymous entry exclude each other: an anonymous "
                            "participant has no signed id (set allow_anonymous = false)")
        language, texts = _languages.texts(self, raw)
        self.languages = tuple(texts)      # what a task's own questions are worded in
        design = self.choice(raw, (), "design", DESIGNS, "within")
        tasks = tuple(self.task(t, ("tasks", i), models, methods, design) for i, t in enumerate(tasks_raw))
        between = [(i, t) for i, t in enumerate(tasks) if t.design == "between"]
        for i, task in between[1:]:
            if set(task.methods) != set(between[0][1].methods):
                raise self.fail(("tasks", i, "methods"), "every between-subject task must use the same methods "
                                f"(the conditions a participant is assigned to); task {between[0][0] + 1} uses "
                                f"{list(between[0][1].methods)}")
        attention = self.count(raw, (), "attention_checks", 2)
        if attention and not any(TASKS[t.type].hosts_attention_checks for t in tasks):
            hosts = ", ".join(name for name, kind in TASKS.items() if kind.hosts_attention_checks)
            raise self.fail(("attention_checks",), f"attention checks need a task to take their form from ({hosts})")
        practice = self.count(raw, (), "practice_trials", 2)
        if practice and not any(TASKS[t.type].hosts_practice for t in tasks):
            raise self.fail(("practice_trials",), "practice trials need a task to take their form from (any but "
                            + ", ".join(name for name, kind in TASKS.items() if not kind.hosts_practice) + ")")
        texts = {lang: TextConfig(**text) for lang, text in texts.items()}
        config = StudyConfig(
            name=name,
            seed=self.typed(raw, (), "seed", int, 0),
            models=models,
            images=images,
            methods=methods,
            tasks=tasks,
            text=texts[language],
            questionnaire=parse_questions(self, raw.get("questionnaire", []), ("questionnaire",), tuple(texts)),
            exclusion=self.exclusion(raw.get("exclusion", {})),
            practice_trials=practice,
            attention_checks=attention,
            answers_per_cell=self.count(raw, (), "answers_per_cell", 5, low=1),
            allow_anonymous=self.typed(raw, (), "allow_anonymous", bool, False),
            allow_browser_change=self.typed(raw, (), "allow_browser_change", bool, False),
            signed_links=self.typed(raw, (), "signed_links", bool, False),
            on_withdraw=self.choice(raw, (), "on_withdraw", ("delete", "keep"), "delete"),
            completion_code=self.completion_code(raw),
            redirect_url=self.redirect(raw),
            database_url=self.database_url(raw),
            language=language,
            texts=texts,
            class_names=_languages.class_name_files(self, raw, tuple(texts), lambda p: resolve_path(p, self.root)),
            weights=self.weights(raw.get("weights", {}), models),
            root=self.root,
            source=self.text,
            hash=config_hash(raw),
        )
        return config

    def choice(self, raw: dict, path: tuple, key: str, allowed: tuple[str, ...], default: str) -> str:
        value = self.typed(raw, path, key, str, default)
        if value not in allowed:
            raise self.fail(path + (key,), f"must be one of {', '.join(map(repr, allowed))}, got {value!r}")
        return value

    def image_set(self, raw: dict, path: tuple, key: str, default: str | None = None) -> str | None:
        """An image-set spec (`study.images.specs`) whose paths stay inside root."""
        spec = self.typed(raw, path, key, str, default)
        if spec is None:
            return None
        try:
            for relative in parse_image_set(spec).paths:
                resolve_path(relative, self.root)
        except ValueError as err:
            raise self.fail(path + (key,), str(err)) from None
        return spec

    def weights(self, raw: Any, models: tuple[str, ...]) -> dict[str, str]:
        """`[weights]`: a weights file per model (e.g. an ABN checkpoint), relative to the config's folder."""
        self.table(raw, ("weights",), set(models))
        for model in raw:
            self.typed(raw, ("weights",), model, str)
            try:
                resolve_path(raw[model], self.root)
            except ValueError as err:
                raise self.fail(("weights", model), str(err)) from None
        return dict(raw)

    def task(self, raw: Any, path: tuple, models: tuple[str, ...], methods: tuple[str, ...],
             design: str) -> TaskConfig:
        if not isinstance(raw, dict):
            raise self.fail(path, "must be a table")
        kind = self.typed(raw, path, "type", str)
        if kind is None:
            raise self.fail(path, "missing required key 'type'")
        if kind not in TASKS:
            raise self.fail(path + ("type",), f"unknown task type {kind!r} (known: {', '.join(TASKS)})")
        plugin = TASKS[kind]
        self.table(raw, path, _TASK_KEYS | plugin.option_keys)
        task_methods = plugin.methods_of(self.strings(raw, path, "methods", list(plugin.default_methods or methods),
                                                      allowed=plugin.method_names or KNOWN_METHODS))
        model = self.typed(raw, path, "model", str, models[0])
        if model not in models:
            raise self.fail(path + ("model",), f"model {model!r} is not in the study's models {list(models)}")
        options = plugin.parse_options(self, raw, path, task_methods, models)
        design = self.choice(raw, path, "design", DESIGNS, design if plugin.within_subjects else "between")
        if design == "between" and not plugin.between_subjects:
            raise self.fail(path + ("design",), f"a {kind} task compares methods within one participant; "
                            "it cannot be between subjects")
        if design == "within" and not plugin.within_subjects:
            raise self.fail(path + ("design",), f"a {kind} task is between subjects by nature: "
                            f"{plugin.between_only_because}")
        return TaskConfig(type=kind, methods=task_methods, model=plugin.task_model(options, model), design=design,
                          trials=self.count(raw, path, "trials", None, low=1),
                          images=self.image_set(raw, path, "images"), options=options)

    def exclusion(self, raw: Any) -> ExclusionConfig:
        path = ("exclusion",)
        self.table(raw, path, {"min_rt_ms", "max_failed_attention_checks"})
        return ExclusionConfig(min_rt_ms=self.count(raw, path, "min_rt_ms", 300),
                               max_failed_attention_checks=self.count(raw, path, "max_failed_attention_checks", 0))

    def completion_code(self, raw: dict) -> str | None:
        code = self.typed(raw, (), "completion_code", str)
        if code is not None and not re.fullmatch(r"[A-Za-z0-9_\-]{1,64}", code):
            raise self.fail(("completion_code",), "must be 1-64 letters, digits, '-' or '_'")
        return code

    def redirect(self, raw: dict) -> str | None:
        url = self.typed(raw, (), "redirect_url", str)
        if url is None:
            return None
        if not url.startswith(("https://", "http://")):
            raise self.fail(("redirect_url",), "must be an http(s) URL")
        fields = {f for _, f, _, _ in string.Formatter().parse(url) if f is not None}
        if fields - {"code", "pid"}:
            raise self.fail(("redirect_url",), f"only {{code}} and {{pid}} may be filled in, found {sorted(fields - {'code', 'pid'})}")
        return url

    def database_url(self, raw: dict) -> str | None:
        url = self.typed(raw, (), "database_url", str)
        if url is None:
            return None
        if "://" not in url:
            raise self.fail(("database_url",), "must be an SQLAlchemy URL such as 'sqlite:///study.db' or 'postgresql://...'")
        if url.startswith("sqlite"):
            relative = url[len("sqlite:///"):] if url.startswith("sqlite:///") else ""
            if relative in ("", ":memory:"):
                raise self.fail(("database_url",), "a SQLite database must be a file (sqlite:///name.db): "
                                "an in-memory one would lose every answer")
            if PurePosixPath(relative).is_absolute() or ".." in PurePosixPath(relative).parts:
                raise self.fail(("database_url",), f"a SQLite database must be a file inside the study folder, got {relative!r}")
        return url

