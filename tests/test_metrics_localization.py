"""Localization metrics on hand-made maps with known answers, and box_localization against skimage."""
import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage.measure import label, regionprops

from metrics import box_localization, energy_pointing_game, pointing_game


def peak_at(x, y, size=(64, 80)):
    m = torch.zeros(size)
    m[y, x] = 1.0
    return m


BOX = (30, 20, 40, 30)  # x 30..39, y 20..29 inclusive


@pytest.mark.parametrize(
    "x, y, hit",
    [
        (35, 25, True),  # inside
        (39, 29, True),  # last pixel inside (max exclusive)
        (54, 25, True),  # 15 px right of the last column: exactly at the tolerance
        (55, 25, False),  # 16 px
        (35, 5, True),  # 15 px above the first row
        (35, 4, False),
        (39 + 9, 29 + 12, True),  # diagonal 9, 12 -> distance 15
        (39 + 10, 29 + 12, False),  # distance 15.6
        (0, 0, False),
    ],
)
def test_pointing_game_tolerance_edge(x, y, hit):
    assert pointing_game(peak_at(x, y)[None], [[BOX]]).tolist() == [hit]


def test_pointing_game_any_box_and_zero_tolerance():
    maps = torch.stack([peak_at(5, 5), peak_at(35, 25), peak_at(50, 25)])
    boxes = [[BOX, (0, 0, 6, 6)], [(0, 0, 6, 6)], [BOX]]
    assert pointing_game(maps, boxes).tolist() == [True, False, True]
    assert pointing_game(maps, boxes, tolerance=0).tolist() == [True, False, False]


def test_energy_pointing_game_is_share_inside_the_union_of_boxes():
    m = torch.zeros(1, 10, 10)
    m[0, 0:2, 0:2] = 1.0  # 4 units in box A
    m[0, 5, 5] = 2.0  # 2 units in both boxes (counted once)
    m[0, 9, 9] = 6.0  # 6 units outside
    boxes = [[(0, 0, 2, 2), (4, 4, 7, 7), (5, 5, 6, 6)]]
    assert energy_pointing_game(m, boxes).item() == pytest.approx(6 / 12)
    assert torch.isnan(energy_pointing_game(torch.zeros(1, 10, 10), boxes)).all()
    with pytest.raises(ValueError, match="non-negative"):
        energy_pointing_game(-m, boxes)


def test_box_localization_keeps_the_largest_component_above_the_threshold():
    m = torch.zeros(2, 50, 50)
    m[:, 10:20, 5:25] = 1.0  # large component: x 5..24, y 10..19
    m[:, 30:35, 30:35] = 0.9  # smaller but stronger-than-threshold component
    m[:, 40:50, 0:50] = 0.15  # big, but below 20% of the max
    gt = [[(5, 10, 25, 20)], [(30, 30, 35, 35), (5, 10, 25, 22)]]
    r = box_localization(m, gt)
    assert r.box.tolist() == [[5, 10, 25, 20], [5, 10, 25, 20]]
    assert r.iou.tolist() == pytest.approx([1.0, 200 / 240])  # best match: the second box of image 1
    assert r.correct.tolist() == [True, True]
    # at a 10% threshold the faint band becomes the largest component
    low = box_localization(m, gt, threshold=0.1)
    assert low.box[0].tolist() == [0, 40, 50, 50]
    assert low.correct.tolist() == [False, False]


def test_box_localization_uses_eight_connectivity_and_handles_empty_maps():
    m = torch.zeros(2, 8, 8)
    m[0, 1, 1] = m[0, 2, 2] = m[0, 3, 3] = 1.0  # a diagonal: one component under 8-connectivity
    m[0, 6, 6] = m[0, 6, 7] = 1.0
    r = box_localization(m, [[(1, 1, 4, 4)], [(0, 0, 2, 2)]])
    assert r.box.tolist() == [[1, 1, 4, 4], [0, 0, 0, 0]]
    assert r.iou.tolist() == [1.0, 0.0]


def test_box_localization_matches_skimage_regionprops_on_random_maps():
    rng = np.random.default_rng(0)
    maps = ndimage.gaussian_filter(rng.random((12, 40, 48)), sigma=(0, 3, 3))
    maps -= maps.min(axis=(1, 2), keepdims=True)
    boxes = [[(int(a), int(b), int(a) + 10, int(b) + 12)] for a, b in rng.integers(0, 28, (12, 2))]
    r = box_localization(torch.from_numpy(maps).float(), boxes, threshold=0.6)
    checked = 0
    for i, m in enumerate(maps.astype(np.float32)):
        regions = sorted(regionprops(label(m > 0.6 * m.max(), connectivity=2)), key=lambda p: -p.area)
        if len(regions) > 1 and regions[0].area == regions[1].area:
            continue
        y0, x0, y1, x1 = regions[0].bbox
        assert r.box[i].tolist() == [x0, y0, x1, y1]
        checked += 1
    assert checked >= 10


def test_bad_boxes_are_named():
    m = torch.rand(2, 10, 10)
    with pytest.raises(ValueError, match="image 1 has no boxes"):
        pointing_game(m, [[(0, 0, 2, 2)], []])
    with pytest.raises(ValueError, match="max exclusive"):
        box_localization(m, [[(0, 0, 2, 2)], [(3, 3, 3, 5)]])
    with pytest.raises(ValueError, match="max exclusive"):
        energy_pointing_game(m, [[(0, 0, 11, 2)], [(0, 0, 2, 2)]])
    with pytest.raises(ValueError, match="2 maps"):
        pointing_game(m, [[(0, 0, 2, 2)]])
