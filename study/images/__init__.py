"""Layer `images`: image sets and the pixels a classifier takes.

Holds what an image is (`ImageItem`, `ImageRef`, boxes), the one parser of image-set specs (`bundled`,
folders, `voc:`, `imagenet:`, the digits and shortcut sets), labelled sets for training and example
pictures, and streaming through DataLoader workers. May import: `study.resources` only (and torch in
`pixels` and `streaming`, which the survey never imports).
"""
from __future__ import annotations

from study.images.items import (ImageItem, ImageRef, bundled_images, composite, folder_images, image_refs,
                                image_set, load_image, voc_images)

__all__ = ["ImageItem", "ImageRef", "bundled_images", "composite", "folder_images", "image_refs", "image_set",
           "load_image", "voc_images"]
