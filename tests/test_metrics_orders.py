"""Deletion/insertion in least-relevant-first order and with sigmoid/logit scores, against the
one-image-at-a-time reference and Quantus's pixel flipping."""
import numpy as np
import pytest
import torch

from _metrics_fixtures import reference_curve, reference_moved, tiny_classifier
from metrics import causal_curves, confidence_change, deletion, infidelity, insertion, road


def test_lerf_ranks_least_salient_first_and_keeps_row_major_ties():
    model = tiny_classifier(seed=21)
    x = torch.randn(2, 3, 8, 9)
    maps = torch.randint(0, 3, (2, 8, 9)).float()  # many ties
    r = causal_curves(model, x, maps, [1, 3], step=5, order="lerf", deletion_substrate="mean",
                      insertion_substrate="zeros", batch_size=6)
    moved = reference_moved(72, step=5)
    for b in range(2):
        # the reference ranks descending; ascending with row-major ties is the same as
        # ranking the negated map descending (the stable sort keeps row-major order in both)
        for kind, substrate, insert in (("deletion", "mean", False), ("insertion", "zeros", True)):
            expected = reference_curve(model, x[b], -maps[b].numpy(), [1, 3][b], moved, substrate, insert)
            np.testing.assert_allclose(r[kind].curve[b].numpy(), expected, atol=1e-5)


def test_lerf_curves_of_a_planted_map_fall_later():
    from _metrics_fixtures import PlantedBoxModel

    model = PlantedBoxModel((4, 4, 12, 12))
    x = torch.randn(3, 3, 16, 16)
    maps = torch.rand(3, 16, 16) * 0.1
    maps[:, 4:12, 4:12] += 1
    t = [0, 0, 0]
    assert (deletion(model, x, maps, t, step=16).auc < deletion(model, x, maps, t, step=16, order="lerf").auc).all()
    assert (insertion(model, x, maps, t, step=16).auc > insertion(model, x, maps, t, step=16, order="lerf").auc).all()


class MultiLabel(torch.nn.Module):
    """Independent logits per class (think sigmoid outputs of a multi-label model)."""

    def forward(self, x):
        return torch.stack([x.mean((1, 2, 3)), x[:, 0].amax((1, 2)), -x[:, 1].mean((1, 2))], dim=1) * 3


def test_sigmoid_and_logit_scores_start_from_the_model_output():
    model = MultiLabel()
    x = torch.randn(4, 3, 8, 8)
    maps = torch.rand(4, 8, 8)
    targets = torch.tensor([0, 1, 2, 1])
    logits = model(x)[torch.arange(4), targets]
    sig = deletion(model, x, maps, targets, step=16, score="sigmoid")
    torch.testing.assert_close(sig.curve[:, 0], torch.sigmoid(logits))
    torch.testing.assert_close(deletion(model, x, maps, targets, step=16, score="logit").curve[:, 0], logits)
    sigmoid_change = confidence_change(model, x, maps, targets, score="sigmoid")
    torch.testing.assert_close(sigmoid_change.original, torch.sigmoid(logits))
    softmax = deletion(model, x, maps, targets, step=16).curve[:, 0]
    torch.testing.assert_close(softmax, torch.softmax(model(x), 1)[torch.arange(4), targets])


@pytest.mark.parametrize("metric", [deletion, insertion, confidence_change, road, infidelity])
def test_unknown_score_is_named(metric):
    with pytest.raises(ValueError, match="score must be one of 'softmax', 'sigmoid', 'logit'"):
        metric(tiny_classifier(), torch.randn(1, 3, 8, 8), torch.rand(1, 8, 8), score="probits")


@pytest.mark.parametrize("order", ["morf", "lerf"])
def test_deletion_matches_quantus_region_perturbation(order):
    quantus = pytest.importorskip("quantus")
    model = tiny_classifier(seed=22)
    torch.manual_seed(23)
    x = torch.randn(2, 3, 6, 6)
    maps = torch.rand(2, 6, 6)  # no ties
    with torch.no_grad():
        targets = model(x).argmax(1)
    metric = quantus.RegionPerturbation(patch_size=1, regions_evaluation=36, order=order, perturb_baseline=0.0,
                                        normalise=False, abs=False, disable_warnings=True, display_progressbar=False)
    theirs = metric(model=model, x_batch=x.numpy(), y_batch=targets.numpy(), a_batch=maps[:, None].numpy(),
                    device="cpu")
    ours = deletion(model, x, maps, targets, step=1, order=order, score="softmax")
    # Quantus records original minus perturbed score after each single-pixel region
    expected = (ours.curve[:, :1] - ours.curve[:, 1:]).numpy()
    np.testing.assert_allclose(np.asarray(theirs), expected, atol=1e-5)
