"""The `examples` task: its config keys, its units and specs, its scoring, and a study built, answered and
exported with it (fake pictures, so no torch); the real pictures on a tiny model trained on the digits."""
from __future__ import annotations

import random

import pytest
from PIL import Image

from _study_fixtures import NAMES, FakeRenderer, build_fake_study, fake_items
from study.protocol.config import ConfigError, parse_config
from study.protocol.tasks import TASKS, ExampleRequest, UnitContext

HEAD = """\
name = "t"
images = "bundled"
methods = ["gradcam"]
attention_checks = 0
text = { consent_md = "c", instructions_md = "i", debrief_md = "d" }

[[tasks]]
type = "examples"
"""


def task(extra: str = 'train_images = "digits:train"\n'):
    return parse_config(HEAD + extra, filename="study.toml").tasks[0]


def test_defaults_and_the_methods_it_takes():
    t = task()
    o = t.options
    assert (t.methods, o.k, o.choices, o.l2, o.train_images, o.confidence_points) == (
        ("influence",), 4, 4, 1e-4, "digits:train", 4)
    assert task('train_images = "digits"\nmethods = ["influence", "similarity"]\n').methods == (
        "influence", "similarity")


@pytest.mark.parametrize("extra, match", [
    ("", r"tasks\[0\]: missing required key 'train_images'"),
    ('train_images = "digits:train"\nk = 0\n', r"tasks\[0\]\.k: must be >= 1"),
    ('train_images = "digits:train"\nk = 9\n', r"tasks\[0\]\.k: must be at most 8"),
    ('train_images = "digits:train"\nchoices = 5\n', r"tasks\[0\]\.choices: must be 2, 3 or 4"),
    ('train_images = "digits:train"\nchoices = 1\n', r"tasks\[0\]\.choices: must be >= 2"),
    ('train_images = "digits:train"\nl2 = 0.0\n', r"tasks\[0\]\.l2: must be > 0"),
    ('train_images = "digits:train"\nl2 = "small"\n', r"tasks\[0\]\.l2: must be float"),
    ('train_images = "digits:valid"\n', r"tasks\[0\]\.train_images: unknown digits set"),
    ('train_images = "../elsewhere"\n', r"tasks\[0\]\.train_images: .*leaves the study folder"),
    ('train_images = "digits"\nmethods = ["gradcam"]\n', r"tasks\[0\]\.methods: unknown name 'gradcam'"),
    ('train_images = "digits"\nconfidence_points = 3\n', r"tasks\[0\]\.confidence_points: must be 4 or 5"),
    ('train_images = "digits"\ntop_k = 3\n', r"tasks\[0\]\.top_k: unknown key"),
])
def test_config_mistakes_name_the_key(extra, match):
    with pytest.raises(ConfigError, match=match):
        task(extra)


def test_units_offer_the_prediction_and_the_next_classes_and_score_only_the_prediction():
    plugin, t = TASKS["examples"], task('train_images = "digits"\nchoices = 3\nk = 2\n')
    items = fake_items(3)
    predictions = {t.model: FakeRenderer(wrong=("img2",)).predict(t.model, items)}
    units = plugin.units(t, items, UnitContext(predictions, {}, None, None, random.Random(0)))
    assert [u.classes for u in units] == [(0, 2, 3), (2, 0, 1), (0, 1, 4)]
    wrong = units[2]                      # img2 is mispredicted: the right answer is still the prediction
    assert wrong.answer == 0 and 4 not in (wrong.answer,)
    [cond] = plugin.conditions(t)
    assert plugin.maps(t, wrong, cond) == [ExampleRequest("img2", t.model, "influence", (0,), "digits", 2, 1e-4)]
    spec = plugin.spec(t, wrong, cond, NAMES)
    assert "Which class will the model predict" in spec.prompt_md and "2 training images" in spec.prompt_md
    assert spec.options == (("0", "class 0"), ("1", "class 1"), ("4", "class 4")) and spec.shuffle_options
    display = spec.randomise(random.Random(3))
    assert spec.score(display, "0") == (True, None)
    assert spec.score(display, "4") == (False, None)   # the image's true class is not what is asked
    assert "class 0" in spec.feedback_md


EXAMPLES = """
[[tasks]]
type = "examples"
methods = ["influence", "similarity"]
train_images = "digits:train"
k = 3
choices = 3
trials = 4
confidence_points = 5
"""


