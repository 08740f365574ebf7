"""LIME for images (Ribeiro et al. 2016), as the lime package does it, batched in torch.

Per image: superpixels; `num_samples` Bernoulli(0.5) on/off vectors over them (the first sample keeps
every superpixel, as lime does); hidden superpixels filled with their mean colour; the model's softmax
probabilities of the targets on those samples; sample weights sqrt(exp(-d^2 / 0.25^2)) with d the
cosine distance to the all-on vector (lime's kernel and width); a weighted ridge regression (alpha 1,
unpenalised intercept: sklearn's Ridge, which lime uses) of the probabilities on the on/off vectors. The
ridge is solved for every requested class at once from the same samples. The map gives each pixel its
superpixel's coefficient, ReLU'd (positive evidence only, like lime's `positive_only` display).

Superpixels are computed with scikit-image (`segmentation="slic"`, the default, with `n_segments`,
or `"quickshift"` with lime's own settings; SLIC smooths with sigma=1 first, as scikit-image's examples do,
so fine texture does not shatter the segments) on the model input with each channel min-max scaled to
[0,1] per image — the display image up to a per-channel contrast stretch, so no normalisation
constants are needed. Samples come from `seed` (None means 0) via a CPU torch.Generator, the same
stream for every image, so an image's map does not depend on the rest of the batch.
"""
from __future__ import annotations

import numpy as np
import torch
from skimage.segmentation import quickshift, slic

from metrics.model_calls import class_scores
from study.explainers.core import register

KERNEL_WIDTH = 0.25


def superpixels(image: torch.Tensor, method: str = "slic", n_segments: int = 50) -> torch.Tensor:
    """Superpixel labels LongTensor[H,W] numbered 0..S-1, on the image's device, for image [3,H,W]."""
    array = image.detach().float().cpu()
    low = array.amin((1, 2), keepdim=True)
    array = ((array - low) / (array.amax((1, 2), keepdim=True) - low).clamp_min(1e-12)).permute(1, 2, 0)
    array = array.numpy().astype(np.float64)
    if method == "slic":
        labels = slic(array, n_segments=n_segments, compactness=10, sigma=1, start_label=0, channel_axis=-1)
    elif method == "quickshift":
        labels = quickshift(array, kernel_size=4, max_dist=200, ratio=0.2, rng=0)
    else:
        raise ValueError(f"segmentation must be 'slic' or 'quickshift', got {method!r}")
    labels = np.unique(labels, return_inverse=True)[1].reshape(labels.shape)
    return torch.from_numpy(labels).to(image.device)


def lime_coefficients(model, image: torch.Tensor, targets: torch.Tensor, segments: torch.Tensor, *,
                      num_samples: int, batch_size: int, seed: int, score: str = "softmax") -> torch.Tensor:
    """Ridge coefficients Tensor[S,T] of each superpixel for image [3,H,W] and targets LongTensor[T], regressing
    the class scores (`class_scores`: softmax probabilities by default)."""
    n = int(segments.max()) + 1
    flat = segments.flatten()
    samples = torch.randint(0, 2, (num_samples, n), generator=torch.Generator().manual_seed(seed))
    samples[0] = 1
    samples = samples.to(image.device, torch.float32)
    pixels = image.float().flatten(1)  # [3,HW]
    means = torch.zeros(3, n, device=image.device).index_add_(1, flat, pixels) / torch.bincount(flat, minlength=n)
    fill = means[:, flat].view_as(image)
    probs = []
    with torch.no_grad():
        for chunk in samples.split(batch_size):
            keep = chunk[:, flat].view(-1, 1, *image.shape[1:])
            probs.append(class_scores(model(image * keep + fill * (1 - keep)), score)[:, targets])
    distance = 1 - (samples.sum(1) / n).sqrt()  # cosine distance of each on/off vector to all-on
    weights = torch.exp(-distance**2 / KERNEL_WIDTH**2).sqrt()
    return weighted_ridge(samples, torch.cat(probs), weights)


def weighted_ridge(features: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor, alpha: float = 1.0):
    """Coefficients [F,T] of ridge regression with an unpenalised intercept and sample weights (sklearn's
    Ridge(alpha).fit(features, targets, sample_weight=weights)), one column per target, in float64 (which
    autocast leaves alone)."""
    x, y, w = features.double(), targets.double(), weights.double()[:, None]
    x = x - (w * x).sum(0) / w.sum()
    y = y - (w * y).sum(0) / w.sum()
    gram = x.T @ (w * x) + alpha * torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
    return torch.linalg.solve(gram, x.T @ (w * y)).float()


@register("lime", needs_layer=False, per_image_batches=False, randomised=True)
def lime(model, x, targets, *, batch_size, seed, num_samples: int = 1000, n_segments: int = 50,
         segmentation: str = "slic", layer=None, score="softmax") -> torch.Tensor:
    """Tensor[B,T,H,W]: each pixel's superpixel coefficient for each target, ReLU'd."""
    if num_samples < 2:
        raise ValueError(f"lime needs num_samples >= 2, got {num_samples}")
    maps = []
    for image, t in zip(x, targets):
        segments = superpixels(image, segmentation, n_segments)
        coef = lime_coefficients(model, image, t, segments, num_samples=num_samples, batch_size=batch_size,
                                 seed=0 if seed is None else seed, score=score)
        maps.append(coef.T[:, segments].clamp_min(0))
    return torch.stack(maps)
