"""`camstudy build`: study folders, rebuild rules, clear refusals, and real rendered maps."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from sqlalchemy import func, select

from _study_fixtures import FakeRenderer, build_fake_study, fake_items, write_config
from study.stimuli.build import build_study
from study.cli import main
from study.images import bundled_images, composite
from study.survey.session import SurveySession
from study.store.database import Stimulus, Study, Trial, open_database


def fake_build(config, out, renderer=None, **options):
    return build_study(config, out, progress=False, renderer=renderer or FakeRenderer(("img7",)),
                       items=fake_items(), combine=composite, **options)


def test_a_study_folder_holds_its_config_database_and_stimuli(tmp_path):
    study_dir = build_fake_study(tmp_path)
    assert (study_dir / "study.toml").read_text() == (tmp_path / "config" / "config.toml").read_text()
    session = SurveySession(study_dir)
    with session.db.read() as s:
        paths = s.scalars(select(Stimulus.path)).all()
        tasks_built = set(s.scalars(select(Trial.task)).all())
    assert tasks_built == {"class_discrimination", "compare", "rating", "trust", "distinction", "agreement"}
    assert paths and all(p.startswith("stimuli/") and (study_dir / p).is_file() for p in paths)
    assert len(set(paths)) == len(paths)


def test_rebuilding_the_same_config_is_a_no_op(tmp_path):
    config = write_config(tmp_path / "config")
    first = fake_build(config, tmp_path / "study")
    renderer = FakeRenderer()
    assert fake_build(config, tmp_path / "study", renderer) == first
    assert renderer.rendered == 0


def test_a_retrained_weights_file_rebuilds_and_is_refused_once_there_are_answers(tmp_path):
    config = write_config(tmp_path / "config")
    config.write_text(config.read_text() + '\n[weights]\nm1 = "m1.pt"\n')
    weights = tmp_path / "config" / "m1.pt"
    weights.write_bytes(b"first training run")
    study_dir = tmp_path / "study"
    first = fake_build(config, study_dir)
    assert fake_build(config, study_dir) == first  # the same config and weights: nothing to do

    weights.write_bytes(b"retrained, saved over the first")  # the config, and its hash, stay as they were
    renderer = FakeRenderer()
    second = fake_build(config, study_dir, renderer)
    assert second != first and renderer.rendered > 0  # the stimuli are made again from the new weights

    session = SurveySession(study_dir)
    pid = session.consent("someone", True).participant_id
    trial = session.next_trial(pid)
    session.answer(pid, trial.trial_index, trial.options[0][0], 500)
    weights.write_bytes(b"retrained again")
    with pytest.raises(ValueError, match="1 answers and the weights file of m1 changed.*--force-new"):
        fake_build(config, study_dir)
    assert fake_build(config, study_dir, force_new=True) not in (first, second)
    weights.unlink()
    with pytest.raises(FileNotFoundError, match="weights file of 'm1' not found"):
        fake_build(config, study_dir)


def test_a_changed_config_is_refused_once_there_are_answers_unless_forced(tmp_path):
    config = write_config(tmp_path / "config")
    study_dir = tmp_path / "study"
    first = fake_build(config, study_dir)
    session = SurveySession(study_dir)
    pid = session.consent("someone", True).participant_id
    trial = session.next_trial(pid)
    session.answer(pid, trial.trial_index, trial.options[0][0], 500)

    config.write_text(config.read_text().replace('seed = 11', 'seed = 12'))
    with pytest.raises(ValueError, match="already has 1 answers.*--force-new"):
        fake_build(config, study_dir)
    assert main(["build", str(config), "--out", str(study_dir), "--quiet"]) == 2
    second = fake_build(config, study_dir, force_new=True)
    assert second != first
    assert SurveySession(study_dir).study_id == second          # the survey moves to the new version
    with open_database(f"sqlite:///{study_dir / 'study.db'}").read() as s:
        assert s.scalar(select(func.count(Study.id))) == 2     # the old version and its answers stay


def test_bad_builds_fail_with_clear_messages(tmp_path):
    too_many = """
