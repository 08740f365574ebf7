"""Overlays, guided views and the grid figure are the right size and show the map."""
import numpy as np
import pytest
import torch
from PIL import Image

from study.stimuli.render import grid_figure, guided_view, overlay


def test_overlay_keeps_the_photo_size_and_marks_the_hot_region():
    photo = Image.new("RGB", (120, 60), (128, 128, 128))
    saliency = torch.zeros(8, 8)
    saliency[:, :4] = 1.0  # hot left half
    out = np.asarray(overlay(photo, saliency, alpha=0.6)).astype(int)
    assert out.shape == (60, 120, 3)
    left, right = out[30, 10], out[30, 110]
    assert left[0] > left[2] and right[2] > right[0]  # jet: red where hot, blue where cold


def test_guided_view_maps_zero_to_grey_and_keeps_signs():
    rgb = torch.zeros(3, 4, 4)
    rgb[0, 0, 0], rgb[2, 0, 0] = 1.0, -1.0
    out = np.asarray(guided_view(rgb))
    assert tuple(out[3, 3]) == (128, 128, 128)
    assert out[0, 0, 0] > 200 and out[0, 0, 2] < 55


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match="2-D"):
        overlay(Image.new("RGB", (4, 4)), torch.zeros(1, 4, 4))
    with pytest.raises(ValueError, match=r"\(3,H,W\)"):
        guided_view(torch.zeros(4, 4))


def test_grid_has_a_column_per_method():
    photos = [Image.new("RGB", (16, 16)) for _ in range(2)]
    fig = grid_figure(photos, {"a": torch.rand(2, 16, 16), "b": np.random.rand(2, 16, 16)})
    assert len(fig.axes) == 2 * 3
    assert [ax.get_title() for ax in fig.axes[:3]] == ["image", "a", "b"]


@pytest.mark.parametrize("method", ["guided_gradcam", "guided_backprop"])
def test_a_guided_stimulus_of_a_real_photo_is_visible(method):
    """The build's guided picture of a real photo is not a flat grey: one outlier pixel used to set
    the scale and leave every other pixel within a few levels of mid-grey (std 2-4 of 255)."""
    from study.stimuli.build import ExplainerRenderer
    from study.images import bundled_images
    from study.protocol.tasks import MapRequest

    item = next(i for i in bundled_images() if i.image_id == "chelsea")
    request = MapRequest(item.image_id, "efficientnet_lite0", method, (item.labels[0],))
    [[shown]] = ExplainerRenderer().render([item], [request])
    pixels = np.asarray(shown, dtype=float) / 255
    assert pixels.std() >= 15 / 255
    assert np.abs(pixels - 0.5).mean() >= 8 / 255


def test_guided_view_does_not_depend_on_the_maps_scale_or_offset():
    rgb = torch.randn(3, 16, 16)
    assert np.array_equal(np.asarray(guided_view(rgb)), np.asarray(guided_view(3 * rgb + 1)))
