"""ROAD: the linear imputation against a hand-solved system and Quantus, the metric against Quantus
(noise=0, one channel, where Quantus's ROAD runs) and a planted-signal model."""
from fractions import Fraction

import numpy as np
import pytest
import torch

from _metrics_fixtures import PlantedBoxModel, tiny_classifier
from metrics import road
from metrics.imputation import dissection_order, linear_imputation


def test_four_by_four_imputation_matches_the_hand_solved_system():
    # One kept pixel of value 12 in the corner, the 2x2 centre removed, everything else 0:
    # u11 = (u12 + u21)/6 + u22/12 + 12/12, u12 = (u11 + u22)/6 + u21/12, and symmetrically;
    # solved by hand: u11 = 496/455, u12 = u21 = 104/455, u22 = 76/455.
    image = np.zeros((1, 1, 4, 4))
    image[0, 0, 0, 0] = 12
    removed = np.zeros((1, 4, 4), dtype=bool)
    removed[0, 1:3, 1:3] = True
    filled = linear_imputation(image, removed)[0, 0]
    expected = [[Fraction(496, 455), Fraction(104, 455)], [Fraction(104, 455), Fraction(76, 455)]]
    np.testing.assert_allclose(filled[1:3, 1:3], np.array(expected, dtype=float), rtol=1e-13)
    assert filled[0, 0] == 12 and (filled[[0, 3], :][:, 1:] == 0).all()  # kept pixels untouched


def test_border_pixels_average_only_their_neighbours_inside_the_image():
    image = np.arange(2 * 16, dtype=float).reshape(1, 2, 4, 4)
    removed = np.zeros((1, 4, 4), dtype=bool)
    removed[0, 0, 0] = True  # neighbours (0,1) and (1,0) weigh 1/6, (1,1) 1/12: mean over 5/12
    filled = linear_imputation(image, removed)
    for c in range(2):
        ch = image[0, c]
        assert filled[0, c, 0, 0] == pytest.approx((2 * (ch[0, 1] + ch[1, 0]) + ch[1, 1]) / 5, rel=1e-13)


def test_linear_images_are_reproduced_and_blocks_do_not_mix():
    ys, xs = np.mgrid[0:9, 0:11]
    ramp = (0.5 + 0.25 * xs - 0.125 * ys)[None, None].repeat(3, axis=0)
    rng = np.random.default_rng(0)
    removed = np.zeros((3, 9, 11), dtype=bool)
    # interior pixels only: there the symmetric weights reproduce any linear function exactly
    removed[:, 1:-1, 1:-1] = rng.random((3, 7, 9)) < 0.8
    ramp[2] *= -2  # another image in the same block-diagonal solve
    filled = linear_imputation(ramp, removed)
    np.testing.assert_allclose(filled, ramp, atol=1e-12)


def test_dissection_order_is_a_permutation():
    key = dissection_order(13, 29)
    assert sorted(key.tolist()) == list(range(13 * 29))


def test_imputation_matches_quantus():
    perturb = pytest.importorskip("quantus.functions.perturb_func")
    rng = np.random.default_rng(1)
    image = rng.random((3, 20, 17))
    for share in (0.05, 0.5, 0.95):
        indices = rng.permutation(20 * 17)[: int(share * 20 * 17)]
        removed = np.zeros(20 * 17, dtype=bool)
        removed[indices] = True
        ours = linear_imputation(image[None], removed.reshape(1, 20, 17))[0]
        theirs = perturb.noisy_linear_imputation(image, indices, noise=0.0)
        np.testing.assert_allclose(ours, theirs, atol=1e-10)


