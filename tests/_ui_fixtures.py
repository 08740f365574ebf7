"""Fixtures for the UI tests.

`FakeSurveySession` is an in-memory stand-in with one trial of every task type, so AppTest can
drive each screen in milliseconds; `build_real_study` makes a real 20-trial study (real maps,
real database) for the end-to-end AppTest run, the browser tests and bench/survey_load.py.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from PIL import Image

from study.protocol.config import TextConfig
from study.protocol.questions import QuestionItem
from study.store.identity import BadLink, check_external_id
from study.survey.session import AlreadyCompleted, ConsentConflict, WrongResumeCode

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


TEXTS = {"en": TextConfig(consent_md="We ask you to judge **heatmaps**.",
                          instructions_md="Each question shows a picture.",
                          debrief_md="Thanks for helping our research."),
         "de": TextConfig(consent_md="Wir bitten Sie, **Heatmaps** zu beurteilen.",
                          instructions_md="Jede Frage zeigt ein Bild.",
                          debrief_md="Danke, dass Sie unsere Forschung unterstützen.")}


def make_config(allow_anonymous=False, redirect="https://app.prolific.com/submissions/complete?cc={code}"):
    """A config in English (the default) and German, as study.protocol.config makes it."""
    return SimpleNamespace(
        name="Which explanation helps?", language="en", languages=tuple(TEXTS), text=TEXTS["en"],
        text_in=lambda language: TEXTS.get(language, TEXTS["en"]),
        completion_code="C0DE42", redirect_url=redirect, allow_anonymous=allow_anonymous, on_withdraw="delete",
        questionnaire=[QuestionItem(key="age", label="Your age group", options=["18-29", "30-49", "50+"],
                                    labels={"de": "Ihre Altersgruppe"},
                                    option_labels={"de": ["18-29 Jahre", "30-49 Jahre", "50+ Jahre"]}),
                       QuestionItem(key="comments", label="Any comments?", labels={"de": "Anmerkungen?"})])


@dataclass
class _Person:
    external_id: str
    consented: bool | None = None
    completed: bool = False
    answers: dict = field(default_factory=dict)
    shown: dict = field(default_factory=dict)
    questionnaire: dict | None = None
    credential: str | None = None
    withdrawn: bool = False
    language: str | None = None


PILOT_TOKEN = "a-real-pilot-signature"


@dataclass
class FakePlan:
    """study.survey.session.ParticipantPlan's fields the UI reads."""
    participant_id: int
    answered: set
    n_total: int

    @property
    def n_done(self):
        return len(self.answered)


