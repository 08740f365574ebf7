"""Attention Branch Network: shapes, backbones, training (seeded, checkpointed, resumable), and what it attends to."""
from __future__ import annotations

import pytest
import torch
from torch.utils.data import Dataset, TensorDataset

from _squares import SIZE, SQUARE, squares, tiny_abn
from study.explainers import explain
from study.models import AttentionBranchNetwork, Classifier
from study.models.training import learning_rate, train_abn

pytestmark = pytest.mark.usefixtures("one_thread")  # small passes


def trained(epochs: int = 5, n: int = 512, seed: int = 0, **kw) -> AttentionBranchNetwork:
    torch.manual_seed(seed)
    net = tiny_abn()
    x, y, _ = squares(n, seed=100 + seed)
    train_abn(net, TensorDataset(x, y), epochs=epochs, batch_size=32, seed=seed, progress=False, **kw)
    return net


def test_attention_peaks_on_the_class_square_not_the_distractor():
    net = trained()
    x, y, corners = squares(200, seed=1)
    assert (net(x).argmax(1) == y).float().mean() >= 0.95
    maps = explain("abn", net, x)  # [B,H,W] at input resolution
    peak = maps.flatten(1).argmax(1)
    py, px = peak // SIZE, peak % SIZE
    y0, x0 = corners[:, 0, 0], corners[:, 0, 1]
    inside = (py >= y0) & (py < y0 + SQUARE) & (px >= x0) & (px < x0 + SQUARE)
    assert inside.float().mean() >= 0.9, inside.float().mean()


def test_shapes_and_ranges_of_attention_and_forward_all():
    net = tiny_abn(num_classes=5).eval()
    x = torch.rand(3, 3, 32, 32)
    att_logits, per_logits, m = net.forward_all(x)
    assert att_logits.shape == per_logits.shape == (3, 5) and m.shape == (3, 1, 16, 16)
    assert torch.equal(net(x), per_logits)
    a = net.attention(x)
    assert a.shape == (3, 16, 16) and torch.equal(a, m[:, 0]) and 0 <= a.min() and a.max() <= 1
    maps = explain("abn", net, x, torch.tensor([[0, 1], [2, 3], [4, 0]]), normalize=False)
    assert maps.shape == (3, 2, 32, 32) and torch.equal(maps[:, 0], maps[:, 1])  # class-agnostic


def test_abn_is_a_classifier_for_every_other_method_too():
    net = tiny_abn().eval()
    maps = explain("gradcam", net, torch.rand(2, 3, 32, 32), target_layer="perception.0")
    assert maps.shape == (2, 32, 32)


def test_explain_abn_refuses_other_models_also_when_wrapped():
    other = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                torch.nn.Linear(4, 3))
    x = torch.rand(1, 3, 16, 16)
    with pytest.raises(ValueError, match="not an AttentionBranchNetwork|is not one"):
        explain("abn", other, x)
    wrapped = Classifier(other, name="x", categories=["a", "b", "c"], target_layer="0", mean=(0,) * 3, std=(1,) * 3)
    with pytest.raises(ValueError, match="Sequential is not one"):
        explain("abn", wrapped, x)


@pytest.mark.parametrize("name,size,channels", [("resnet18", 64, 4), ("resnet50", 64, 4),
                                                ("efficientnet_lite0", 64, 4), ("tiny", 32, 16)])
def test_from_backbone_splits_where_the_paper_does(name, size, channels):
    net = AttentionBranchNetwork.from_backbone(name, num_classes=7).eval()
    att_logits, per_logits, m = net.forward_all(torch.rand(2, 3, size, size))
    assert att_logits.shape == per_logits.shape == (2, 7) and m.shape == (2, 1, channels, channels)
    assert net.backbone == name and net.num_classes == 7


def test_from_backbone_starts_from_a_local_state_dict_and_drops_its_classifier(tmp_path):
    import torchvision

    source = torchvision.models.resnet18(weights=None)
    torch.save(source.state_dict(), tmp_path / "r18.pt")
    net = AttentionBranchNetwork.from_backbone("resnet18", num_classes=4, weights=tmp_path / "r18.pt")
    assert torch.equal(net.extractor[0].weight, source.conv1.weight)
    assert torch.equal(net.perception[0][1].conv2.weight, source.layer4[1].conv2.weight)
    with pytest.raises(FileNotFoundError, match="backbone weights not found"):
        AttentionBranchNetwork.from_backbone("resnet18", num_classes=4, weights=tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="does not fit"):
        AttentionBranchNetwork.from_backbone("resnet50", num_classes=4, weights=tmp_path / "r18.pt")
    with pytest.raises(ValueError, match="unknown ABN backbone 'vgg16'"):
        AttentionBranchNetwork.from_backbone("vgg16", num_classes=4)


def test_same_seed_same_weights_bitwise():
    a, b = trained(epochs=2, n=128), trained(epochs=2, n=128)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name


class Crashing(Dataset):
    """A dataset that fails after `limit` items, as a run killed mid-way would."""

    def __init__(self, base: Dataset, limit: int):
        self.base, self.limit, self.served = base, limit, 0

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        self.served += 1
        if self.served > self.limit:
            raise RuntimeError("killed")
        return self.base[i]


def test_checkpoint_loads_with_weights_only_and_resuming_equals_uninterrupted(tmp_path):
    x, y, _ = squares(96, seed=5)
    data = TensorDataset(x, y)
    kw = dict(epochs=3, batch_size=32, lr=0.05, seed=3, progress=False)
    torch.manual_seed(0)
    whole = tiny_abn()
    initial = {k: v.clone() for k, v in whole.state_dict().items()}
    train_abn(whole, data, checkpoint=tmp_path / "whole.pt", **kw)

    interrupted = tiny_abn()
    interrupted.load_state_dict(initial)
    with pytest.raises(RuntimeError, match="killed"):
        train_abn(interrupted, Crashing(data, limit=len(data) + 10), checkpoint=tmp_path / "run.pt", **kw)
    saved = torch.load(tmp_path / "run.pt", weights_only=True)
    assert saved["epoch"] == 1 and set(saved) >= {"model", "optimizer", "epoch", "meta"}

    resumed = tiny_abn()
    history = train_abn(resumed, data, resume=tmp_path / "run.pt", checkpoint=tmp_path / "run.pt", **kw)
    assert [h["epoch"] for h in history] == [2, 3]
    for (name, pa), pb in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(pa, pb), name
    assert torch.load(tmp_path / "run.pt", weights_only=True)["epoch"] == 3


def test_learning_rate_is_divided_by_ten_at_half_and_three_quarters():
    assert [learning_rate(0.1, e, 8) for e in range(8)] == pytest.approx([0.1] * 4 + [0.01] * 2 + [0.001] * 2)


def test_training_errors_name_the_problem():
    x = torch.rand(4, 3, 32, 32)
    with pytest.raises(ValueError, match="trains an AttentionBranchNetwork"):
        train_abn(torch.nn.Linear(2, 2), TensorDataset(x, torch.zeros(4, dtype=torch.long)), epochs=1)
    with pytest.raises(ValueError, match=r"labels must be 0..2, got 0..7"):
        train_abn(tiny_abn(), TensorDataset(x, torch.tensor([0, 1, 7, 2])), epochs=1, progress=False)