def gray_classifier(seed: int = 0) -> torch.nn.Module:
    """A one-channel variant of the tiny classifier: Quantus's ROAD only runs on one channel."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 6, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(6, 6, 3, stride=2, padding=1),
        torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(6, 4),
    ).eval()


def test_road_without_noise_matches_quantus_accuracy_curve():
    quantus = pytest.importorskip("quantus")
    model = gray_classifier()
    torch.manual_seed(2)
    x = torch.randn(12, 1, 10, 10)
    maps = torch.rand(12, 10, 10)  # no ties: Quantus's unstable sort then ranks the same way
    with torch.no_grad():
        targets = model(x).argmax(1)
    percentages = [10, 30, 50, 70, 90]
    metric = quantus.ROAD(percentages=percentages, noise=0.0, disable_warnings=True, display_progressbar=False)
    theirs = metric(model=model, x_batch=x.numpy(), y_batch=targets.numpy(), a_batch=maps[:, None].numpy(),
                    device="cpu")
    ours = road(model, x, maps, targets, percentages=[p / 100 for p in percentages], noise=0.0, batch_size=7)
    np.testing.assert_allclose(ours.correct.float().mean(0).numpy(), [theirs[p] for p in percentages], atol=1e-12)
    assert ours.removed.tolist() == [10, 30, 50, 70, 90]


def test_road_scores_are_the_model_on_the_imputed_images():
    model = tiny_classifier(seed=3)
    x = torch.randn(2, 3, 8, 8)
    maps = torch.rand(2, 8, 8)
    r = road(model, x, maps, [1, 2], percentages=(0.25, 0.5), noise=0.0, order="lerf")
    order = torch.argsort(maps.flatten(1), dim=1, stable=True)  # least relevant first
    for b in range(2):
        for j, count in enumerate((16, 32)):
            removed = torch.zeros(64, dtype=torch.bool)
            removed[order[b, :count]] = True
            filled = linear_imputation(x[b : b + 1].double().numpy(), removed.view(1, 8, 8).numpy())
            with torch.no_grad():
                logits = model(torch.from_numpy(filled).float())
            assert float(r.curve[b, j]) == pytest.approx(float(torch.softmax(logits, 1)[0, [1, 2][b]]), abs=1e-6)


def test_noise_is_seeded_and_zero_noise_is_deterministic():
    model = tiny_classifier(seed=4)
    x = torch.randn(3, 3, 12, 12)
    maps = torch.rand(3, 12, 12)
    a = road(model, x, maps, percentages=(0.2, 0.6), seed=5, noise=0.3)
    b = road(model, x, maps, percentages=(0.2, 0.6), seed=5, noise=0.3)
    c = road(model, x, maps, percentages=(0.2, 0.6), seed=6, noise=0.3)
    torch.testing.assert_close(a.curve, b.curve, rtol=0, atol=0)
    assert not torch.equal(a.curve, c.curve)
    plain = [road(model, x, maps, percentages=(0.2, 0.6), noise=0.0, batch_size=k).curve for k in (1, 6)]
    torch.testing.assert_close(plain[0], plain[1])


def test_planted_region_falls_first_under_morf_and_last_under_lerf():
    box = (6, 6, 18, 18)
    model = PlantedBoxModel(box)
    torch.manual_seed(7)
    x = 2 * torch.randn(4, 3, 24, 24)
    planted = torch.rand(4, 24, 24) * 0.1
    planted[:, 6:18, 6:18] += 1
    targets = torch.zeros(4, dtype=torch.long)
    morf = road(model, x, planted, targets, percentages=(0.25,), seed=0, score="logit")
    lerf = road(model, x, planted, targets, percentages=(0.25,), order="lerf", seed=0, score="logit")
    random = road(model, x, torch.rand(4, 24, 24), targets, percentages=(0.25,), seed=0, score="logit")
    assert (morf.mean < random.mean).all() and (random.mean < lerf.mean).all()


@pytest.mark.parametrize(
    "kwargs, message",
    [({"percentages": (0.5, 1.0)}, "percentages"), ({"percentages": ()}, "percentages"),
     ({"noise": -1}, "noise"), ({"order": "random"}, "order"), ({"score": "probit"}, "score")],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        road(tiny_classifier(), torch.randn(1, 3, 8, 8), torch.rand(1, 8, 8), **kwargs)
