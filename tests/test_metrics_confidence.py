"""Average Drop and Increase in Confidence against the papers' formulas computed by hand."""
import pytest
import torch

from _metrics_fixtures import PlantedBoxModel, tiny_classifier
from metrics import average_drop, confidence_change, increase_in_confidence


def test_values_follow_the_grad_cam_plus_plus_formulas():
    model = tiny_classifier(seed=7)
    x = torch.randn(5, 3, 12, 12)
    maps = torch.rand(5, 12, 12)
    targets = torch.tensor([0, 1, 2, 3, 4])
    with torch.no_grad():
        y = torch.softmax(model(x), 1)[torch.arange(5), targets]
        o = torch.softmax(model(x * maps[:, None]), 1)[torch.arange(5), targets]
    drop = average_drop(model, x, maps, targets, batch_size=2)
    torch.testing.assert_close(drop, 100 * torch.clamp(y - o, min=0) / y)
    torch.testing.assert_close(increase_in_confidence(model, x, maps, targets), 100 * (o > y).float())


def test_map_on_the_planted_region_keeps_confidence_and_a_map_off_it_loses_it():
    box = (4, 4, 12, 12)
    model = PlantedBoxModel(box, scale=8.0)
    x = torch.randn(3, 3, 16, 16)
    on = torch.zeros(3, 16, 16)
    on[:, 4:12, 4:12] = 1
    targets = [0, 0, 0]
    assert torch.allclose(average_drop(model, x, on, targets), torch.zeros(3), atol=1e-4)
    assert (average_drop(model, x, 1 - on, targets) > 50).all()
    change = confidence_change(model, x, on, targets)
    assert (change.increase == 0).all()  # unchanged is not an increase


def test_maps_outside_unit_range_are_refused():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        average_drop(tiny_classifier(), torch.randn(1, 3, 8, 8), 2 * torch.ones(1, 8, 8))
