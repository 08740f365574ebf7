"""The examples task in a real browser: a participant sees the image beside its training examples (one
picture with alt text), answers with a class and a confidence, and the answer is stored and scored
against the model's prediction."""
from __future__ import annotations

import pytest
from PIL import Image

from _study_fixtures import FakeRenderer, fake_items, write_config
from _ui_fixtures import CHROMIUM_ARGS, Server, chromium_path, take_part
from study.stimuli.build import build_study
from study.images import composite
from study.stimuli.render import examples_picture

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(chromium_path() is None, reason="Debian's chromium is not installed "
                       "(playwright cannot download its own browser here)"),
]
TASK = """
[[tasks]]
type = "examples"
train_images = "digits:train"
k = 3
choices = 3
trials = 3
confidence_points = 4
"""


class ExamplesSketch(FakeRenderer):
    """Real example pictures (the layout people see) of made-up training images."""

    def examples(self, items, requests):
        shades = [Image.new("RGB", (24, 24), (40 * j, 120, 200)) for j in range(3)]
        return [[examples_picture(item.image, [(shade, f"class {r.targets[0]}") for shade in shades[: r.k]])]
                for item, r in zip(items, requests)]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("examples-ui")
    out = tmp / "study"
    build_study(write_config(tmp / "config", TASK, practice=1, attention=0), out, progress=False,
                renderer=ExamplesSketch(wrong=("img2",)), items=fake_items(5), combine=composite)
    return out


def test_a_participant_sees_the_examples_answers_and_is_scored(study):
    from playwright.sync_api import sync_playwright

    from study.results.export import export_tables

    seen = []

    def look(page, screen):
        if screen == "trial":
            picture = page.get_by_role("img", name="The image, and the 3 most helpful training images with their labels")
            seen.append((picture.count(), page.get_by_text("Which class will the model predict").count(),
                         page.get_by_role("radiogroup").count()))
        return False

    server = Server(study).start()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1366, "height": 768})
            page.set_default_timeout(30_000)
            assert take_part(page, server.url, "P-examples", on_screen=look) == 4
            browser.close()
    finally:
        server.stop()
    assert seen and all(s == (1, 1, 2) for s in seen), seen     # the picture, the question, class + confidence
    responses = export_tables(study, n_resamples=10)["responses"]
    mine = responses[responses.external_id == "P-examples"]
    assert len(mine) == 4 and set(mine["task"]) == {"examples"}
    assert mine["confidence"].between(1, 4).all()
    assert (mine["correct"] == (mine["response"] == mine["target_class"].astype(str))).all()
