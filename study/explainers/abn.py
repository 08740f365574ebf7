"""`abn`: the attention map M of an Attention Branch Network (Fukui et al., CVPR 2019).

M = sigmoid(BN(conv1x1(class maps))) is what the network itself multiplies its features by, so it is an
explanation read off the model rather than computed about it. It is class-agnostic: every requested
target of an image gets the same map.
"""
from __future__ import annotations

import torch
from torch import nn

from study.explainers.core import register
from study.models.abn import AttentionBranchNetwork


@register("abn", needs_layer=False, per_image_batches=False, model_specific=True)
def abn_attention(model, x, targets, *, layer=None, batch_size, seed=None) -> torch.Tensor:
    """Tensor[B,T,h,w]: M at the feature map's resolution, repeated for the T targets of each image."""
    net = attention_branch_network(model)
    with torch.no_grad():
        m = torch.cat([net.attention(chunk) for chunk in x.split(batch_size)])
    return m[:, None].expand(-1, targets.shape[1], -1, -1)


def attention_branch_network(model: nn.Module) -> AttentionBranchNetwork:
    """The ABN itself, or the one a camstudy `Classifier` wraps; a clear error for any other model."""
    net = getattr(model, "network", model)
    if not isinstance(net, AttentionBranchNetwork):
        raise ValueError(f"method 'abn' reads the attention map of an AttentionBranchNetwork; "
                         f"{type(net).__name__} is not one (use gradcam or another method for it)")
    return net
