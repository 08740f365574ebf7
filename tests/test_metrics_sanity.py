"""The randomisation sanity checks and the random-logit test separate a model-dependent explainer
from an edge detector."""
import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage
from scipy.stats import spearmanr

from _metrics_fixtures import tiny_classifier
from metrics import default_stages, random_logit, randomization_sanity
from metrics.sanity import randomize_, spearman_rows


def grad_cam(model, x, targets):
    """Grad-CAM on the second conv layer, written here with autograd (independent of study)."""
    captured = {}
    handle = model[3].register_forward_hook(lambda m, i, o: captured.update(a=o))
    try:
        logits = model(x.requires_grad_(False))
        score = logits.gather(1, targets[:, None]).sum()
        (grads,) = torch.autograd.grad(score, captured["a"])
    finally:
        handle.remove()
    weights = grads.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * captured["a"]).sum(1, keepdim=True))
    return F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0].detach()


def edges(model, x, targets):
    """Sobel gradient magnitude of the image: ignores the model entirely."""
    gray = x.mean(1).numpy()
    return torch.from_numpy(np.hypot(ndimage.sobel(gray, axis=1), ndimage.sobel(gray, axis=2)))


def test_gradient_method_changes_under_randomisation_and_edge_detector_does_not():
    model = tiny_classifier(seed=11).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(3)
    x = torch.randn(8, 3, 32, 32)
    targets = torch.zeros(8, dtype=torch.long)
    cam = randomization_sanity(model, x, targets, grad_cam)
    edge = randomization_sanity(model, x, targets, edges)
    assert cam.stages == edge.stages == ("7", "3", "1", "0")
    assert cam.rho.shape == (8, 4)
    torch.testing.assert_close(edge.rho, torch.ones(8, 4))
    assert cam.rho[:, -1].abs().mean() < 0.5
    assert (cam.rho.mean(0) < 0.9).all()
    for k, v in model.state_dict().items():  # the caller's model is untouched
        torch.testing.assert_close(v, before[k])


def test_randomisation_is_seeded():
    model = tiny_classifier(seed=12)
    x = torch.randn(3, 3, 16, 16)
    t = torch.tensor([1, 2, 3])
    a = randomization_sanity(model, x, t, grad_cam, seed=5)
    b = randomization_sanity(model, x, t, grad_cam, seed=5)
    torch.testing.assert_close(a.rho, b.rho, equal_nan=True)


def test_spearman_rows_match_scipy_with_ties():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 5, (6, 50)).astype(float)
    b = a + rng.integers(0, 3, (6, 50))
    expected = [spearmanr(a[i], b[i]).statistic for i in range(6)]
    np.testing.assert_allclose(spearman_rows(a, b), expected, rtol=1e-12)
    assert np.isnan(spearman_rows(np.zeros((1, 5)), b[:1, :5])).all()


def test_default_stages_of_a_resnet_go_top_down_by_block():
    from torchvision.models import resnet18

    stages = default_stages(resnet18())
    assert stages[:3] == ["fc", "layer4.1", "layer4.0"]
    assert stages[-2:] == ["bn1", "conv1"] and len(stages) == 11


def test_unknown_stage_is_a_lookup_error():
    with pytest.raises(LookupError, match="layer9"):
        randomization_sanity(tiny_classifier(), torch.randn(1, 3, 8, 8), torch.tensor([0]), edges, stages=["layer9"])


def test_default_stages_look_through_a_wrapper():
    from torchvision.models import resnet18

    class Wrapper(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.network = resnet18()
            self.register_buffer("mean", torch.zeros(3))

        def forward(self, x):
            return self.network(x)

    stages = default_stages(Wrapper())
    assert stages[0] == "network.fc" and stages[-1] == "network.conv1" and len(stages) == 11


def test_independent_mode_randomises_one_stage_at_a_time():
    model = tiny_classifier(seed=13)
    x = torch.randn(4, 3, 16, 16)
    t = torch.tensor([0, 1, 2, 3])
    result = randomization_sanity(model, x, t, grad_cam, mode="independent", seed=2)
    before = grad_cam(model, x, t).reshape(4, -1).numpy()
    for i, name in enumerate(result.stages):  # the reference: a fresh copy with only that stage randomised
        fresh = copy.deepcopy(model)
        randomize_(dict(fresh.named_modules())[name], 2 + i)
        expected = spearman_rows(before, grad_cam(fresh, x, t).reshape(4, -1).numpy())
        np.testing.assert_allclose(result.rho[:, i].numpy(), expected, rtol=1e-6)
    cascading = randomization_sanity(model, x, t, grad_cam, seed=2)
    torch.testing.assert_close(result.rho[:, 0], cascading.rho[:, 0])  # the first stage is the same
    assert not torch.allclose(result.rho[:, -1], cascading.rho[:, -1])
    with pytest.raises(ValueError, match="mode"):
        randomization_sanity(model, x, t, grad_cam, mode="bottom_up")


def test_independent_mode_matches_quantus_mprt_layer_by_layer():
    quantus = pytest.importorskip("quantus")
    model = tiny_classifier(seed=14)
    x = torch.randn(5, 3, 16, 16)
    t = torch.tensor([0, 1, 2, 3, 4])

    def explain(model, inputs, targets, **kwargs):
        maps = grad_cam(model, torch.as_tensor(inputs), torch.as_tensor(targets))
        return maps[:, None].numpy()

    metric = quantus.MPRT(layer_order="independent", seed=42, disable_warnings=True, display_progressbar=False,
                          abs=False, normalise=False)
    theirs = metric(model=model, x_batch=x.numpy(), y_batch=t.numpy(), a_batch=None, explain_func=explain,
                    device="cpu")
    layers = [name for name in theirs if name != "original"]
    assert sorted(layers) == ["0", "1", "3", "7"]  # every module with reset_parameters
    for name in layers:  # Quantus seeds every layer with seed + 1 = 43: one stage per call
        values = theirs[name]
        ours = randomization_sanity(model, x, t, grad_cam, stages=[name], seed=43, mode="independent")
        np.testing.assert_allclose(ours.rho[:, 0].numpy(), values, atol=1e-5)


def test_random_logit_is_the_ssim_of_the_two_classes_maps():
    from skimage.metrics import structural_similarity

    model = tiny_classifier(seed=15)
    x = torch.randn(6, 3, 16, 16)
    r = random_logit(grad_cam, model, x, seed=3, batch_size=4)
    with torch.no_grad():
        assert r.targets.tolist() == model(x).argmax(1).tolist()
    assert (r.other != r.targets).all() and r.other.max() < 5
    own, other = grad_cam(model, x, r.targets).numpy(), grad_cam(model, x, r.other).numpy()
    for b in range(6):
        both = np.concatenate([own[b], other[b]])
        expected = structural_similarity(own[b], other[b], data_range=float(both.max() - both.min()))
        assert float(r.similarity[b]) == pytest.approx(expected, abs=1e-5)
    assert torch.equal(random_logit(grad_cam, model, x, seed=3).other, r.other)


def test_random_logit_separates_a_class_blind_explainer():
    model = tiny_classifier(seed=16)
    x = torch.randn(4, 3, 16, 16)
    blind = random_logit(lambda m, inputs, t: inputs.abs().sum(1), model, x, seed=0)  # ignores the class
    torch.testing.assert_close(blind.similarity, torch.ones(4))
    assert (random_logit(grad_cam, model, x, seed=0).similarity < 0.99).all()