class FakeSurveySession:
    """Same names and behaviour (idempotence, resume, AlreadyCompleted) as study.survey.session."""

    def __init__(self, image_dir: Path, config=None):
        self.config = config or make_config()
        self.config_hash = "f" * 64
        self.pilot_run = False
        self.has_practice = True
        self.stimuli = SimpleNamespace(url=lambda path: f"/stimuli/{Path(path).name}")
        self.people: list[_Person] = []
        self.lock = threading.Lock()
        image_dir.mkdir(parents=True, exist_ok=True)
        self.images = []
        for i, colour in enumerate(["red", "green", "blue", "orange"]):
            path = image_dir / f"stim{i}.png"
            Image.new("RGB", (64, 64), colour).save(path)
            self.images.append(path)

    def enter(self, external_id, *, credential=None, signature=None):
        with self.lock:
            if external_id is None:
                if not self.config.allow_anonymous:
                    raise BadLink("an external id is required")
                external_id = f"anon-{len(self.people) + 1}"
            check_external_id(external_id)
            person = next((p for p in self.people if p.external_id == external_id), None)
            if person is None:
                person = _Person(external_id)
                self.people.append(person)
            if person.completed:
                index = self.people.index(person)
                raise AlreadyCompleted(external_id, self.config.completion_code,
                                       self.redirect_url(index))
            if person.consented is False or person.withdrawn:
                raise AlreadyCompleted(external_id)
            return self._state(self.people.index(person))

    def _state(self, pid):
        p = self.people[pid]
        return SimpleNamespace(participant_id=pid if p.consented else None, external_id=p.external_id,
                               consented=p.consented, completed=p.completed,
                               n_done=len(p.answers), n_total=len(TRIALS), credential=p.credential, condition=None,
                               completion_code=self.config.completion_code if p.completed else None,
                               language=p.language, resume_code=None)

    def consent(self, external_id, agreed, language=None, **_link):
        person = next(p for p in self.people if p.external_id == external_id)
        if person.consented and not agreed:
            raise ConsentConflict("you already agreed to take part (in another tab or window)")
        person.consented = agreed
        person.credential = "cred" if agreed else None
        person.language = person.language or (language if agreed else None)
        state = self._state(self.people.index(person))
        state.resume_code = "ABCD-2345" if agreed else None
        return state

    def withdraw(self, pid):
        self.people[pid].withdrawn = True

    def is_pilot(self, external_id, token):
        return self.pilot_run or token == PILOT_TOKEN

    def plan(self, pid):
        return FakePlan(pid, set(self.people[pid].answers), len(TRIALS))

    def show(self, plan):
        person = self.people[plan.participant_id]
        for i in range(len(TRIALS)):
            if i not in plan.answered:
                return self._view(i, person.shown.setdefault(i, datetime.now(timezone.utc)), person.language)
        return None

    def submit(self, plan, trial_index, response, rt_ms, confidence=None):
        if trial_index in plan.answered:
            return SimpleNamespace(stored=False, duplicate=True, correct=None, elsewhere=False)
        outcome = self.answer(plan.participant_id, trial_index, response, rt_ms, confidence)
        plan.answered |= set(self.people[plan.participant_id].answers)
        return outcome

    def next_trial(self, pid):
        return self.show(self.plan(pid))

    def _view(self, i, shown, language=None):
        task, n, options, confidence, _answer, practice, attention = TRIALS[i]
        return SimpleNamespace(
            trial_index=i, task=task, is_practice=practice, is_attention_check=attention,
            prompt_md=(f"**{task}**: wie gut hebt sie die *Katze* hervor?" if language == "de"
                       else f"**{task}**: how well does it highlight the *cat*?"),
            images=self.images[:n], captions=[f"Map {chr(65 + k)}" for k in range(n)],
            options=options, confidence_options=confidence,
            feedback_md="The cat is on the left." if practice else None, shown_at=shown, round=None)

    @property
    def built(self):
        """The trials' templates, as the admin's preview lists them, and the practice trials' groups."""
        return SimpleNamespace(trials={i: SimpleNamespace(id=i, task=t[0], role="main", image_id="img", method="gradcam",
                                                           method_b=None, model="m", model_b=None, task_position=0)
                                       for i, t in enumerate(TRIALS)},
                               practice=tuple((i,) for i, t in enumerate(TRIALS) if t[5] and self.has_practice))

    def preview(self, trial_id):
        return self._view(trial_id, datetime.now(timezone.utc))

    def answer(self, pid, trial_index, response, rt_ms, confidence=None):
        with self.lock:
            person = self.people[pid]
            if trial_index in person.answers:
                return SimpleNamespace(stored=False, duplicate=True, correct=None, elsewhere=True)
            person.answers[trial_index] = (response, rt_ms, confidence)
            expected = TRIALS[trial_index][4]
            return SimpleNamespace(stored=True, duplicate=False, elsewhere=False,
                                   correct=None if expected is None else response == expected)

    def resume_with_code(self, external_id, code, signature=None):
        person = next(p for p in self.people if p.external_id == external_id)
        if re.sub(r"[\s-]", "", code).upper() != "ABCD2345":
            raise WrongResumeCode(9)
        person.credential = "moved"
        return self._state(self.people.index(person))

    def progress(self, pid):
        return len(self.people[pid].answers), len(TRIALS)

    def complete(self, pid, questionnaire):
        person = self.people[pid]
        for item in self.config.questionnaire:
            if item.options and questionnaire.get(item.key, item.options[0]) not in item.options:
                raise ValueError(f"answer to {item.key!r} must be one of {item.options}")
        if not person.completed:
            person.completed, person.questionnaire = True, dict(questionnaire)
        return self.config.completion_code

    def redirect_url(self, pid):
        url = self.config.redirect_url
        return url and url.format(code=self.config.completion_code,
                                  pid=self.people[pid].external_id)

    def instructions_map(self, condition=None, language=None):
        return self.images[0], "Tigerkatze" if language == "de" else "tabby cat"

    def link_views(self):
        return 3

    def cell_progress(self):
        return pd.DataFrame({"task": [t[0] for t in TRIALS], "image_id": "img",
                             "method": "gradcam", "n_answers": 1, "target": 5})


