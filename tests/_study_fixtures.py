"""Torch-free studies for the engine tests: synthetic images, a fake renderer, small configs.

The fake renderer writes tiny solid-colour PNGs and predicts what the test wants (each image's
main label first, except images listed as mispredicted), so plans, sessions and the database
are tested in milliseconds; tests/test_build.py renders real maps separately.
"""
from __future__ import annotations

import shutil
import tempfile
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from PIL import Image

from study.stimuli.build import build_study
from study.images import ImageItem, composite

N_CLASSES = 20
NAMES = [f"class {i}" for i in range(N_CLASSES)]


def fake_items(n: int = 8) -> list[ImageItem]:
    """n single-object images with distinct main labels (class 2*i) and an acceptable synonym."""
    return [ImageItem(image_id=f"img{i}", image=Image.new("RGB", (32, 24), (30 * i % 255, 90, 160)),
                      labels=(2 * i, 2 * i + 1), boxes=((2, 2, 20, 20),), source=f"fake:{i}")
            for i in range(n)]


class FakeRenderer:
    """Predictions: main label first, then the next classes; `wrong` image ids put it third.
    Example pictures (the examples task) are strips as wide as the image and its k examples."""

    def __init__(self, wrong: tuple[str, ...] = ()):
        self.wrong = set(wrong)
        self.rendered = 0

    def categories(self, model):
        return list(NAMES)

    def predict(self, model, items):
        out = {}
        for item in items:
            main = item.labels[0]
            others = [c for c in range(N_CLASSES) if c not in item.labels]
            top = [others[0], others[1], main, *others[2:4]] if item.image_id in self.wrong else [main, *others[:4]]
            out[item.image_id] = [(c, 0.5 / (k + 1)) for k, c in enumerate(top)]
        return out

    def class_scores(self, model, items, classes):
        """Logits of `classes` that rank them as `predict` does (its top-5 first, then by index)."""
        out = {}
        for item, top in self.predict(model, items).items():
            rank = {c: k for k, (c, _) in enumerate(top)}
            out[item] = [-float(rank.get(c, 5 + c)) for c in classes]
        return out

    def render(self, items, requests):
        assert len({(r.model, r.method, r.joint, len(r.targets)) for r in requests}) == 1
        self.rendered += len(requests)
        return [[Image.new("RGB", (8, 8), (t * 12 % 255, 0, 0)) for t in r.targets] for r in requests]

    def examples(self, items, requests):
        assert len({r.batch_key() for r in requests}) == 1
        self.rendered += len(requests)
        return [[Image.new("RGB", (8 * (r.k + 1), 8), (0, r.targets[0] * 12 % 255, 0))] for r in requests]


BASE = """
name = "engine test"
seed = 11
models = ["m1", "m2"]
images = "bundled"
methods = ["gradcam", "cam", "ablationcam"]
practice_trials = {practice}
attention_checks = {attention}
answers_per_cell = 3
allow_anonymous = {anonymous}
completion_code = "DONE-1"
redirect_url = "https://example.org/done?cc={{code}}&p={{pid}}"
{extra}

[text]
consent_md = "consent"
instructions_md = "instructions"
debrief_md = "debrief"

[[questionnaire]]
key = "age"
label = "Age group"
options = ["18-29", "30+"]

[[questionnaire]]
key = "comments"
label = "Comments"
"""

ALL_TASKS = """
[[tasks]]
type = "class_discrimination"
composites = 6
trials = 4

[[tasks]]
type = "compare"
trials = 3

[[tasks]]
type = "rating"

[[tasks]]
type = "trust"
models = ["m1", "m2"]
methods = ["gradcam"]
trials = 2

[[tasks]]
type = "distinction"
methods = ["gradcam", "cam"]
trials = 2

[[tasks]]
type = "agreement"
trials = 3
"""


def write_config(folder: Path, tasks: str = ALL_TASKS, practice: int = 2, attention: int = 2,
                 anonymous: bool = False, extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.toml"
    path.write_text(textwrap.dedent(BASE.format(practice=practice, attention=attention, extra=extra,
                                                anonymous=str(anonymous).lower())) + tasks)
    return path


def build_fake_study(tmp: Path, tasks: str = ALL_TASKS, n_images: int = 8, wrong=("img7",), **options) -> Path:
    """A built study folder (tmp/study) from fake images and maps."""
    config = write_config(tmp / "config", tasks, **options)
    out = tmp / "study"
    build_study(config, out, progress=False, renderer=FakeRenderer(wrong), items=fake_items(n_images),
                combine=composite)
    return out


@contextmanager
def memory_backed_dir() -> Iterator[Path]:
    """A scratch folder on tmpfs when the machine has one.

    The database commits with synchronous=FULL (an fsync per answer), which costs milliseconds
    per commit on a VM disk; the concurrency tests check locking and idempotency, which tmpfs
    exercises the same way, and run several times faster there.
    """
    shm = Path("/dev/shm")
    folder = Path(tempfile.mkdtemp(prefix="camstudy-", dir=shm if shm.is_dir() else None))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
