"""Infidelity and max-sensitivity against captum.metrics given the same perturbations, and on
models whose right answers are known."""
import pytest
import torch

from _metrics_fixtures import tiny_classifier
from metrics import infidelity, max_sensitivity


class LinearOnPixels(torch.nn.Module):
    """Class 0's logit is sum_chw x_chw w_hw: the map w explains it exactly (infidelity 0)."""

    def __init__(self, weights):
        super().__init__()
        self.register_buffer("weights", weights)

    def forward(self, x):
        first = (x * self.weights).flatten(1).sum(1, keepdim=True)
        return torch.cat([first, torch.zeros_like(first)], dim=1)


def test_the_exact_map_of_a_linear_model_has_zero_infidelity():
    torch.manual_seed(0)
    weights = torch.randn(10, 12)
    model = LinearOnPixels(weights)
    x = torch.randn(3, 3, 10, 12)
    exact = weights.expand(3, -1, -1)
    for normalize in (False, True):
        kwargs = dict(n_perturbations=20, noise=0.1, score="logit", seed=1, normalize=normalize)
        good = infidelity(model, x, exact, [0, 0, 0], **kwargs)
        bad = infidelity(model, x, torch.rand(3, 10, 12), [0, 0, 0], **kwargs)
        assert (good < 1e-6).all() and (bad > 1e-3).all()
    # normalised, any positive multiple of the exact map is exact too
    scaled = infidelity(model, x, 7 * exact, [0, 0, 0], noise=0.1, score="logit", seed=1)
    assert (scaled < 1e-6).all()


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("score", ["softmax", "logit"])
def test_infidelity_matches_captum_given_the_same_perturbations(normalize, score):
    metrics = pytest.importorskip("captum.metrics")
    model = tiny_classifier(seed=2)
    torch.manual_seed(3)
    x = torch.randn(4, 3, 10, 10)
    maps = torch.rand(4, 10, 10)
    targets = torch.tensor([0, 1, 2, 3])
    n, std, seed = 6, 0.05, 11
    ours = infidelity(model, x, maps, targets, n_perturbations=n, noise=std, normalize=normalize, seed=seed,
                      score=score, batch_size=64)
    drawn = std * torch.randn((4 * n, 3, 10, 10), generator=torch.Generator().manual_seed(seed))

    def perturb(inputs):  # captum repeats each image n times in a row, as camstudy orders its draws
        return drawn, inputs - drawn

    def forward(inputs):
        logits = model(inputs)
        return torch.softmax(logits, 1) if score == "softmax" else logits

    theirs = metrics.infidelity(forward, perturb, x, maps[:, None].expand_as(x), target=targets,
                                n_perturb_samples=n, normalize=normalize)
    torch.testing.assert_close(ours, theirs.float(), rtol=1e-4, atol=1e-9)


def input_gradient(model, x, targets):
    """|d logit / d x| summed over channels: a model- and input-dependent explanation."""
    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        (grads,) = torch.autograd.grad(model(x).gather(1, targets[:, None]).sum(), x)
    return grads.abs().sum(1)


def test_max_sensitivity_matches_captum_given_the_same_perturbations():
    metrics = pytest.importorskip("captum.metrics")
    model = tiny_classifier(seed=4)
    torch.manual_seed(5)
    x = torch.randn(3, 3, 9, 9)
    targets = torch.tensor([1, 0, 4])
    n, radius, seed = 5, 0.3, 7
    ours = max_sensitivity(input_gradient, model, x, targets, radius=radius, n_samples=n, seed=seed, batch_size=64)
    shifts = (2 * torch.rand((3 * n, 3, 9, 9), generator=torch.Generator().manual_seed(seed)) - 1) * radius
    def explain(inputs, target):  # captum passes and expects tuples
        return (input_gradient(model, inputs[0] if isinstance(inputs, tuple) else inputs, target),)

    theirs = metrics.sensitivity_max(
        explain, x,
        perturb_func=lambda inputs, r: inputs + shifts, perturb_radius=radius, n_perturb_samples=n, target=targets,
    )
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-7)
    assert (ours > 0).all()


def test_max_sensitivity_of_an_input_independent_map_is_zero_and_seeds_repeat():
    model = tiny_classifier(seed=6)
    x = torch.randn(4, 3, 8, 8)
    fixed = max_sensitivity(lambda m, inputs, t: torch.ones(inputs.shape[0], 8, 8), model, x, n_samples=3)
    assert torch.equal(fixed, torch.zeros(4))
    a = max_sensitivity(input_gradient, model, x, seed=1, n_samples=4, batch_size=5)
    b = max_sensitivity(input_gradient, model, x, seed=1, n_samples=4, batch_size=5)
    assert torch.equal(a, b)


def test_bad_arguments_are_named():
    model, x = tiny_classifier(), torch.randn(1, 3, 8, 8)
    with pytest.raises(ValueError, match="n_perturbations"):
        infidelity(model, x, torch.rand(1, 8, 8), n_perturbations=0)
    with pytest.raises(ValueError, match="noise"):
        infidelity(model, x, torch.rand(1, 8, 8), noise=0)
    with pytest.raises(ValueError, match="score"):
        infidelity(model, x, torch.rand(1, 8, 8), score="probability")
    with pytest.raises(ValueError, match="radius"):
        max_sensitivity(input_gradient, model, x, radius=0)
    with pytest.raises(ValueError, match="n_samples"):
        max_sensitivity(input_gradient, model, x, n_samples=0)
