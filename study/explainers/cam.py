"""CAM (Zhou et al. 2016): the final linear layer's class weights applied to the last feature maps."""
from __future__ import annotations

import torch

from study.explainers.core import capture, gap_linear_head, register


@register("cam", needs_layer=True, per_image_batches=True)
def cam(model, x, targets, *, layer, batch_size=None, seed=None) -> torch.Tensor:
    """M_c = sum_k w_k^c A_k. Defined only where the logits are linear(GAP(A)); no ReLU, as in the paper."""
    with torch.no_grad(), capture(layer, x.shape[-2:]) as store:
        logits = model(x)
    activations = store.activations.float()
    fc = gap_linear_head(model, activations, logits)
    if fc is None:
        raise ValueError(
            f"cam needs a model whose target layer ({store.layer.name}) feeds global average pooling and "
            f"one linear layer (a GAP+linear head); {type(model).__name__} does not — use gradcam instead"
        )
    weights = fc.weight.float()[targets]  # [B,T,K]
    with torch.autocast(x.device.type, enabled=False):  # keep the weighted sum in float32 under amp
        return torch.einsum("btk,bkhw->bthw", weights, activations)
