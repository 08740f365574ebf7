"""Relevance mass and rank accuracy (Arras et al. 2022) and masks from boxes."""
import numpy as np
import pytest
import torch

from metrics import box_masks, relevance_mass_accuracy, relevance_rank_accuracy


def test_box_masks_are_the_union_of_max_exclusive_boxes():
    masks = box_masks([[(1, 0, 3, 2), (2, 1, 4, 3)], [(0, 0, 1, 1)]], (3, 5))
    expected = torch.tensor([[[0, 1, 1, 0, 0], [0, 1, 1, 1, 0], [0, 0, 1, 1, 0]],
                             [[1, 0, 0, 0, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]]], dtype=torch.bool)
    assert torch.equal(masks, expected)
    with pytest.raises(ValueError, match="max exclusive"):
        box_masks([[(0, 0, 6, 1)]], (3, 5))


def test_known_values():
    maps = torch.tensor([[[4.0, 3.0, 0.0], [2.0, -5.0, 1.0]]])
    mask = torch.tensor([[[True, False, False], [True, True, False]]])
    # positive relevance 10, inside 4 + 2 (the -5 counts for nothing)
    assert relevance_mass_accuracy(maps, mask).item() == pytest.approx(0.6)
    # |mask| = 3, the top 3 pixels are 4, 3, 2: two of them inside
    assert relevance_rank_accuracy(maps, mask).item() == pytest.approx(2 / 3)
    # ties go to the first pixel in row-major order
    assert relevance_rank_accuracy(torch.ones(1, 2, 2), torch.tensor([[[False, True], [False, False]]])).item() == 0


def test_refuses_bad_masks():
    with pytest.raises(ValueError, match="boolean"):
        relevance_mass_accuracy(torch.rand(1, 2, 2), torch.ones(1, 2, 2))
    with pytest.raises(ValueError, match="shape"):
        relevance_rank_accuracy(torch.rand(1, 2, 2), torch.ones(1, 2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="at least one pixel"):
        relevance_rank_accuracy(torch.rand(1, 2, 2), torch.zeros(1, 2, 2, dtype=torch.bool))


@pytest.mark.parametrize("name", ["RelevanceMassAccuracy", "RelevanceRankAccuracy"])
def test_matches_quantus_on_non_negative_maps(name):
    quantus = pytest.importorskip("quantus")
    rng = np.random.default_rng(3)
    maps = rng.random((8, 1, 16, 20)).astype(np.float32)  # no ties
    boxes = [[(int(a), int(b), int(a) + 6, int(b) + 5)] for a, b in rng.integers(0, 11, (8, 2))]
    masks = box_masks(boxes, (16, 20))
    metric = getattr(quantus, name)(disable_warnings=True, display_progressbar=False)
    theirs = metric(model=None, x_batch=np.zeros((8, 1, 16, 20), np.float32), y_batch=np.zeros(8, dtype=int),
                    a_batch=maps.copy(), s_batch=masks[:, None].numpy().astype(np.float32), device="cpu")
    fn = relevance_mass_accuracy if name == "RelevanceMassAccuracy" else relevance_rank_accuracy
    np.testing.assert_allclose(fn(torch.from_numpy(maps), masks).numpy(), np.asarray(theirs), atol=1e-5)
