"""Perturbation explainers: Score-CAM, Ablation-CAM, RISE, LIME and the `random` baseline.

Checked against planted-signal models with a known answer (tests/_planted.py), against the papers'
formulas written out one channel / one mask at a time, and against pytorch-grad-cam, lime and sklearn
as independent oracles.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from _planted import PlantedNet, boxes, in_box, planted_images
from study.explainers import explain
from study.explainers import ablation as ablation_module
from study.explainers.lime import lime_coefficients, superpixels, weighted_ridge
from study.explainers.rise import rise_masks

SIZE = 32
FAST = {  # options small enough for fast CPU tests of determinism and batching
    "scorecam": {},
    "ablationcam": {},
    "rise": {"n_masks": 60},
    "lime": {"num_samples": 40, "n_segments": 30},
    "random": {},
}
PLANTED = {  # enough masks / samples to find the planted boxes reliably
    "scorecam": {},
    "ablationcam": {},
    "rise": {"n_masks": 400},
    "lime": {"num_samples": 300, "n_segments": 100},
}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def resnet18():
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None, num_classes=10).eval()


def both_classes(n: int) -> torch.Tensor:
    return torch.tensor([[0, 1]] * n)


def top_region_in_box(maps: torch.Tensor, box) -> torch.Tensor:
    """For piecewise-constant maps (LIME): most pixels of the top-valued region lie inside `box`."""
    x0, y0, x1, y1 = box
    top = maps == maps.flatten(-2).amax(-1)[..., None, None]
    return top[..., y0:y1, x0:x1].sum((-2, -1)) * 2 > top.sum((-2, -1))


@pytest.mark.parametrize("head", ["gap", "fc"])
@pytest.mark.parametrize("method", PLANTED)
def test_each_class_map_points_to_its_own_planted_box(method, head):
    size = 64 if method == "lime" else SIZE  # superpixels need room: an 8x8 box is smaller than one of them
    model, x = PlantedNet(head, size=size), planted_images(2, size)
    maps = explain(method, model, x, both_classes(2), seed=0, **PLANTED[method])
    assert maps.shape == (2, 2, size, size)
    check = top_region_in_box if method == "lime" else in_box
    for c, box in enumerate(boxes(size)):
        assert check(maps[:, c], box).all(), f"{method} class {c} does not peak in its box {box}"


def test_random_baseline_ignores_the_planted_box():
    model, x = PlantedNet("gap", size=SIZE), planted_images(1, SIZE)
    hits = [bool(in_box(explain("random", model, x, [0], seed=s), boxes(SIZE)[0])) for s in range(8)]
    assert not all(hits)


@pytest.mark.parametrize("method", list(FAST))
def test_same_seed_same_map_and_batch_equals_single_images(method):
    model, x = PlantedNet("fc", size=SIZE), planted_images(3, SIZE, seed=4)
    targets = torch.tensor([[0, 1], [1, 2], [2, 0]])
    run = lambda xs, ts, seed=1, bs=16: explain(method, model, xs, ts, seed=seed, batch_size=bs, **FAST[method])
    together = run(x, targets)
    torch.testing.assert_close(run(x, targets), together, rtol=0, atol=0)
    singles = torch.cat([run(x[i : i + 1], targets[i : i + 1], bs=7) for i in range(3)])
    torch.testing.assert_close(singles, together, rtol=1e-4, atol=1e-5)
    if method in ("rise", "lime", "random"):
        assert (run(x, targets, seed=2) - together).abs().amax() > 1e-3


@pytest.mark.parametrize("method", list(FAST))
def test_model_never_sees_more_than_batch_size_inputs(method):
    model, x = PlantedNet("fc", size=SIZE), planted_images(5, SIZE)
    sizes = []
    model.features[0].register_forward_pre_hook(lambda _m, args: sizes.append(args[0].shape[0]))
    explain(method, model, x, both_classes(5), batch_size=4, **FAST[method])
    assert max(sizes, default=0) <= 4


# --- Score-CAM ---------------------------------------------------------------------------------------


def reference_scorecam(model, x, targets, layer):
    """The authors' released loop for one image, one channel at a time, ReLU after upsampling: [T,H,W]."""
    store = {}
    handle = layer.register_forward_hook(lambda _m, _i, out: store.update(A=out))
    with torch.no_grad():
        model(x)
        handle.remove()
        cam = torch.zeros(len(targets), *x.shape[-2:], dtype=torch.float64)
        for k in range(store["A"].shape[1]):
            saliency = F.interpolate(store["A"][:, k : k + 1], size=x.shape[-2:], mode="bilinear", align_corners=False)
            if saliency.max() == saliency.min():
                continue
            mask = (saliency - saliency.min()) / (saliency.max() - saliency.min())
            scores = F.softmax(model(x * mask), dim=1)[0, targets]
            cam += scores.double()[:, None, None] * saliency[0].double()
    return F.relu(cam)


