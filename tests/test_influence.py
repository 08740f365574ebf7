"""Influence functions against actual leave-one-out retraining (Koh & Liang 2017, Figure 2's protocol).

A convex head, multiclass logistic regression on frozen features of scikit-learn's digits (a fixed random
projection), is trained to its optimum; each of the 30 training points with the largest predicted influence
is left out in turn, the head retrained from the optimum, and the actual change of the test loss compared
with the predicted one.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from study.explainers.influence import influence, last_layer_features

L2 = 1e-2
N_TRAIN = 300


def objective(head: nn.Linear, phi: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(1/n) sum CE + (l2/2) ||theta||^2 over weight and bias: what `influence` assumes the head minimised."""
    return F.cross_entropy(head(phi), y) + L2 / 2 * sum((p * p).sum() for p in head.parameters())


def fit(head: nn.Linear, phi: torch.Tensor, y: torch.Tensor, *, from_scratch: bool = False) -> None:
    """Train the head to its optimum in float64, from where it is: L-BFGS first when starting far away, then
    Newton steps with autograd's Hessian (an oracle independent of the closed form in study.explainers.influence)."""
    if from_scratch:
        opt = torch.optim.LBFGS(head.parameters(), lr=1, max_iter=1000, tolerance_grad=1e-9,
                                tolerance_change=1e-15, history_size=50, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = objective(head, phi, y)
            loss.backward()
            return loss

        opt.step(closure)
    cut = head.weight.numel()

    def flat_objective(flat):
        logits = phi @ flat[:cut].reshape(head.weight.shape).T + flat[cut:]
        return F.cross_entropy(logits, y) + L2 / 2 * (flat * flat).sum()

    flat = torch.cat([head.weight.detach().flatten(), head.bias.detach()])
    for _ in range(3):
        grad = torch.autograd.functional.jacobian(flat_objective, flat, vectorize=True)
        flat = flat - torch.linalg.solve(torch.autograd.functional.hessian(flat_objective, flat, vectorize=True), grad)
    with torch.no_grad():
        head.weight.copy_(flat[:cut].reshape(head.weight.shape))
        head.bias.copy_(flat[cut:])


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny matrices


@pytest.fixture(scope="module")
def digits_model():
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.data / 16.0, dtype=torch.float64)
    y = torch.tensor(digits.target)
    g = torch.Generator().manual_seed(0)
    projection = nn.Linear(64, 24).double()
    with torch.no_grad():
        projection.weight.copy_(torch.randn(24, 64, generator=g, dtype=torch.float64) / 4)
        projection.bias.zero_()
    model = nn.Sequential(projection, nn.Tanh(), nn.Linear(24, 10).double())
    train_x, train_y, test_x, test_y = x[:N_TRAIN], y[:N_TRAIN], x[1000:1100], y[1000:1100]
    phi = model[1](model[0](train_x)).detach()
    fit(model[2], phi, train_y, from_scratch=True)
    return model, phi, train_x, train_y, test_x, test_y


def test_predicted_influence_matches_leave_one_out_retraining(digits_model):
    model, phi, train_x, train_y, test_x, test_y = digits_model
    head = model[2]
    with torch.no_grad():
        test_losses = F.cross_entropy(model(test_x), test_y, reduction="none")
    hardest = test_losses.argsort(descending=True)[:2]  # test images whose loss has room to move
    r = influence(model, train_x, train_y, test_x[hardest], test_y[hardest], l2=L2, k=5)
    optimum = {k: v.clone() for k, v in head.state_dict().items()}
    for b, t in enumerate(hardest.tolist()):
        chosen = r.scores[b].abs().argsort(descending=True)[:30]
        actual = []
        for i in chosen.tolist():
            keep = torch.ones(N_TRAIN, dtype=torch.bool)
            keep[i] = False
            head.load_state_dict(optimum)
            fit(head, phi[keep], train_y[keep])
            with torch.no_grad():
                actual.append(F.cross_entropy(model(test_x[t:t + 1]), test_y[t:t + 1]).item() - test_losses[t].item())
        head.load_state_dict(optimum)
        predicted = r.scores[b, chosen].double().numpy()
        assert np.corrcoef(predicted, actual)[0, 1] >= 0.95, (predicted, actual)
        assert np.sign(predicted[0]) == np.sign(actual[0])  # positive: leaving it out raises the loss


