"""Fixtures for the UI tests: an in-memory `SurveySession` stand-in with one trial of every
task type, so the screens can be driven without building a study (the real session is used by
the browser tests and bench/survey_load.py)."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
from PIL import Image

LIKERT = [(str(i), str(i)) for i in range(1, 6)]
TRUST = [("-2", "A much more"), ("-1", "A a bit more"), ("0", "Same"), ("1", "B a bit more"),
         ("2", "B much more")]
CONFIDENCE = [(str(i), label) for i, label in
              enumerate(["Not sure", "Somewhat sure", "Sure", "Very sure"], start=1)]

# (task, n_images, options, confidence, correct answer or None, is_practice, is_attention)
TRIALS = [
    ("rating", 1, LIKERT, [], "5", True, False),
    ("class_discrimination", 1, [("a", "Cat"), ("b", "Dog"), ("both", "Both or neither")],
     [], "a", False, False),
    ("compare", 2, [("left", "Left"), ("right", "Right"), ("same", "About the same")],
     [], None, False, False),
    ("rating", 1, LIKERT, [], None, False, False),
    ("rating", 1, LIKERT, [], "1", False, True),
    ("trust", 2, TRUST, [], None, False, False),
    ("distinction", 4, [("0", "tabby"), ("1", "tiger cat"), ("2", "lynx"), ("3", "fox")],
     CONFIDENCE, "0", False, False),
    ("agreement", 1, [("yes", "Yes"), ("no", "No")], CONFIDENCE, None, False, False),
]


class AlreadyCompleted(Exception):
    pass


def make_config(allow_anonymous=False, redirect="https://app.prolific.com/submissions/complete?cc={code}"):
    return SimpleNamespace(
        name="Which explanation helps?",
        text=SimpleNamespace(consent_md="We ask you to judge **heatmaps**.",
                             instructions_md="Each question shows a picture.",
                             debrief_md="Thanks for helping our research."),
        completion_code="C0DE42", redirect_url=redirect, allow_anonymous=allow_anonymous,
        questionnaire=[SimpleNamespace(key="age", label="Your age group",
                                       options=["18-29", "30-49", "50+"]),
                       SimpleNamespace(key="comments", label="Any comments?", options=None)])


@dataclass
class _Person:
    external_id: str
    consented: bool | None = None
    completed: bool = False
    answers: dict = field(default_factory=dict)
    shown: dict = field(default_factory=dict)
    questionnaire: dict | None = None


class FakeSurveySession:
    """Same names and behaviour (idempotence, resume, AlreadyCompleted) as study.session."""

    def __init__(self, image_dir: Path, config=None):
        self.config = config or make_config()
        self.config_hash = "f" * 64
        self.people: list[_Person] = []
        self.lock = threading.Lock()
        image_dir.mkdir(parents=True, exist_ok=True)
        self.images = []
        for i, colour in enumerate(["red", "green", "blue", "orange"]):
            path = image_dir / f"stim{i}.png"
            Image.new("RGB", (64, 64), colour).save(path)
            self.images.append(path)

    def enter(self, external_id, user_agent=""):
        with self.lock:
            if external_id is None:
                if not self.config.allow_anonymous:
                    raise ValueError("an external id is required")
                external_id = f"anon-{len(self.people) + 1}"
            person = next((p for p in self.people if p.external_id == external_id), None)
            if person is None:
                person = _Person(external_id)
                self.people.append(person)
            if person.completed or person.consented is False:
                raise AlreadyCompleted(external_id)
            return self._state(self.people.index(person))

    def _state(self, pid):
        p = self.people[pid]
        return SimpleNamespace(participant_id=pid, external_id=p.external_id,
                               consented=p.consented, completed=p.completed,
                               n_done=len(p.answers), n_total=len(TRIALS),
                               completion_code=self.config.completion_code if p.completed else None)

    def consent(self, pid, agreed):
        self.people[pid].consented = agreed

    def next_trial(self, pid):
        person = self.people[pid]
        for i, (task, n, options, confidence, answer, practice, attention) in enumerate(TRIALS):
            if i in person.answers:
                continue
            shown = person.shown.setdefault(i, datetime.now(timezone.utc))
            return SimpleNamespace(
                trial_index=i, task=task, is_practice=practice, is_attention_check=attention,
                prompt_md=f"**{task}**: how well does it highlight the *cat*?",
                images=self.images[:n], captions=[f"Map {chr(65 + k)}" for k in range(n)],
                options=options, confidence_options=confidence,
                feedback_md="The cat is on the left." if practice else None, shown_at=shown)
        return None

    def answer(self, pid, trial_index, response, rt_ms, confidence=None):
        with self.lock:
            person = self.people[pid]
            if trial_index in person.answers:
                return SimpleNamespace(stored=False, duplicate=True, correct=None)
            person.answers[trial_index] = (response, rt_ms, confidence)
            expected = TRIALS[trial_index][4]
            return SimpleNamespace(stored=True, duplicate=False,
                                   correct=None if expected is None else response == expected)

    def progress(self, pid):
        return len(self.people[pid].answers), len(TRIALS)

    def complete(self, pid, questionnaire):
        person = self.people[pid]
        if not person.completed:
            person.completed, person.questionnaire = True, dict(questionnaire)
        return self.config.completion_code

    def redirect_url(self, pid):
        url = self.config.redirect_url
        return url and url.format(code=self.config.completion_code,
                                  pid=self.people[pid].external_id)

    def cell_progress(self):
        return pd.DataFrame({"task": [t[0] for t in TRIALS], "image_id": "img",
                             "method": "gradcam", "n_answers": 1, "target": 5})


def fake_tables():
    """Export tables with the real columns: two participants, one summary row."""
    from study.export import TABLES, columns
    tables = {name: pd.DataFrame(columns=columns(name)) for name in TABLES}
    people = tables["participants"]
    tables["participants"] = pd.concat([people, pd.DataFrame(
        {"participant_id": [1, 2], "external_id": ["p1", "p2"], "completed_at": [None, None],
         "excluded": [False, True]})])[columns("participants")]
    tables["summary"] = pd.DataFrame(
        [["rating", "efficientnet_lite0", m, "rating", 3, 3, e, e - 1, e + 1, "bootstrap", None]
         for m, e in (("gradcam", 4.0), ("random", 2.0))], columns=columns("summary"))
    return tables


def _stub_missing_modules() -> None:
    """Until study.session lands in the tree, stand in for it so `ui` imports."""
    import sys
    import types
    try:
        import study.session  # noqa: F401
    except ImportError:
        sys.modules["study.session"] = types.SimpleNamespace(
            AlreadyCompleted=AlreadyCompleted, SurveySession=FakeSurveySession)


_stub_missing_modules()


def use_fake(monkeypatch, session) -> None:
    """Point the UI at `session` (and at fake export tables) for one test."""
    import ui.admin
    import ui.context
    monkeypatch.setattr(ui.context, "session", lambda: session)
    monkeypatch.setattr(ui.context, "study_dir", lambda: Path("fake-study"))
    monkeypatch.setattr(ui.admin, "export_tables", lambda folder: fake_tables())
