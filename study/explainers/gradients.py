"""Gradient-weighted CAMs: Grad-CAM (Selvaraju et al. 2017) and Grad-CAM++ (Chattopadhay et al. 2018).

One forward pass per image chunk; one backward per requested class, reusing the forward graph.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from study.explainers.core import forward_with_activations, register, target_scores


def _class_gradients(model, x, targets, layer):
    """Activations A [B,K,h,w] and, per target column t, dy_t/dA (y the logit), from one forward pass."""
    logits, activations = forward_with_activations(model, x, layer)
    n = targets.shape[1]
    grads = [
        torch.autograd.grad(target_scores(logits, targets, t), activations, retain_graph=t < n - 1)[0].float()
        for t in range(n)
    ]
    return activations.detach().float(), grads


@register("gradcam", needs_layer=True, per_image_batches=True)
def gradcam(model, x, targets, *, layer, **_) -> torch.Tensor:
    """ReLU(sum_k alpha_k A_k) with alpha_k = mean_ij dy_c/dA_ij^k, y_c the logit (the paper's definition)."""
    activations, grads = _class_gradients(model, x, targets, layer)
    maps = [F.relu((g.mean((2, 3), keepdim=True) * activations).sum(1)) for g in grads]
    return torch.stack(maps, 1)
