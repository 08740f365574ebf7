"""Gradient-weighted CAMs: Grad-CAM (Selvaraju et al. 2017) and Grad-CAM++ (Chattopadhay et al. 2018).

One forward pass per image chunk; one backward per requested class, reusing the forward graph and
stopping at the target layer (the part of the network before it is never back-propagated).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from study.explainers.core import autograd_on, forward_with_activations, register, target_scores


def class_gradients(model, x, targets, layer) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Activations A [B,K,h,w] and, per target column t, dy_t/dA (y the logit), from one forward pass."""
    with autograd_on():
        logits, store = forward_with_activations(model, x, layer)
        n = targets.shape[1]
        grads = [store.gradient(target_scores(logits, targets, t), retain_graph=t < n - 1).float() for t in range(n)]
    return store.activations.detach().float(), grads


def gradcam_weights(activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """alpha_k = mean_ij dy_c/dA_ij^k: [B,K]."""
    return grads.mean((2, 3))


def gradcampp_weights(activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """w_k = sum_ij alpha_ij^k relu(g_ij^k), alpha = g^2 / (2 g^2 + sum_ab A_ab g^3): [B,K].

    The paper's closed form for an exponential score S_c = exp(y_c): every derivative of S carries the
    same factor exp(y_c), which cancels in alpha and only scales w, so the logit gradient g is used.
    Where the denominator is exactly 0 it is replaced by 1, as in the authors' released code (the
    numerator g^2 is then 0 too). Differences from other implementations, none of which is in the paper:
    the authors' code further divides each channel's alphas by their sum; pytorch-grad-cam adds 1e-6 to
    the denominator instead of guarding zeros.
    """
    g2 = grads.square()
    denominator = 2 * g2 + activations.sum((2, 3), keepdim=True) * g2 * grads
    alpha = g2 / torch.where(denominator != 0, denominator, torch.ones_like(denominator))
    return (alpha * F.relu(grads)).sum((2, 3))


def weighted_maps(activations: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """ReLU(sum_k w_k A_k): [B,K,h,w] x [B,K] -> [B,h,w]."""
    return F.relu(torch.einsum("bk,bkhw->bhw", weights, activations))


def _gradient_cam(weigh, model, x, targets, layer) -> torch.Tensor:
    activations, grads = class_gradients(model, x, targets, layer)
    with torch.autocast(x.device.type, enabled=False):
        return torch.stack([weighted_maps(activations, weigh(activations, g)) for g in grads], 1)


@register("gradcam", needs_layer=True, per_image_batches=True)
def gradcam(model, x, targets, *, layer, batch_size=None, seed=None) -> torch.Tensor:
    """ReLU(sum_k alpha_k A_k) with alpha_k = mean_ij dy_c/dA_ij^k, y_c the logit (the paper's definition).

    Same as pytorch-grad-cam's GradCAM up to its order of post-processing (it min-max scales each map
    before resizing it with OpenCV; explain() resizes first), and captum's LayerGradCam with
    relu_attributions=True before upsampling.
    """
    return _gradient_cam(gradcam_weights, model, x, targets, layer)


@register("gradcam++", needs_layer=True, per_image_batches=True)
def gradcam_plus_plus(model, x, targets, *, layer, batch_size=None, seed=None) -> torch.Tensor:
    """ReLU(sum_k w_k A_k) with Grad-CAM++'s closed-form weights (see `gradcampp_weights`)."""
    return _gradient_cam(gradcampp_weights, model, x, targets, layer)