def test_scorecam_matches_the_authors_formula(resnet18):
    x = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    targets = torch.tensor([[3, 7], [5, 3]])
    maps = explain("scorecam", resnet18, x, targets, target_layer="layer1", normalize=False, batch_size=48)
    for b in range(2):
        ref = reference_scorecam(resnet18, x[b : b + 1], targets[b], resnet18.layer1).float()
        assert ref.amax((1, 2)).min() > 0
        torch.testing.assert_close(maps[b], ref, rtol=0, atol=1e-5 * float(ref.abs().max()))


# --- Ablation-CAM ------------------------------------------------------------------------------------


def reference_ablationcam(model, x, target, layer):
    """The paper's formula, one channel at a time with the whole model rerun: w_k = (y_c - y_c^k) / y_c."""
    store = {}

    def hook(_m, _i, out):
        store.setdefault("A", out.clone())
        if "k" in store:
            out = out.clone()
            out[:, store["k"]] = 0
        return out

    handle = layer.register_forward_hook(hook)
    with torch.no_grad():
        y = model(x)[0, target].double()
        weights = []
        for k in range(store["A"].shape[1]):
            store["k"] = k
            weights.append((y - model(x)[0, target].double()) / y)
    handle.remove()
    return F.relu(torch.einsum("k,khw->hw", torch.stack(weights), store["A"][0].double()))


@pytest.mark.parametrize("layer", ["layer1", "layer2.0.conv2"])  # a stage output; inside a residual block
def test_ablationcam_matches_the_papers_formula(resnet18, layer):
    x = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    target = int(resnet18(x).argmax())
    module = dict(resnet18.named_modules())[layer]
    maps = ablation_module.ablation_maps(resnet18, x, torch.tensor([[target]]), module, batch_size=64)[0, 0]
    ref = reference_ablationcam(resnet18, x, target, module).float()
    assert ref.max() > 0
    torch.testing.assert_close(maps, ref, rtol=0, atol=1e-4 * float(ref.abs().max()))


def test_ablationcam_agrees_with_pytorch_grad_cam(resnet18):
    """Apples to apples: layer2's output is post-ReLU (min 0), where pytorch-grad-cam also ablates to zero."""
    pytorch_grad_cam = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    target = int(resnet18(x).argmax())
    ours = explain("ablationcam", resnet18, x, [target], target_layer="layer2")[0]
    with pytorch_grad_cam.AblationCAM(resnet18, target_layers=[resnet18.layer2], batch_size=64) as cam:
        theirs = cam(x, targets=[ClassifierOutputTarget(target)])[0]
    r = np.corrcoef(ours.flatten().numpy(), theirs.flatten())[0, 1]
    assert r >= 0.99, f"Pearson {r:.4f} with pytorch-grad-cam's AblationCAM"


def test_ablation_closed_form_equals_the_split_on_a_torchvision_resnet(resnet18, monkeypatch):
    x, targets = torch.randn(2, 3, SIZE, SIZE), torch.tensor([[1, 2], [3, 3]])
    closed = ablation_module.ablation_maps(resnet18, x, targets, resnet18.layer4, batch_size=256)
    monkeypatch.setattr(ablation_module, "gap_linear_head", lambda *args: None)
    split = ablation_module.ablation_maps(resnet18, x, targets, resnet18.layer4, batch_size=256)
    assert closed.amax() > 0
    torch.testing.assert_close(split, closed, rtol=1e-4, atol=1e-5 * float(closed.abs().max()))


