"""Image sets streamed through a `torch.utils.data.DataLoader`, a batch at a time.

Scoring ImageNet's 50,000 validation images cannot hold them in memory: the dataset holds only
`ImageRef`s (paths and boxes), and worker processes (`workers`) decode, resize and hash each photo,
so the process that owns the device only normalises uint8 batches (pinned on CUDA, so the copy is
asynchronous). In-memory `ImageItem`s (the bundled photos, a caller's list) go through the same path.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset

from study.images.items import Box, ImageItem, ImageRef, photo_digest
from study.images.pixels import resized_pixels


@dataclass(frozen=True)
class Batch:
    """Images of one batch: their indices in the set, pixels (uint8 [B,3,H,W]), photo hashes, boxes on the map
    and, where an image has one, its mask on the map (BoolTensor[H,W], else None)."""

    indices: list[int]
    pixels: torch.Tensor
    digests: list[str]
    boxes: list[list[Box]]
    masks: list[torch.Tensor | None]

    def pin_memory(self) -> Batch:
        """Called by the DataLoader's pin_memory thread (it pins any object with this method)."""
        return Batch(self.indices, self.pixels.pin_memory(), self.digests, self.boxes, self.masks)


class ImageDataset(Dataset):
    """The images `indices` of `entries` (refs or items), each as (index, pixels, digest, boxes and mask at the
    map size)."""

    def __init__(self, entries: Sequence[ImageRef | ImageItem], indices: Sequence[int], input_size: tuple[int, int]):
        self.entries, self.indices, self.input_size = entries, list(indices), tuple(input_size)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int):
        index = self.indices[k]
        item = self.entries[index].load()
        mask = item.mask_at(self.input_size[::-1])
        return (index, resized_pixels(item.image, self.input_size), photo_digest(item.image),
                item.boxes_at(self.input_size[::-1]), None if mask is None else torch.from_numpy(mask))


def collate(samples) -> Batch:
    indices, pixels, digests, boxes, masks = zip(*samples)
    return Batch(list(indices), torch.stack(pixels), list(digests), list(boxes), list(masks))


def image_batches(entries: Sequence[ImageRef | ImageItem], indices: Sequence[int], input_size: tuple[int, int], *,
                  batch_size: int, workers: int = 0, pin_memory: bool = False) -> DataLoader:
    """`Batch`es of `indices` in their order; `workers` decoding processes (0: in this process)."""
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1; got {batch_size}")
    if workers < 0:
        raise ValueError(f"workers must be 0 or more; got {workers}")
    return DataLoader(ImageDataset(entries, indices, input_size), batch_size=batch_size, shuffle=False,
                      num_workers=workers, collate_fn=collate, pin_memory=pin_memory,
                      persistent_workers=False, prefetch_factor=2 if workers else None)
