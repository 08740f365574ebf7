"""Localization metrics: does a map point at the annotated object?

Boxes are (x_min, y_min, x_max, y_max) in map pixels, max exclusive, a list per image (at least
one box each). Every function takes maps [B,H,W] (or [B,1,H,W]) and works on the whole batch.

- `pointing_game` (Zhang et al., 2016, with TorchRay's 15 px tolerance): a hit when the map's
  maximum (first in row-major order on ties) lies within `tolerance` pixels (Euclidean, inclusive)
  of a pixel of any box.
- `energy_pointing_game` (Score-CAM, Wang et al., 2020): the share of the map's total saliency
  inside the union of the boxes.
- `box_localization` (CAM, Zhou et al., 2016): keep pixels above `threshold` times the map's
  maximum, take the bounding box of the largest 8-connected component, and its IoU with the
  best-matching box; correct at IoU >= 0.5.

Against a ground-truth mask (BoolTensor[B,H,W]; `box_masks` makes one from the boxes above), as
in Arras et al., "CLEVR-XAI: A benchmark dataset for the ground truth evaluation of neural network
explanations", Information Fusion 2022:

- `relevance_mass_accuracy`: R_within / R_total, the share of the map's positive relevance that
  lies inside the mask. The paper keeps positive relevance only; Quantus sums the signed values
  (the same for the non-negative maps of every CAM method).
- `relevance_rank_accuracy`: with K = |mask| pixels in the mask, the share of the K highest-ranked
  pixels that lie inside it, |top_K ∩ mask| / K (ties go to the first pixel in row-major order).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor

from metrics._maps import as_maps, saliency_rank


def box_tensor(boxes, batch: int, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Boxes padded to Tensor[B, K, 4] (int64) and which of them are real, BoolTensor[B, K]."""
    height, width = size
    if len(boxes) != batch:
        raise ValueError(f"got box lists for {len(boxes)} images and {batch} maps")
    most = max((len(b) for b in boxes), default=0)
    padded = torch.zeros(batch, max(most, 1), 4, dtype=torch.long)
    valid = torch.zeros(batch, max(most, 1), dtype=torch.bool)
    for i, image_boxes in enumerate(boxes):
        if len(image_boxes) == 0:
            raise ValueError(f"image {i} has no boxes; localization metrics need at least one per image")
        b = torch.as_tensor(np.asarray(image_boxes, dtype=np.int64).reshape(-1, 4))
        x0, y0, x1, y1 = b.unbind(1)
        if not bool(((0 <= x0) & (x0 < x1) & (x1 <= width) & (0 <= y0) & (y0 < y1) & (y1 <= height)).all()):
            raise ValueError(
                f"image {i}: boxes must satisfy 0 <= x_min < x_max <= {width} and "
                f"0 <= y_min < y_max <= {height} (map pixels, max exclusive); got {b.tolist()}"
            )
        padded[i, : len(b)] = b
        valid[i, : len(b)] = True
    return padded, valid


def _inside_any_box(boxes: Tensor, valid: Tensor, size: tuple[int, int]) -> Tensor:
    """BoolTensor[B,H,W]: pixels inside the union of each image's boxes (padded form)."""
    ys = torch.arange(size[0])[None, None, :, None]
    xs = torch.arange(size[1])[None, None, None, :]
    x0, y0, x1, y1 = (boxes[..., i, None, None] for i in range(4))
    inside = (xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1) & valid[..., None, None]
    return inside.any(dim=1)


def box_masks(boxes, size: tuple[int, int]) -> Tensor:
    """BoolTensor[B,H,W]: the union of each image's boxes (x_min, y_min, x_max, y_max, max
    exclusive, a list per image, as `pointing_game` takes them) on a map of `size` (H, W)."""
    size = (int(size[0]), int(size[1]))
    return _inside_any_box(*box_tensor(boxes, len(boxes), size), size)