def test_ablation_closed_form_equals_split_and_hook_paths(monkeypatch):
    model, x = PlantedNet("gap", size=SIZE), planted_images(3, SIZE)
    targets, layer = torch.tensor([[0, 1], [1, 2], [0, 0]]), model.features
    closed = ablation_module.ablation_maps(model, x, targets, layer, batch_size=5)
    monkeypatch.setattr(ablation_module, "gap_linear_head", lambda *args: None)
    split = ablation_module.ablation_maps(model, x, targets, layer, batch_size=5)
    monkeypatch.setattr(ablation_module, "split_at", lambda *args: None)
    hooked = ablation_module.ablation_maps(model, x, targets, layer, batch_size=5)
    assert closed[:, :2].amax() > 0
    torch.testing.assert_close(split, closed, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(hooked, closed, rtol=1e-4, atol=1e-6)


def test_channelwise_tail_shortcut_equals_the_ablated_copies(resnet18, monkeypatch):
    """Cut at the last conv, the tail (bn, residual add, ReLU, pool) is channelwise: three passes suffice."""
    x, targets, layer = torch.randn(2, 3, SIZE, SIZE), torch.tensor([[1, 2], [3, 3]]), resnet18.layer4[1].conv2
    calls = []
    real = ablation_module._channelwise_drops
    monkeypatch.setattr(ablation_module, "_channelwise_drops", lambda *a: calls.append(real(*a)) or calls[-1])
    fast = ablation_module.ablation_maps(resnet18, x, targets, layer, batch_size=64)
    assert calls and calls[0] is not None
    monkeypatch.setattr(ablation_module, "_channelwise_drops", lambda *a: None)
    copies = ablation_module.ablation_maps(resnet18, x, targets, layer, batch_size=64)
    assert copies.amax() > 0
    torch.testing.assert_close(fast, copies, rtol=1e-4, atol=1e-5 * float(copies.abs().max()))


def test_ablated_copies_do_not_rerun_the_layers_before_the_target(resnet18):
    x = torch.randn(2, 3, SIZE, SIZE)
    seen = []
    handle = resnet18.conv1.register_forward_hook(lambda _m, _i, out: seen.append(out.shape[0]))
    try:
        explain("ablationcam", resnet18, x, [1, 2], target_layer="layer2.1.conv2", batch_size=64)
    finally:
        handle.remove()
    # explain's class-range check, then per image a first pass (no closed form here) and the cut model's
    # front: 5 images' worth, where rerunning the front for the 128 ablated copies would be hundreds.
    assert sum(seen) <= 1 + 2 * 2


def test_ablationcam_split_keeps_the_residual_input(resnet18):
    split = ablation_module.split_at(resnet18, resnet18.layer4[1].conv2)
    x = torch.randn(2, 3, 64, 64)
    activations, *saved = split.front(x)
    assert len(saved) == 1  # the block's identity branch
    torch.testing.assert_close(split.tail(activations, *saved), resnet18(x))


class InPlaceStatements(nn.Module):
    """Bare in-place calls before and after the cut, which work by their side effect alone."""

    def __init__(self):
        super().__init__()
        self.stem, self.layer, self.fc = nn.Conv2d(3, 6, 3, padding=1), nn.Conv2d(6, 6, 3, padding=1), nn.Linear(6, 4)

    def forward(self, x):
        skip = self.stem(x)
        skip.relu_()
        torch.clamp_(skip, max=1.5)
        f = self.layer(skip) + skip
        f.relu_()
        return self.fc(f.mean((2, 3)))


def test_the_split_keeps_bare_in_place_statements():
    torch.manual_seed(0)
    model, x = InPlaceStatements().eval(), torch.randn(2, 3, 12, 12)
    split = ablation_module.split_at(model, model.layer)
    activations, *saved = split.front(x)
    torch.testing.assert_close(split.tail(activations, *saved), model(x))
    assert saved[0].min() >= 0 and saved[0].max() <= 1.5


# --- RISE --------------------------------------------------------------------------------------------


def test_rise_masks_follow_the_paper():
    masks = torch.cat(list(rise_masks(300, 7, 0.3, (SIZE, SIZE), seed=5, chunk=64)))
    assert masks.shape == (300, SIZE, SIZE) and masks.min() >= 0 and masks.max() <= 1
    assert abs(masks.mean().item() - 0.3) < 0.05
    again = torch.cat(list(rise_masks(300, 7, 0.3, (SIZE, SIZE), seed=5, chunk=7)))
    torch.testing.assert_close(again, masks, rtol=0, atol=0)  # chunking does not change the masks


def test_rise_equals_the_reference_sum_over_masks():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.ReLU(), nn.Flatten(), nn.LazyLinear(5)).eval()
    model(torch.zeros(1, 3, SIZE, SIZE))
    x, targets = torch.randn(2, 3, SIZE, SIZE), torch.tensor([[1, 4], [0, 1]])
    maps = explain("rise", model, x, targets, seed=9, n_masks=50, grid=5, p=0.4, normalize=False, batch_size=16)
    masks = torch.cat(list(rise_masks(50, 5, 0.4, (SIZE, SIZE), seed=9, chunk=50)))
    with torch.no_grad():
        for b in range(2):
            ref = torch.zeros(2, SIZE, SIZE, dtype=torch.float64)
            for mask in masks:
                probs = F.softmax(model(x[b : b + 1] * mask), 1)[0]
                ref += probs[targets[b]].double()[:, None, None] * mask.double()
            torch.testing.assert_close(maps[b], (ref / (50 * 0.4)).float(), rtol=1e-5, atol=1e-6)


