"""Average Drop and Increase in Confidence (Grad-CAM++, Chattopadhyay et al. 2018; Ablation-CAM).

Y is the target's score on the image (`score=`: softmax probability by default, as in the papers;
sigmoid for multi-label models; or the logit, whose drop in percent has no fixed scale), O its
score on the image multiplied pointwise by its explanation map (in the model's input space, so
masked-out pixels go to 0 after preprocessing). Per image: drop = 100 * max(0, Y - O) / Y and
increase = 100 * [O > Y]; the papers' Average Drop % and % Increase in Confidence are their means
over images.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from metrics._maps import maps_at
from metrics.model_calls import (
    check_score,
    checked_inputs,
    check_targets,
    evaluating,
    scores_and_targets,
)


@dataclass(frozen=True)
class ConfidenceChange:
    """Target probabilities on the images (`original`) and the explained images (`explained`)."""

    original: Tensor
    explained: Tensor
    targets: Tensor

    @property
    def drop(self) -> Tensor:
        """Per-image drop in percent; the mean is the paper's Average Drop %."""
        return 100.0 * (self.original - self.explained).clamp(min=0) / self.original

    @property
    def increase(self) -> Tensor:
        """Per image 100 where the explained image scores higher, else 0; the mean is the paper's %."""
        return 100.0 * (self.explained > self.original).float()


def confidence_change(
    model: nn.Module, x: Tensor, maps, targets=None, *, score: str = "softmax", batch_size: int | None = None,
    amp: str | None = None,
) -> ConfidenceChange:
    """Score each image and the image times its map (maps in [0, 1]; other sizes are upsampled);
    `score` is "softmax" (default), "sigmoid" or "logit"."""
    x, device, batch_size, amp_dtype = checked_inputs(model, x, batch_size, amp, largest=256)
    check_score(score)
    m = maps_at(maps, x.shape[0], tuple(x.shape[-2:]), device)
    if m.min() < -1e-6 or m.max() > 1 + 1e-6:
        raise ValueError(
            f"maps must lie in [0, 1] to multiply the image (got [{float(m.min()):.3g}, "
            f"{float(m.max()):.3g}]); use normalised maps"
        )
    with evaluating(model):
        original, chosen = scores_and_targets(
            model, x, check_targets(targets, x.shape[0], device), batch_size, amp_dtype, score
        )
        explained, _ = scores_and_targets(model, x * m[:, None], chosen, batch_size, amp_dtype, score)
    return ConfidenceChange(original.cpu(), explained.cpu(), chosen.cpu())


def average_drop(
    model: nn.Module, x: Tensor, maps, targets=None, *, score: str = "softmax", batch_size: int | None = None,
    amp: str | None = None,
) -> Tensor:
    """Per-image drop in confidence, in percent (lower is better); see the module docstring."""
    return confidence_change(model, x, maps, targets, score=score, batch_size=batch_size, amp=amp).drop


def increase_in_confidence(
    model: nn.Module, x: Tensor, maps, targets=None, *, score: str = "softmax", batch_size: int | None = None,
    amp: str | None = None,
) -> Tensor:
    """Per image 100 if the explained image scores higher than the image, else 0 (higher is better)."""
    return confidence_change(model, x, maps, targets, score=score, batch_size=batch_size, amp=amp).increase
