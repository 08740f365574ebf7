"""The utility task in a real browser: a control participant and an explanation participant complete every round
of a study on a model that learned the shortcut set, in Debian's Chromium against `camstudy serve`.

The model is a tiny ABN trained for a few epochs on shortcut:train (seconds), the maps real Grad-CAM maps of its
decisions. The test photographs a learning trial (the image, the decision and the map) and a test trial (the
image only); with CAMSTUDY_SCREENSHOTS=docs/screenshots they land there, as the README's pictures.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from sqlalchemy import select

from _ui_fixtures import CHROMIUM_ARGS, SCREENSHOTS, TRIAL, Server, chromium_path, shots, take_part
from study.images import shortcut_items
from study.models import IMAGENET_MEAN, IMAGENET_STD, AttentionBranchNetwork
from study.models.training import SHORTCUT_ABN, LabelledImages, train_abn
from study.stimuli.build import build_study
from study.store.database import Participant, PlanRow, Response, open_study

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(chromium_path() is None, reason="Debian's chromium is not installed "
                       "(playwright cannot download its own browser here)"),
]
LAPTOP = {"width": 1366, "height": 768}
ROUNDS, LEARN, TEST = 2, 2, 3

CONFIG = f'''
name = "Can you predict the model?"
seed = 5
models = ["abn"]
images = "shortcut:test"
methods = ["gradcam"]
practice_trials = 0
attention_checks = 0

[weights]
abn = "abn.pt"

[text]
consent_md = "consent"
instructions_md = "Study how the model decides, then predict it."
debrief_md = "thanks"

[[tasks]]
type = "utility"
classes = ["0", "1", "3", "4"]
rounds = {ROUNDS}
learn = {LEARN}
test = {TEST}

[[tasks.questions]]
key = "relies_on"
label = "What does the model rely on?"
options = ["The digit's shape", "A small square in the left margin"]
answer = "A small square in the left margin"
'''


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("utility")
    recipe = SHORTCUT_ABN
    torch.manual_seed(0)
    net = AttentionBranchNetwork.from_backbone(recipe["backbone"], 4)
    meta = {"categories": ["0", "1", "3", "4"], "input_size": [recipe["size"]] * 2, "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD)}
    train_abn(net, LabelledImages(shortcut_items("train"), recipe["size"], IMAGENET_MEAN, IMAGENET_STD),
              epochs=6 if not SCREENSHOTS else recipe["epochs"], checkpoint=folder / "abn.pt", meta=meta, progress=False)
    (folder / "study.toml").write_text(CONFIG)
    build_study(folder / "study.toml", folder / "study", progress=False)
    return folder / "study"


@pytest.fixture(scope="module")
def server(study):
    s = Server(study).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield b
        b.close()


def test_a_control_and_an_explanation_participant_complete_every_round(server, study, browser, shots):
    missing = []
    photographed = set()

    def photograph(page, screen):
        """The first learning trial with a map and the first test trial, photographed once the stimuli are on."""
        if screen != "trial":
            return False
        page.locator(f"{TRIAL}[data-shown-at]").wait_for()      # every stimulus decoded and drawn
        kind = "learning" if page.get_by_text("The model chose").count() else "test"
        images = page.locator(TRIAL).locator("img").count()
        if (kind, images) in {("learning", 2), ("test", 1)} and kind not in photographed:
            page.screenshot(path=shots / f"{12 if kind == 'learning' else 13}-utility-{kind}.png", full_page=True)
            photographed.add(kind)
        return False

    for pid in ("first", "second"):
        context = browser.new_context(viewport=LAPTOP)
        page = context.new_page()
        page.on("response", lambda r: missing.append(r.url) if r.status >= 400 else None)
        answered = take_part(page, server.url, f"utility-{pid}", on_screen=photograph)
        assert answered == ROUNDS * (LEARN + TEST) + 1     # every round, then the question
        context.close()
    assert missing == []
    assert photographed == {"learning", "test"}

    folder = open_study(study)
    with folder.database.read() as s:
        people = s.scalars(select(Participant)).all()
        assert {p.condition for p in people} == {"gradcam", "none"} and all(p.completed_at for p in people)
        rows = s.execute(select(PlanRow.display, Response.response, Response.correct, Response.rt_ms)
                         .join(Response, Response.plan_row_id == PlanRow.id)).all()
    phases = [r.display["phase"] for r in rows]
    assert phases.count("learn") == 2 * ROUNDS * LEARN and phases.count("test") == 2 * ROUNDS * TEST
    assert all(r.response == "" and r.correct is None for r in rows if r.display["phase"] == "learn")
    assert all(r.correct is not None and r.rt_ms > 0 for r in rows if r.display["phase"] in ("test", "question"))
