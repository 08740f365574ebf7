"""The embedded default classifies real photos; other models load from local files only."""
import sys
import textwrap

import pytest
import torch

from study import Classifier, load_model
from study.images import bundled_images


@pytest.fixture(scope="module")
def default_model():
    return load_model("efficientnet_lite0")


def test_default_model_classifies_the_bundled_photos(default_model):
    items = [item for item in bundled_images() if item.labels]
    x = default_model.preprocess([item.image for item in items])
    assert x.shape == (len(items), 3, 224, 224)
    with torch.no_grad():
        top3 = default_model(x).topk(3, dim=1).indices
    top1_right = {item.image_id: int(t[0]) in item.labels for item, t in zip(items, top3)}
    # The rocket is read as 'drilling platform' first (its gantries), missile/projectile next.
    assert all(ok for image_id, ok in top1_right.items() if image_id != "rocket"), top1_right
    assert all(set(t.tolist()) & set(item.labels) for item, t in zip(items, top3))
    assert default_model.categories[int(top3[0, 0])] in ("tabby", "tiger cat", "Egyptian cat")


def test_default_model_contract(default_model):
    assert isinstance(default_model, Classifier) and isinstance(default_model, torch.nn.Module)
    assert len(default_model.categories) == 1000 and default_model.categories[967] == "espresso"
    assert default_model.target_layer == "network._head_act"
    assert default_model.input_size == (224, 224)
    # (x*255 - 127) / 128 scaling of EfficientNet-Lite
    x = default_model.preprocess([torch.full((8, 8, 3), 255, dtype=torch.uint8).numpy()])
    assert torch.allclose(x, torch.full_like(x, 1.0))


def test_preprocess_rejects_bad_images(default_model):
    import numpy as np

    with pytest.raises(ValueError, match="shape"):
        default_model.preprocess([np.zeros((4, 4, 5), np.uint8)])
    with pytest.raises(ValueError, match="uint8"):
        default_model.preprocess([np.zeros((4, 4, 3), np.float32)])
    with pytest.raises(ValueError, match="at least one"):
        default_model.preprocess([])


def test_torchvision_model_weights_from_file(tmp_path):
    reference = load_model("resnet18", weights="random")
    path = tmp_path / "r18.pt"
    torch.save(reference.network.state_dict(), path)
    loaded = load_model("resnet18", weights=path)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(loaded(x), reference(x))
    assert loaded.target_layer == "network.layer4"


def test_model_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown model"):
        load_model("resnet9000")
    with pytest.raises(FileNotFoundError, match="no local weights"):
        load_model("resnet18")  # no hub cache here, and nothing is downloaded
    with pytest.raises(FileNotFoundError, match="not found"):
        load_model("resnet18", weights=tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read weights"):
        load_model("resnet18", weights=bad)


def test_user_model_from_module_callable(tmp_path, monkeypatch):
    (tmp_path / "my_models.py").write_text(textwrap.dedent("""
        import torch
        def tiny():
            return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
                                       torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 3))
        def not_a_module():
            return 42
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    model = load_model("my_models:tiny")
    assert model.categories == ["class 0", "class 1", "class 2"]
    assert model.target_layer == "network.1"
    with pytest.raises(ValueError, match="not a torch.nn.Module"):
        load_model("my_models:not_a_module")
    with pytest.raises(ValueError, match="cannot load model"):
        load_model("my_models:missing")
    sys.modules.pop("my_models", None)


def test_input_size_suffix_makes_a_lower_resolution_model(default_model):
    small = load_model("efficientnet_lite0@160")
    assert small.name == "efficientnet_lite0@160" and small.input_size == (160, 160)
    x = small.preprocess([bundled_images()[0].image])
    assert x.shape == (1, 3, 160, 160)
    assert torch.equal(small.network._fc.weight, default_model.network._fc.weight)
    with pytest.raises(ValueError, match="input size"):
        load_model("efficientnet_lite0@huge")