def test_rise_rejects_bad_options():
    with pytest.raises(ValueError, match="0 < p < 1"):
        explain("rise", PlantedNet(size=SIZE), planted_images(1, SIZE), [0], p=1.5)


@pytest.mark.parametrize("method", list(FAST))
def test_a_misspelt_option_is_an_error_not_ignored(method):
    with pytest.raises(ValueError, match="n_mask.*valid options"):
        explain(method, PlantedNet(size=SIZE), planted_images(1, SIZE), [0], n_mask=10)


# --- LIME --------------------------------------------------------------------------------------------


def test_weighted_ridge_matches_sklearn():
    from sklearn.linear_model import Ridge

    rng = np.random.default_rng(0)
    features = rng.integers(0, 2, (200, 12)).astype(float)
    targets = rng.normal(size=(200, 3))
    weights = rng.uniform(0.1, 1, 200)
    expected = Ridge(alpha=1.0).fit(features, targets, sample_weight=weights).coef_.T
    ours = weighted_ridge(torch.tensor(features), torch.tensor(targets), torch.tensor(weights))
    np.testing.assert_allclose(ours.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_lime_ranks_superpixels_like_the_lime_package():
    lime_image = pytest.importorskip("lime.lime_image")
    model, x = PlantedNet("gap", size=SIZE), planted_images(1, SIZE, seed=6)
    segments = superpixels(x[0], n_segments=60)
    ours = lime_coefficients(model, x[0], torch.tensor([0]), segments, num_samples=600, batch_size=64, seed=0)[:, 0]

    def classify(images):
        with torch.no_grad():
            return model(torch.from_numpy(images).permute(0, 3, 1, 2).float()).softmax(1).numpy()

    explanation = lime_image.LimeImageExplainer(random_state=0).explain_instance(
        x[0].permute(1, 2, 0).double().numpy(), classify, labels=(0,), top_labels=None, num_samples=600,
        batch_size=64, segmentation_fn=lambda _image: segments.numpy())
    theirs = np.zeros(len(ours))
    for segment, weight in explanation.local_exp[0]:
        theirs[segment] = weight
    assert int(ours.argmax()) == int(theirs.argmax())
    assert np.corrcoef(ours.numpy(), theirs)[0, 1] > 0.9


@pytest.mark.parametrize("segmentation", ["slic", "quickshift"])
def test_superpixels_are_numbered_without_gaps(segmentation):
    segments = superpixels(planted_images(1, 64)[0], segmentation, n_segments=40)
    assert segments.dtype == torch.long and segments.shape == (64, 64) and segments.max() >= 1
    assert torch.equal(segments.unique(), torch.arange(int(segments.max()) + 1))


def test_lime_rejects_an_unknown_segmentation():
    with pytest.raises(ValueError, match="segmentation"):
        explain("lime", PlantedNet(size=SIZE), planted_images(1, SIZE), [0], segmentation="watershed")