[[tasks]]
type = "rating"
trials = 9
"""
    with pytest.raises(ValueError, match=r"trials = 9 but only 7 usable images"):
        fake_build(write_config(tmp_path / "a", too_many), tmp_path / "out-a")
    missing_folder = write_config(tmp_path / "b").read_text().replace('images = "bundled"', 'images = "photos"')
    (tmp_path / "b" / "config.toml").write_text(missing_folder)
    with pytest.raises(FileNotFoundError, match="photos"):
        build_study(tmp_path / "b" / "config.toml", tmp_path / "out-b", progress=False, renderer=FakeRenderer())
    with pytest.raises(FileNotFoundError, match="study config not found"):
        build_study(tmp_path / "nope.toml", tmp_path / "out-c")
    assert not (tmp_path / "out-b" / "study.toml").exists()


def test_a_missing_or_broken_image_file_is_named(tmp_path):
    folder = tmp_path / "config" / "voc"
    (folder / "ann").mkdir(parents=True)
    (folder / "img").mkdir()
    (folder / "ann" / "a.xml").write_text(
        "<annotation><filename>gone.jpg</filename><object><name>tabby</name>"
        "<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object></annotation>")
    config = write_config(tmp_path / "config")
    config.write_text(config.read_text().replace('images = "bundled"', 'images = "voc:voc/img:voc/ann"'))
    with pytest.raises(FileNotFoundError, match="gone.jpg"):
        build_study(config, tmp_path / "out", progress=False, renderer=FakeRenderer())
    (folder / "img" / "gone.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="gone.jpg"):
        build_study(config, tmp_path / "out", progress=False, renderer=FakeRenderer())


REAL = """
name = "real maps"
seed = 3
models = ["efficientnet_lite0"]
images = "bundled"
methods = ["cam", "gradcam"]
practice_trials = 0
attention_checks = 0

[text]
consent_md = "c"
instructions_md = "i"
debrief_md = "d"

[[tasks]]
type = "rating"
"""


@pytest.mark.slow
def test_real_stimuli_are_the_explainers_maps_over_the_photos(tmp_path):
    from study.explainers import explain
    from study.models import load_model
    from study.stimuli.render import overlay

    config = tmp_path / "real.toml"
    config.write_text(REAL)
    items = [i for i in bundled_images() if i.labels][1:2]
    build_study(config, tmp_path / "study", progress=False, items=items, combine=composite)
    session = SurveySession(tmp_path / "study")
    with session.db.read() as s:
        stimuli = s.scalars(select(Stimulus)).all()
    assert {(s.method, s.target_class) for s in stimuli} == {(m, i.labels[0]) for m in ("cam", "gradcam") for i in items}
    # Recompute one stimulus independently: the PNG must be that map over that photo.
    model = load_model("efficientnet_lite0")
    item = items[0]
    chosen = next(s for s in stimuli if s.method == "gradcam" and s.target_class == item.labels[0])
    saliency = explain("gradcam", model, model.preprocess([item.image]), torch.tensor([item.labels[0]]))[0]
    display = item.image.copy()
    display.thumbnail((448, 448))
    expected = np.asarray(overlay(display, saliency), dtype=np.int16)
    stored = np.asarray(Image.open(tmp_path / "study" / chosen.path).convert("RGB"), dtype=np.int16)
    assert stored.shape == expected.shape
    assert np.abs(stored - expected).max() <= 2


def test_two_object_images_are_used_as_they_are_and_single_ones_as_composites(tmp_path):
    from study.images import ImageItem
    duo = ImageItem(image_id="duo", image=Image.new("RGB", (40, 20)), labels=(16, 18),
                    boxes=((0, 0, 20, 20), (20, 0, 40, 20)), source="voc:duo")
    config = write_config(tmp_path / "config", '[[tasks]]\ntype = "class_discrimination"\ncomposites = 3\n',
                          practice=0, attention=0)
    build_study(config, tmp_path / "study", progress=False, renderer=FakeRenderer(),
                items=[*fake_items(4), duo], combine=composite)
    with SurveySession(tmp_path / "study").db.read() as s:
        trials = s.execute(select(Trial.image_id, Trial.target_class)).all()
    by_image = {}
    for image_id, target in trials:
        by_image.setdefault(image_id, set()).add(target)
    assert by_image.pop("duo") == {16, 18}                     # both objects get explained
    assert len(by_image) == 3 and all("+" in i for i in by_image)
    for image_id, targets in by_image.items():                 # a composite explains each half's class
        left, right = image_id.split("+")
        assert targets == {2 * int(left[3:]), 2 * int(right[3:])}