class FakeLogin:
    """study.survey.admin_login.AdminLogin without a database: the password check alone."""

    def check(self, given, expected, address):
        return given == expected


def fake_tables():
    """Export tables with the real columns: two participants, one summary row."""
    from study.results.codebook import TABLES, columns
    tables = {name: pd.DataFrame(columns=columns(name)) for name in TABLES}
    people = tables["participants"]
    tables["participants"] = pd.concat([people, pd.DataFrame(
        {"participant_id": [1, 2], "external_id": ["p1", "p2"], "completed_at": [None, None],
         "excluded": [False, True]})])[columns("participants")]
    tables["summary"] = pd.DataFrame(
        [["rating", "efficientnet_lite0", m, "rating", 3, 3, e, e - 1, e + 1, "bootstrap", None]
         for m, e in (("gradcam", 4.0), ("random", 2.0))], columns=columns("summary"))
    return tables


def use_fake(monkeypatch, session) -> None:
    """Point the UI at `session` (and at fake export tables) for one test."""
    import ui.admin
    import ui.context
    monkeypatch.setattr(ui.context, "session", lambda: session)
    monkeypatch.setattr(ui.context, "monitor", lambda: session)
    monkeypatch.setattr(ui.context, "admin_login", lambda: FakeLogin())
    monkeypatch.setattr(ui.context, "study_dir", lambda: Path("fake-study"))
    monkeypatch.setattr(ui.admin, "export_tables", lambda folder: fake_tables())


# --- a real study for the browser tests and bench/survey_load.py ---------------------------

STUDY_TOML = '''
name = "How well do heatmaps explain a classifier?"
seed = 7
models = ["efficientnet_lite0", "efficientnet_lite0_copy"]
images = "bundled"
methods = ["gradcam", "cam"]
practice_trials = 2
attention_checks = 2
answers_per_cell = 5
completion_code = "CAMSTUDY-OK"
redirect_url = "https://app.prolific.com/submissions/complete?cc={code}"

[text]
consent_md = """
You are invited to a study of how people judge *visual explanations* of an image classifier.
You will look at photos with coloured heatmaps and answer short questions; it takes about
10 minutes. Taking part is voluntary and you may stop at any time. We store your answers and
response times under your platform id only, for research, and never share them with it.
"""
instructions_md = """
A classifier is a program that names what a photo shows. A **heatmap** is laid over the photo:
**red and yellow** mark the parts the explanation says the classifier relied on most, blue the
parts it ignored. For example, a good explanation of *tabby cat* glows on the cat's face, not
on the background. Each question shows one or more heatmaps; choose the answer that fits best
and press **Next**. There are no trick questions, but some questions check that you are reading
carefully.
"""
debrief_md = "This study compares explanation methods such as Grad-CAM with Class Activation Mapping (CAM)."

[[tasks]]
type = "class_discrimination"
methods = ["gradcam", "cam"]
trials = 3
composites = 5

[[tasks]]
type = "compare"
methods = ["gradcam", "cam"]
trials = 3

[[tasks]]
type = "rating"
trials = 3

[[tasks]]
type = "trust"
models = ["efficientnet_lite0", "efficientnet_lite0_copy"]
methods = ["gradcam"]
trials = 2

[[tasks]]
type = "distinction"
methods = ["gradcam"]
trials = 3
confidence_points = 4

[[tasks]]
type = "agreement"
trials = 2
confidence_points = 5

[[questionnaire]]
key = "age"
label = "Your age group"
options = ["18-29", "30-44", "45-59", "60 or older", "Prefer not to say"]

[[questionnaire]]
key = "experience"
label = "Have you worked with machine learning before?"
options = ["Never", "A little", "Regularly"]

[[questionnaire]]
key = "comments"
label = "Anything you would like to tell us? (optional)"
'''