def test_exact_hessian_and_conjugate_gradients_agree(digits_model):
    model, _, train_x, train_y, test_x, _ = digits_model
    exact = influence(model, train_x, train_y, test_x[:4], l2=L2, solver="exact")
    cg = influence(model, train_x, train_y, test_x[:4], l2=L2, solver="cg", batch_size=64)
    assert torch.allclose(exact.scores, cg.scores, rtol=1e-4, atol=1e-7 * exact.scores.abs().max())
    auto = influence(model, train_x, train_y, test_x[:4], l2=L2, max_exact=10)  # too big: falls back to CG
    assert torch.allclose(auto.scores, cg.scores)


def test_exact_hessian_equals_autograd(digits_model):
    from study.explainers.influence import _Head, _Hessian

    model, phi, _, train_y, _, _ = digits_model
    head = model[2]
    theta = torch.cat([head.weight, head.bias[:, None]], 1).detach()

    def loss(flat):
        t = flat.reshape(theta.shape)
        return F.cross_entropy(phi @ t[:, :-1].T + t[:, -1], train_y) + L2 / 2 * (flat * flat).sum()

    expected = torch.autograd.functional.hessian(loss, theta.flatten())
    h = _Head(head)
    got = _Hessian(h.augment(phi), h.probabilities(phi), L2).matrix()
    assert torch.allclose(got, expected, atol=1e-10)


def test_top_and_harmful_are_the_extremes_and_the_default_target_is_top1(digits_model):
    model, _, train_x, train_y, test_x, _ = digits_model
    with torch.no_grad():
        top1 = model(test_x[:3]).argmax(1)
    r = influence(model, train_x, train_y, test_x[:3], l2=L2, k=4)
    assert torch.equal(r.scores, influence(model, train_x, train_y, test_x[:3], top1, l2=L2).scores)
    assert r.scores.shape == (3, N_TRAIN) and r.top.shape == r.harmful.shape == (3, 4)
    assert torch.equal(r.top, r.scores.argsort(1, descending=True)[:, :4])
    assert torch.equal(r.harmful, r.scores.argsort(1)[:, :4])
    assert (r.scores.gather(1, r.top) > 0).all() and (r.scores.gather(1, r.harmful) < 0).all()
    # The most helpful images of a confidently classified digit mostly share its label.
    assert (train_y[r.top] == top1[:, None]).float().mean() >= 0.75


def test_similarity_baseline_is_cosine_in_feature_space(digits_model):
    model, phi, train_x, train_y, test_x, _ = digits_model
    r = influence(model, train_x, train_y, test_x[:2], l2=L2, k=3, method="similarity")
    test_phi, _ = last_layer_features(model, test_x[:2])
    expected = F.cosine_similarity(test_phi[:, None], phi[None], dim=-1).float()
    assert torch.allclose(r.scores, expected, atol=1e-6) and r.method == "similarity"
    assert torch.equal(r.top, expected.topk(3, dim=1).indices)


def test_errors_name_the_problem(digits_model):
    model, _, train_x, train_y, test_x, _ = digits_model
    with pytest.raises(ValueError, match="l2 must be > 0"):
        influence(model, train_x, train_y, test_x[:1], l2=0)
    with pytest.raises(ValueError, match="unknown method 'tracin'"):
        influence(model, train_x, train_y, test_x[:1], l2=L2, method="tracin")
    with pytest.raises(ValueError, match=r"train_y must be class indices 0..9, got 0..12"):
        influence(model, train_x, torch.where(train_y == 3, 12, train_y), test_x[:1], l2=L2)
    with pytest.raises(ValueError, match="k must be between 1 and"):
        influence(model, train_x, train_y, test_x[:1], l2=L2, k=N_TRAIN + 1)
    softmaxed = nn.Sequential(model, nn.Softmax(1))
    with pytest.raises(ValueError, match="is not the model's output"):
        influence(softmaxed, train_x, train_y, test_x[:1], l2=L2)
    with pytest.raises(ValueError, match="has no nn.Linear"):
        influence(nn.Flatten(), train_x, train_y, test_x[:1], l2=L2)