def pointing_game(maps, boxes, tolerance: float = 15) -> Tensor:
    """BoolTensor[B]: whether each map's maximum lies within `tolerance` px of one of its boxes."""
    m = as_maps(maps).cpu()
    size = tuple(m.shape[-2:])
    b, valid = box_tensor(boxes, m.shape[0], size)
    peak = m.flatten(1).argmax(dim=1)
    py, px = (peak // size[1])[:, None], (peak % size[1])[:, None]
    dx = torch.maximum(torch.maximum(b[..., 0] - px, px - (b[..., 2] - 1)), torch.zeros(()))
    dy = torch.maximum(torch.maximum(b[..., 1] - py, py - (b[..., 3] - 1)), torch.zeros(()))
    near = (dx.double() ** 2 + dy.double() ** 2) <= float(tolerance) ** 2
    return (near & valid).any(dim=1)


def energy_pointing_game(maps, boxes) -> Tensor:
    """Tensor[B]: share of each map's saliency inside its boxes (NaN for an all-zero map)."""
    m = as_maps(maps).cpu()
    if (m < 0).any():
        raise ValueError("energy pointing game needs non-negative maps")
    size = tuple(m.shape[-2:])
    inside = _inside_any_box(*box_tensor(boxes, m.shape[0], size), size)
    total = m.flatten(1).sum(dim=1)
    return (m * inside).flatten(1).sum(dim=1) / total


@dataclass(frozen=True)
class BoxLocalization:
    """`iou` Tensor[B] with the best-matching box, `correct` BoolTensor[B] (IoU >= 0.5), and the
    predicted `box` LongTensor[B,4] (all zeros when no pixel passes the threshold)."""

    iou: Tensor
    correct: Tensor
    box: Tensor


def largest_component_boxes(masks: np.ndarray) -> np.ndarray:
    """Bounding box (x0, y0, x1, y1, max exclusive) of the largest 8-connected component of each
    boolean mask [B,H,W]; zeros where a mask is empty. Ties go to the first component found."""
    connect_within_image = np.zeros((3, 3, 3), dtype=bool)
    connect_within_image[1] = True
    labels, count = ndimage.label(masks, structure=connect_within_image)
    found = np.zeros((masks.shape[0], 4), dtype=np.int64)
    if count == 0:
        return found
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    slices = ndimage.find_objects(labels)
    image = np.array([s[0].start for s in slices])
    order = np.lexsort((np.arange(count), -sizes, image))
    first = np.ones(count, dtype=bool)
    first[1:] = image[order][1:] != image[order][:-1]
    for label in order[first]:
        _, ys, xs = slices[label]
        found[image[label]] = (xs.start, ys.start, xs.stop, ys.stop)
    return found


def box_iou(box: Tensor, boxes: Tensor) -> Tensor:
    """IoU of box [B,4] with each of boxes [B,K,4] -> Tensor[B,K] (max-exclusive pixel boxes)."""
    x0 = torch.maximum(box[:, None, 0], boxes[..., 0])
    y0 = torch.maximum(box[:, None, 1], boxes[..., 1])
    x1 = torch.minimum(box[:, None, 2], boxes[..., 2])
    y1 = torch.minimum(box[:, None, 3], boxes[..., 3])
    overlap = (x1 - x0).clamp(min=0) * (y1 - y0).clamp(min=0)
    area = (box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1])
    areas = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
    return overlap.double() / (area[:, None] + areas - overlap).double()


def box_localization(maps, boxes, threshold: float = 0.2) -> BoxLocalization:
    """The CAM box protocol for each map; see the module docstring."""
    if not 0 <= threshold < 1:
        raise ValueError(f"threshold is a fraction of the map's maximum in [0, 1); got {threshold}")
    m = as_maps(maps).cpu()
    gt, valid = box_tensor(boxes, m.shape[0], tuple(m.shape[-2:]))
    peak = m.flatten(1).max(dim=1).values
    masks = (m > threshold * peak[:, None, None]) & (peak[:, None, None] > 0)
    predicted = torch.from_numpy(largest_component_boxes(masks.numpy()))
    iou = box_iou(predicted, gt).masked_fill(~valid, 0).max(dim=1).values.float()
    return BoxLocalization(iou=iou, correct=iou >= 0.5, box=predicted)


def _maps_and_masks(maps, masks) -> tuple[Tensor, Tensor]:
    m = as_maps(maps).cpu()
    mask = torch.as_tensor(masks).cpu()
    if mask.dtype != torch.bool:
        raise ValueError(f"masks must be boolean [B, H, W]; got dtype {mask.dtype}")
    if mask.shape != m.shape:
        raise ValueError(f"masks must match the maps' shape {tuple(m.shape)}; got {tuple(mask.shape)}")
    if not mask.flatten(1).any(dim=1).all():
        raise ValueError("every mask needs at least one pixel")
    return m.flatten(1).double(), mask.flatten(1)


def relevance_mass_accuracy(maps, masks) -> Tensor:
    """Tensor[B]: share of each map's positive relevance inside its mask (NaN if it has none)."""
    m, mask = _maps_and_masks(maps, masks)
    positive = m.clamp(min=0)
    return ((positive * mask).sum(dim=1) / positive.sum(dim=1)).float()


def relevance_rank_accuracy(maps, masks) -> Tensor:
    """Tensor[B]: share of each map's |mask| highest pixels that lie inside the mask."""
    m, mask = _maps_and_masks(maps, masks)
    rank = saliency_rank(m)
    size = mask.sum(dim=1, keepdim=True)
    return ((rank < size) & mask).sum(dim=1).double().div(size[:, 0]).float()