# STUDY_TOML in English and German: [text.de] and the questionnaire's German wording.
GERMAN_TEXT = '''
[text.de]
consent_md = "Sie sind eingeladen, *visuelle Erklärungen* eines Bildklassifikators zu beurteilen."
instructions_md = "Rote und gelbe Bereiche zeigen, worauf sich der Klassifikator am meisten gestützt hat."
debrief_md = "Diese Studie vergleicht Erklärungsmethoden wie Grad-CAM mit CAM."
'''
GERMAN_QUESTIONNAIRE = {
    'label = "Your age group"\n': 'label_de = "Ihre Altersgruppe"\n'
                                   'options_de = ["18-29", "30-44", "45-59", "60 oder älter", "Keine Angabe"]\n',
    'label = "Have you worked with machine learning before?"\n':
        'label_de = "Haben Sie schon mit maschinellem Lernen gearbeitet?"\n'
        'options_de = ["Nie", "Ein wenig", "Regelmäßig"]\n',
    'label = "Anything you would like to tell us? (optional)"\n':
        'label_de = "Möchten Sie uns noch etwas mitteilen? (optional)"\n',
}


def bilingual(toml: str) -> str:
    """A study config in English with its German translation added."""
    for english, german in GERMAN_QUESTIONNAIRE.items():
        toml = toml.replace(english, english + german)
    return toml + GERMAN_TEXT


class SketchRenderer:
    """A build-time renderer without a network: the labels are the "predictions" and each map
    is a soft blob on the target's box (elsewhere for classes the photo does not show). Builds
    in seconds, so CI browser tests use it; screenshots (CAMSTUDY_SCREENSHOTS) use real maps."""

    def categories(self, model):
        from study.models import imagenet_categories
        return imagenet_categories()

    def predict(self, model, items):
        fillers = (281, 282, 285, 287, 291)
        return {i.image_id: [(c, 0.9 / (k + 1)) for k, c in enumerate(
            list(dict.fromkeys(list(i.labels) + [f for f in fillers if f not in i.labels]))[:5])]
            for i in items}

    def render(self, items, requests):
        return [self._sketch(item, request) for item, request in zip(items, requests)]

    @staticmethod
    def _sketch(item, request):
        import numpy as np
        from study.stimuli.render import overlay
        w, h = item.image.size
        yy, xx = np.mgrid[0:h, 0:w]
        spread = 0.12 if request.method == "gradcam" else 0.3
        pictures = []
        for target in request.targets:
            if target in item.labels and item.boxes:
                x0, y0, x1, y1 = item.boxes[item.labels.index(target) % len(item.boxes)]
            else:
                x0, y0, x1, y1 = (target * 37) % w, (target * 53) % h, w, h
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            blob = np.exp(-(((xx - cx) / (spread * w)) ** 2 + ((yy - cy) / (spread * h)) ** 2))
            pictures.append(overlay(item.image, blob / blob.max()))
        return pictures


def build_study_folder(out: Path, real_maps: bool = False, german: bool = False,
                       database_url: str | None = None) -> Path:
    """The 20-trial study of STUDY_TOML (2 practice, 16 main trials over all six task types, 2
    attention checks). `real_maps` renders real Grad-CAM/CAM maps (minutes on 2 busy cores);
    `trust` then compares the default model with an alias of itself. `german` adds the study's
    German texts (`bilingual`); `database_url` puts the study into that database instead of SQLite."""
    from study.stimuli.build import ExplainerRenderer, build_study

    class AliasRenderer(ExplainerRenderer):
        def _model(self, name):
            return super()._model(name.removesuffix("_copy"))

    out.mkdir(parents=True, exist_ok=True)
    config = out.parent / f"{out.name}.toml"
    toml = bilingual(STUDY_TOML) if german else STUDY_TOML
    if database_url:
        toml = f'database_url = "{database_url}"\n' + toml
    config.write_text(toml)
    build_study(config, out, progress=False,
                renderer=AliasRenderer(seed=7) if real_maps else SketchRenderer())
    return out


