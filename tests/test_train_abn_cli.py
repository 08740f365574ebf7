"""`camstudy train-abn` and the digits image set: train, write a checkpoint, load it back, explain with it."""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from study.cli import main
from study.protocol.config import parse_config
from study.models.training import labelled_dataset
from study.explainers import explain
from study.images import image_set
from study.models import Classifier, load_model


def test_digits_are_an_image_set_of_real_labelled_scans():
    items = image_set("digits")
    assert len(items) == 1797 and items[0].image_id == "digits/0000"
    assert {i.labels[0] for i in items} == set(range(10))
    assert items[0].image.mode == "RGB" and items[0].image.size == (64, 64)
    parse_config('name = "d"\nimages = "digits"\nmethods = ["abn"]\n[text]\nconsent_md = "c"\n'
                 'instructions_md = "i"\ndebrief_md = "d"\n[[tasks]]\ntype = "rating"\n')


def test_an_image_folder_is_a_labelled_dataset(tmp_path):
    for name, colour in (("cat", 200), ("dog", 30)):
        (tmp_path / name).mkdir()
        Image.fromarray(np.full((20, 30, 3), colour, np.uint8)).save(tmp_path / name / "a.png")
    data, classes = labelled_dataset(tmp_path, 16, (0.5,) * 3, (0.5,) * 3)
    assert classes == ["cat", "dog"] and len(data) == 2
    x, y = data[1]
    assert x.shape == (3, 16, 16) and y == 1 and torch.allclose(x, torch.full_like(x, 30 / 255 * 2 - 1), atol=1e-6)


def test_train_abn_on_digits_writes_a_checkpoint_load_model_explains_with(tmp_path, capsys):
    out = tmp_path / "abn.pt"
    code = main(["train-abn", "--images", "digits", "--backbone", "tiny", "--epochs", "1", "--size", "16",
                 "--batch-size", "128", "--device", "cpu", "--out", str(out)])
    assert code == 0 and out.is_file() and "load_model('abn'" in capsys.readouterr().out
    model = load_model("abn", weights=out)
    assert isinstance(model, Classifier) and model.categories == [str(d) for d in range(10)]
    assert model.input_size == (16, 16)
    items = image_set("digits")[:8]
    x = model.preprocess([i.image for i in items])
    maps = explain("abn", model, x)
    assert maps.shape == (8, 16, 16) and 0 <= maps.min() and maps.max() <= 1
    assert explain("gradcam", model, x).shape == (8, 16, 16)  # the usual methods work on it too
    trained = torch.load(out, weights_only=True)
    assert trained["epoch"] == 1 and trained["model"]["extractor.1.running_mean"].abs().sum() > 0  # it trained


def test_train_abn_errors_are_one_line(tmp_path, capsys):
    code = main(["train-abn", "--images", str(tmp_path / "none"), "--backbone", "tiny", "--epochs", "1",
                 "--out", str(tmp_path / "x.pt")])
    assert code == 2 and "image folder not found" in capsys.readouterr().err
    torch.save({"weight": torch.zeros(1)}, tmp_path / "plain.pt")
    try:
        load_model("abn", weights=tmp_path / "plain.pt")
    except ValueError as err:
        assert "is not an ABN checkpoint" in str(err)
    else:
        raise AssertionError("a plain state dict was loaded as an ABN")