def test_a_study_with_the_examples_task_builds_simulates_and_exports(tmp_path):
    from study.results.analysis import task_measures
    from study.results.export import export_tables
    from study.survey.session import SurveySession
    from study.survey.simulator import simulate_participants
    from study.store.database import Stimulus

    study = build_fake_study(tmp_path, tasks=EXAMPLES, practice=1, attention=1)
    session = SurveySession(study)
    with session.db.read() as s:
        stimuli = s.query(Stimulus).all()
    assert len(stimuli) == 2 * 8 and all(s.meta["k"] == 3 and s.meta["train_images"] == "digits:train" for s in stimuli)
    assert {s.method for s in stimuli} == {"influence", "similarity"}
    assert all((study / s.path).is_file() and "__k3__" in s.path for s in stimuli)

    simulate_participants(study, 4, {"influence": 1.0, "similarity": 0.0}, seed=1)
    tables = export_tables(study, n_resamples=50)
    main = tables["responses"].query("not is_practice and not is_attention_check")
    assert set(main["task"]) == {"examples"} and len(main) == 16
    by_method = main.groupby("method")["correct"].mean().to_dict()
    assert by_method == {"influence": 1.0, "similarity": 0.0}
    assert main["confidence"].between(1, 5).all()
    summary = tables["summary"].query("task == 'examples'")
    assert {(m, measure) for m, measure in zip(summary["method"], summary["measure"])} == {
        (m, measure) for m in ("influence", "similarity") for measure in ("accuracy", "confidence")}
    assert [m.name for m in task_measures("examples")] == ["accuracy", "confidence"]
    codebook = tables["codebook"].set_index(["file", "column"])
    assert "examples a class index: the class the participant expects" in codebook.loc[("responses.csv", "response"), "description"]


def test_a_participant_answer_is_scored_against_the_models_prediction(tmp_path):
    from study.survey.session import SurveySession

    study = build_fake_study(tmp_path, tasks=EXAMPLES, practice=0, attention=0, wrong=("img3",))
    session = SurveySession(study)
    pid = session.consent("P1", True).participant_id
    while (trial := session.next_trial(pid)) is not None:
        template = session.built.trial(trial.trial_id)
        assert len(trial.images) == 1 and trial.captions[0].startswith("The image, and the 3")
        wrong = next(v for v, _ in trial.options if v != template.spec.answer)
        outcome = session.answer(pid, trial.trial_index, wrong if trial.trial_index % 2 else template.spec.answer,
                                 500, confidence="3")
        assert outcome.correct == (trial.trial_index % 2 == 0)
        assert template.target_class == int(template.spec.answer)


def tiny_digit_classifier(categories):
    """A linear classifier of 8x8 digits (a last linear layer over features, as influence needs), fitted briefly."""
    import torch
    from torch import nn

    from study.models import Classifier

    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 16), nn.ReLU(), nn.Linear(16, len(categories)))
    return Classifier(net, name="tiny", categories=categories, target_layer="network.0", mean=(0.5,) * 3,
                      std=(0.5,) * 3, input_size=(8, 8))


def test_real_example_pictures_never_show_the_image_itself_and_name_the_labels(monkeypatch):
    import study.stimuli.render
    from study.images.digits import DIGIT_CLASSES
    from study.stimuli.example_pictures import TrainingPool, example_pictures
    from study.images import image_set

    model = tiny_digit_classifier(DIGIT_CLASSES)
    pool = TrainingPool.load("digits", None, model)
    assert len(pool.items) == 1797 and pool.labels[:3].tolist() == [0, 1, 2]
    tests = image_set("digits")[:3]
    shown = []
    monkeypatch.setattr(study.stimuli.render, "examples_picture", lambda image, examples: shown.append(examples) or image)
    for method in ("similarity", "influence"):
        shown.clear()
        requests = [ExampleRequest(t.image_id, "tiny", method, (t.labels[0],), "digits", 3, 1e-2) for t in tests]
        pictures = example_pictures(model, pool, tests, requests)
        assert [len(p) for p in pictures] == [1, 1, 1] and [len(s) for s in shown] == [3, 3, 3]
        assert all(label in DIGIT_CLASSES for examples in shown for _, label in examples)
        if method == "similarity":      # without the exclusion each image would be its own nearest neighbour
            ids = {id(item.image): item.image_id for item in pool.items}
            for test, examples in zip(tests, shown):
                assert test.image_id not in {ids[id(picture)] for picture, _ in examples}


def test_training_classes_must_be_the_models(tmp_path):
    from study.stimuli.example_pictures import TrainingPool

    for name in ("cat", "dog"):
        (tmp_path / "train" / name).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / "train" / name / "a.png")
    model = tiny_digit_classifier(["cat", "bird"])
    with pytest.raises(ValueError, match="classes dog are not classes of model 'tiny'"):
        TrainingPool.load("train", tmp_path, model)
    with pytest.raises(FileNotFoundError, match="image folder not found.*folder of class folders"):
        TrainingPool.load("missing", tmp_path, model)


def test_example_pictures_put_the_image_first_and_write_each_label():
    from study.stimuli.render import examples_picture

    image = Image.new("RGB", (64, 64), "red")
    picture = examples_picture(image, [(Image.new("RGB", (32, 16), "blue"), "3")] * 4, cell=64)
    assert picture.size == (4 + 64 + 16 + 4 * 68, 4 + 64 + 12 + 4)
    assert picture.getpixel((4 + 32, 4 + 32)) == (255, 0, 0)               # the image on the left
    assert picture.getpixel((4 + 64 + 16 + 32, 4 + 32)) == (0, 0, 255)     # then the examples
    label_band = picture.crop((4 + 64 + 16, 4 + 64, 4 + 64 + 16 + 64, 4 + 64 + 12))
    assert label_band.convert("L").getextrema()[0] < 128                    # with their labels written