# --- a served study and a real browser ------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """`camstudy serve STUDY --port P [--workers N] [args]` as a child process; `kill()` is a SIGKILL.
    With N workers they listen on P .. P+N-1 (`urls`); `url` is the first."""

    def __init__(self, study_dir: Path, password: str = "", port: int | None = None,
                 log: Path | None = None, workers: int = 1, args: tuple[str, ...] = ()):
        self.study_dir, self.workers, self.args = study_dir, workers, args
        self.port = port or free_ports(workers)[0]
        self.urls = [f"http://127.0.0.1:{self.port + i}" for i in range(workers)]
        self.url = self.urls[0]
        self.env = {**os.environ, "CAMSTUDY_ADMIN_PASSWORD": password}
        self.log = open(log or study_dir / "serve.log", "ab")
        self.process = None

    def start(self, timeout: float = 90) -> "Server":
        self.process = subprocess.Popen(
            [sys.executable, "-m", "study.cli", "serve", str(self.study_dir), "--port", str(self.port),
             "--workers", str(self.workers), *self.args],
            cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        waiting = list(self.urls)
        while waiting and time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"camstudy serve exited with {self.process.returncode}; "
                                   f"see {self.log.name}")
            try:
                with urllib.request.urlopen(f"{waiting[0]}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        waiting.pop(0)
            except OSError:
                time.sleep(0.3)
        if waiting:
            raise TimeoutError(f"camstudy serve did not answer on {waiting[0]} within {timeout} s")
        return self

    def worker_pids(self) -> dict[int, int]:
        """{port: process id} of the workers (the serve process itself when there is one)."""
        if self.workers == 1:
            return {self.port: self.process.pid}
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        ports = {}
        for pid in map(int, children):
            found = re.search(r"--server\.port=(\d+)", Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " "))
            if found:
                ports[int(found.group(1))] = pid
        return ports

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except Exception:
                self.kill()
        self.log.close()


def free_ports(n: int) -> list[int]:
    """n consecutive free ports on 127.0.0.1 (free when asked)."""
    for _ in range(50):
        first = free_port()
        ports = list(range(first, first + n))
        try:
            for port in ports[1:]:
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
            return ports
        except OSError:
            continue
    raise RuntimeError(f"no {n} consecutive free ports")


def fresh_postgres_database(url: str, name: str) -> str:
    """The URL of a new, empty PostgreSQL database `name` beside the one `url` names (its role needs
    CREATEDB): a study of its own, whatever other tests leave in theirs."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    drop_postgres_database(url, name)
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return make_url(url).set(database=name).render_as_string(hide_password=False)


def drop_postgres_database(url: str, name: str) -> None:
    from sqlalchemy import create_engine, text
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


class Proxy:
    """nginx as `camstudy deploy` configures it (its nginx_site and nginx_main: HTTPS, here with a
    self-signed certificate) in front of workers on `ports`, run from `folder` as a child process."""

    def __init__(self, folder: Path, study_dir: Path, ports: list[int]):
        self.folder, self.study_dir, self.ports = folder, study_dir, ports
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.process = None

    def start(self) -> "Proxy":
        import streamlit
        from study.commands.deploy import nginx_main, nginx_site
        (self.folder / "run").mkdir(parents=True, exist_ok=True)
        cert, key = self.folder / "cert.pem", self.folder / "key.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                        "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
        (self.folder / "camstudy.conf").write_text(nginx_site(
            host="127.0.0.1", upstreams=[f"127.0.0.1:{p}" for p in self.ports], stimuli=self.study_dir / "public",
            certificate=cert, key=key, access_log=self.folder / "run" / "access.log", https_port=self.port, http_port=0,
            streamlit_static=Path(streamlit.__file__).parent / "static"))
        (self.folder / "nginx.conf").write_text(nginx_main())
        # As root, nginx's workers would run as nobody, who cannot enter pytest's private temporary folders.
        extra = "daemon off;" + (" user root root;" if os.geteuid() == 0 else "")
        self.process = subprocess.Popen(["nginx", "-p", str(self.folder), "-c", "nginx.conf", "-g", extra],
                                        stdout=subprocess.DEVNULL, stderr=open(self.folder / "stderr.log", "wb"))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.process.poll() is None, (self.folder / "stderr.log").read_text()
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.2)
        raise TimeoutError("nginx did not listen within 30 s")

    def access_log(self) -> list[str]:
        return (self.folder / "run" / "access.log").read_text().splitlines()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(15)


def chromium_path() -> str | None:
    return shutil.which("chromium")


# With CAMSTUDY_SCREENSHOTS=docs/screenshots the browser tests' pictures land there (the README's screenshots).
SCREENSHOTS = os.environ.get("CAMSTUDY_SCREENSHOTS")


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    """The folder a browser test photographs its screens into: SCREENSHOTS, else a temporary one."""
    out = Path(SCREENSHOTS) if SCREENSHOTS else tmp_path_factory.mktemp("screenshots")
    out.mkdir(parents=True, exist_ok=True)
    return out


def link(base_url: str, pid: str) -> str:
    return f"{base_url}/?PROLIFIC_PID={pid}&STUDY_ID=ui-test&SESSION_ID=s-{pid}"


