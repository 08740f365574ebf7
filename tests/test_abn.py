"""Attention Branch Network: shapes, backbones, training (seeded, checkpointed, resumable), and what it attends to."""
from __future__ import annotations

import pytest
import torch
from torch.utils.data import Dataset, TensorDataset

from _squares import SQUARE, class_boxes, default_branch_abn, squares, tiny_abn
from metrics import pointing_game
from study.explainers import explain
from study.models import AttentionBranchNetwork, Classifier, load_model
from study.models.abn import CHECKPOINT_FORMAT
from study.models.training import learning_rate, train_abn

pytestmark = pytest.mark.usefixtures("one_thread")  # small passes


def trained(epochs: int = 5, n: int = 512, seed: int = 0, build=tiny_abn, size: int = 32,
            **kw) -> AttentionBranchNetwork:
    torch.manual_seed(seed)
    net = build()
    x, y, _ = squares(n, seed=100 + seed, size=size)
    train_abn(net, TensorDataset(x, y), epochs=epochs, batch_size=32, seed=seed, progress=False, **kw)
    return net


def test_attention_peaks_on_the_class_square_not_the_distractor():
    net = trained()
    x, y, corners = squares(200, seed=1)
    assert (net(x).argmax(1) == y).float().mean() >= 0.95
    inside = pointing_game(explain("abn", net, x), class_boxes(corners), tolerance=0)  # maps at input resolution
    assert inside.float().mean() >= 0.9, inside.float().mean()


@pytest.mark.slow
@pytest.mark.parametrize("build,tolerance", [(default_branch_abn, 0),
                                             (lambda: AttentionBranchNetwork.from_backbone("tiny", 3), 2)],
                         ids=["custom-parts", "tiny"])
def test_the_default_branch_attends_to_the_class_square_on_every_seed(build, tolerance):
    """Six seeds of the 12x12 recipe, each scored on the same 200 held-out images: M's peak on the class square.

    Custom parts: strictly on it on every seed. tiny: within one attention cell (2 px) on every seed and strictly
    on it in 95% of images over the seeds: its stride-2 extractor sees 2 px past a cell, so the cell beside the
    square sees the square's edge (strictly on it: 100% but 88% on seed 2). Both failed with the former branch of
    3x3 convolutions (strictly on the square: 58-100% and 30-75% per seed; tiny within 2 px: 80-95%), and custom
    parts with signed class-map weights on seed 1 (66%: one class recognised by absence); see docs/METHODS.md."""
    x, y, corners = squares(200, seed=1, size=24)
    boxes = class_boxes(corners)
    strict, near = [], []
    for seed in range(6):
        net = trained(seed=seed, build=build, size=24)
        assert (net(x).argmax(1) == y).float().mean() >= 0.95
        maps = explain("abn", net, x)
        strict.append(pointing_game(maps, boxes, tolerance=0).float().mean().item())
        near.append(pointing_game(maps, boxes, tolerance=tolerance).float().mean().item())
    assert min(near) >= 0.95 and sum(strict) / len(strict) >= 0.95, (strict, near)


@pytest.mark.parametrize("build", [default_branch_abn, lambda: AttentionBranchNetwork.from_backbone("tiny", 3)],
                         ids=["custom-parts", "tiny"])
def test_every_class_map_starts_open_on_the_squares_and_closed_on_the_background(build):
    """Untrained, over 20 seeds: each class map is positive (open) on most square cells and few background cells.
    With signed class-map weights, 43-44 of 50 seeds start some class map open on under half of the square cells
    (closed where its class's evidence will be), the start of recognising that class by absence."""
    x, _, corners = squares(64, seed=0, size=24)
    cells = torch.zeros(len(x), 24, 24, dtype=torch.bool)
    for i, (y0, x0) in enumerate(corners.flatten(0, 1).tolist()):
        cells[i // 2, y0:y0 + SQUARE, x0:x0 + SQUARE] = True  # both squares, class and distractor
    cells = cells[:, ::2, ::2]  # at the 12x12 attention cells
    for seed in range(20):
        torch.manual_seed(seed)
        net = build().train()  # batch statistics, as at the first training step
        with torch.no_grad():
            open_ = net.class_maps(net.branch(net.extractor(x))) > 0  # [B,K,12,12]
        on_squares = (open_ & cells[:, None]).sum((0, 2, 3)) / cells.sum()
        on_background = (open_ & ~cells[:, None]).sum((0, 2, 3)) / (~cells).sum()
        assert on_squares.min() >= 0.6 and on_background.max() <= 0.3, (seed, on_squares, on_background)


def test_a_checkpoint_of_the_former_3x3_branch_fails_with_a_clear_message(tmp_path):
    net = AttentionBranchNetwork.from_backbone("tiny", 3)
    state = net.state_dict()
    state["branch.body.0.weight"] = torch.zeros(32, 32, 3, 3)  # as the default branch was before it became pointwise
    meta = {"backbone": "tiny", "num_classes": 3, "categories": ["a", "b", "c"], "input_size": [32, 32],
            "mean": [0.5] * 3, "std": [0.5] * 3}
    torch.save({"format": CHECKPOINT_FORMAT, "model": state, "optimizer": {}, "epoch": 1, "seed": 0, "meta": meta},
               tmp_path / "old.pt")
    with pytest.raises(ValueError, match=r"old.pt does not fit this ABN \(size mismatch for branch.body.0.weight.*"
                                         r"must be retrained"):
        load_model("abn", weights=tmp_path / "old.pt")
    x, y, _ = squares(8, seed=0)
    with pytest.raises(ValueError, match="does not fit this ABN"):
        train_abn(net, TensorDataset(x, y), epochs=2, resume=tmp_path / "old.pt", progress=False)


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
