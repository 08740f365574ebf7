"""Planted squares for the ABN tests: the class is the colour of one square; a second square is a distractor.

Each image is dark noise with two non-overlapping `SQUARE` x `SQUARE` squares at random positions: one in
one of the class colours (the label), one in a distractor colour that never decides the class. A network
that learned the task must attend to the class square, so its attention map should peak there
(`metrics.pointing_game(maps, class_boxes(corners), tolerance=0)`). At `size=24` the squares lie on an
8-pixel grid and the ABNs here attend at 12x12.
"""
from __future__ import annotations

import torch
from torch import nn

SIZE = 32
SQUARE = 8
CLASS_COLOURS = torch.tensor([[1.0, 0.1, 0.1], [0.1, 1.0, 0.1], [0.1, 0.1, 1.0]])  # red, green, blue
DISTRACTOR_COLOURS = torch.tensor([[1.0, 1.0, 0.1], [0.1, 1.0, 1.0], [1.0, 0.1, 1.0]])  # yellow, cyan, magenta


def squares(n: int, seed: int, size: int = SIZE) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(images [n,3,size,size], labels [n], corners [n,2,2]: the class square's and the distractor's (y, x))."""
    g = torch.Generator().manual_seed(seed)
    cells = size // SQUARE  # slots on a coarse grid, so the two squares never overlap, shifted together
    slots = torch.rand(n, cells * cells, generator=g).argsort(1)[:, :2]
    shift = torch.randint(size - cells * SQUARE + 1, (n, 1, 2), generator=g)
    corners = torch.stack([slots // cells, slots % cells], -1) * SQUARE + shift  # [n,2 squares,(y,x)]
    labels = torch.randint(len(CLASS_COLOURS), (n,), generator=g)
    distractors = torch.randint(len(DISTRACTOR_COLOURS), (n,), generator=g)
    images = 0.2 * torch.rand(n, 3, size, size, generator=g)
    ys, xs = torch.arange(size)[:, None], torch.arange(size)[None, :]
    for square, colours in ((1, DISTRACTOR_COLOURS[distractors]), (0, CLASS_COLOURS[labels])):
        y0, x0 = corners[:, square, 0, None, None], corners[:, square, 1, None, None]
        inside = (ys >= y0) & (ys < y0 + SQUARE) & (xs >= x0) & (xs < x0 + SQUARE)  # [n,size,size]
        images = torch.where(inside[:, None], colours[:, :, None, None], images)
    return images, labels, corners


def class_boxes(corners: torch.Tensor) -> list[list[tuple[int, int, int, int]]]:
    """The class squares as one box per image, `(x_min, y_min, x_max, y_max)` (max exclusive), for `metrics`."""
    return [[(x0, y0, x0 + SQUARE, y0 + SQUARE)] for y0, x0 in corners[:, 0].tolist()]


def tiny_abn(num_classes: int = len(CLASS_COLOURS)):
    """A small ABN for 32x32 inputs: attention at 16x16 (the extractor halves the resolution once)."""
    from study.models import AttentionBranchNetwork

    extractor = _extractor()
    branch = nn.Sequential(nn.Conv2d(16, 16, 1), nn.BatchNorm2d(16), nn.ReLU())
    perception = _perception(num_classes)
    return AttentionBranchNetwork(extractor, perception, channels=16, num_classes=num_classes,
                                  branch=branch, branch_channels=16)


def default_branch_abn(num_classes: int = len(CLASS_COLOURS)):
    """`tiny_abn`'s extractor and perception around the ABN's default attention branch."""
    from study.models import AttentionBranchNetwork

    return AttentionBranchNetwork(_extractor(), _perception(num_classes), channels=16, num_classes=num_classes)


def _extractor() -> nn.Module:
    """Half resolution, 16 channels."""
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.AvgPool2d(2))


def _perception(num_classes: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, num_classes))
