"""Layer `images`: image sets and the pixels a classifier takes.

Holds what an image is (`items`), the one parser of image-set specs (`specs`), reading a set (`sets`;
bundled photos, folders, VOC, the digits in `digits`, the planted-mark `shortcut` set, ImageNet in `imagenet`), the one preprocessing
path from a picture to a model's input (`pixels`) and streaming through DataLoader workers
(`streaming`). May import: `study.resources` only. Only `pixels` and `streaming` import torch, and the
torch-free layers (protocol, store, survey, results, ui) never import those two.
"""
from __future__ import annotations

from study.images.items import ImageItem, ImageRef, composite, load_image
from study.images.sets import bundled_images, folder_images, image_refs, image_set, labelled_refs, voc_images
from study.images.shortcut import ShortcutSet, shortcut_items, shortcut_set

__all__ = ["ImageItem", "ImageRef", "ShortcutSet", "bundled_images", "composite", "folder_images", "image_refs",
           "image_set", "labelled_refs", "load_image", "shortcut_items", "shortcut_set", "voc_images"]