# What the participant screens show, for drivers that wait on them: the trial component (ui/trial.js),
# its choice groups, and the trial whose stimuli are on screen (its Next button works from then on).
TRIAL = ".cs-trial"
RADIOGROUP = '[role="radiogroup"]'
CONFIDENCE_KEYS = "abcdefghi"


def trial_shown(n: int) -> str:
    """The n-th question's trial component once its stimuli are on screen."""
    return f'{TRIAL}[data-trial="{n - 1}"][data-shown-at]'


def pick(trial_number: int, group: int, n_options: int) -> int:
    """A deterministic, varied choice for simulated answers."""
    return (trial_number * 7 + group * 3) % n_options


def settle(page) -> None:
    """Wait until the app's script run is over and its images have loaded, so the screen is
    complete and nothing moves under the next click."""
    page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]').wait_for()
    page.wait_for_function("[...document.images].every(i => i.complete)")


def question(n: int) -> re.Pattern:
    """The progress text of the n-th question (exactly: "Question 1 of" must not match 10)."""
    return re.compile(rf"^Question {n} of \d+$")


# --- the sync driver (browser tests) --------------------------------------------------------

def after_submit(page, n: int):
    """What follows question n: question n+1, practice feedback or the questionnaire."""
    return (page.get_by_text(question(n + 1)).or_(page.get_by_role("button", name="Continue"))
            .or_(page.get_by_role("button", name="Finish")).first)


def answer(page, n: int, keyboard: bool = False) -> None:
    """Choose in every question of the n-th trial and submit it (digits for the answer, letters for the
    confidence, Enter; or clicks)."""
    page.locator(trial_shown(n)).wait_for()
    groups = page.locator(TRIAL).locator(RADIOGROUP)
    for g in range(groups.count()):
        labels = groups.nth(g).locator("label")
        k = pick(n, g, labels.count())
        if keyboard:
            page.keyboard.press(str(k + 1) if g == 0 else CONFIDENCE_KEYS[k])
        else:
            labels.nth(k).click()
        labels.nth(k).locator("input:checked").wait_for(timeout=3000)
    if keyboard:
        page.keyboard.press("Enter")
    else:
        page.locator(TRIAL).get_by_role("button", name=re.compile(r"^(Next|Weiter)$")).click()


def take_part(page, base_url: str, pid: str, stop_after: int | None = None,
              keyboard_every: int = 0, on_screen: Callable | None = None, comment: str | None = None) -> int:
    """Follow the link and answer; stop after `stop_after` answers or go on to the completion
    code (typing `comment` into the questionnaire's free-text box). Returns how many answers the
    server acknowledged (the next screen came back).

    `on_screen(page, screen)` sees each screen once it is drawn ("consent", "instructions",
    "trial", "feedback", "questionnaire", "completion"); a true return value ends the run there.
    """
    def seen(screen: str) -> bool:
        return bool(on_screen and on_screen(page, screen))

    page.goto(link(base_url, pid))
    page.get_by_role("button", name="I agree to take part").wait_for()
    if seen("consent"):
        return 0
    page.get_by_role("button", name="I agree to take part").click()
    page.get_by_role("button", name="Start").wait_for()
    settle(page)
    if seen("instructions"):
        return 0
    page.get_by_role("button", name="Start").click()
    n = 1
    while True:
        page.get_by_text(question(n)).or_(page.get_by_role("button", name="Finish")).first.wait_for()
        settle(page)
        if page.get_by_role("button", name="Finish").is_visible():
            break
        page.locator(trial_shown(n)).wait_for()      # the trial component drawn, its stimuli on screen
        if (stop_after is not None and n > stop_after) or seen("trial"):
            return n - 1
        answer(page, n, keyboard=bool(keyboard_every) and n % keyboard_every == 0)
        after_submit(page, n).wait_for()
        settle(page)
        if page.get_by_role("button", name="Continue").is_visible():
            if seen("feedback"):
                return n
            page.get_by_role("button", name="Continue").click()
        n += 1
    groups = page.locator('[data-testid="stForm"]').locator(RADIOGROUP)
    for g in range(groups.count()):
        groups.nth(g).locator("label").first.click()
    if comment is not None:
        page.locator("textarea").fill(comment)
    if seen("questionnaire"):
        return n - 1
    page.get_by_role("button", name="Finish").click()
    page.get_by_text("Your completion code").wait_for()
    settle(page)
    seen("completion")
    return n - 1
