"""Score-CAM (Wang et al. 2020): each channel of the target layer, used as a soft mask on the input, is
weighted by how confident the model stays on the masked input.

Follows the authors' released implementation: channel k's map is upsampled (bilinear) to the input
size and min-max scaled to [0,1]; w_k is the softmax probability of the target on input * mask (or the
sigmoid or the logit: explain's `score=`);
the map is ReLU(sum_k w_k A_k) with A_k upsampled, the ReLU taken at the input resolution. Channels
that are constant (nothing to mask with) get weight 0, as in the authors' code, and cost no pass.
pytorch-grad-cam's ScoreCAM differs: it scores masked inputs by the target *logit* and takes a softmax
of those logits across channels as the weights.

Cost: one forward pass per image for the activations, then one per (image, non-constant channel); the
masked copies are built and scored `batch_size` at a time (never K x B full-size inputs at once), and
every requested class is read off the same masked passes.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from metrics.model_calls import class_scores
from study.explainers.core import capture, register


@register("scorecam", needs_layer=True, per_image_batches=False)
def scorecam(model, x, targets, *, layer, batch_size, seed=None, score="softmax") -> torch.Tensor:
    """Tensor[B,T,H,W] at the input resolution (the authors take the ReLU after upsampling)."""
    size = x.shape[-2:]
    maps = []
    with torch.no_grad():
        for xb, tb in zip(x.split(batch_size), targets.split(batch_size)):
            with capture(layer, size) as store:
                model(xb)
            activations = store.activations.float()
            weights = channel_scores(model, xb, tb, activations, batch_size, score)
            with torch.autocast(x.device.type, enabled=False):  # combine in float32 under amp
                combined = torch.einsum("btk,bkhw->bthw", weights, activations)
            maps.append(F.relu(F.interpolate(combined, size=size, mode="bilinear", align_corners=False)))
    return torch.cat(maps)


def channel_scores(model, x, targets, activations, batch_size, score="softmax") -> torch.Tensor:
    """w[b,t,k] = score(model(x_b * mask_bk))[targets[b,t]] (`class_scores`, the softmax probability by
    default); 0 for constant channels. Shape [B,T,K]."""
    b, k = activations.shape[:2]
    flat = activations.flatten(2)
    pairs = (flat.amax(2) > flat.amin(2)).nonzero()  # (image, channel) pairs worth a pass
    weights = activations.new_zeros(b, targets.shape[1], k)
    for chunk in pairs.split(batch_size):
        image, channel = chunk.unbind(1)
        masks = F.interpolate(activations[image, channel][:, None], size=x.shape[-2:], mode="bilinear",
                              align_corners=False)
        low = masks.amin((2, 3), keepdim=True)
        masks = (masks - low) / (masks.amax((2, 3), keepdim=True) - low).clamp_min(1e-12)
        probs = class_scores(model(x[image] * masks), score)
        weights[image, :, channel] = probs.gather(1, targets[image])
    return weights
