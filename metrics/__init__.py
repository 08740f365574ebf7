"""Faithfulness, localization and sanity metrics for saliency maps; depends on torch (and
numpy/scipy) only, never on `study` or `ui`.

- `deletion`, `insertion`, `causal_curves` (both from one pass over the originals): RISE causal metrics.
- `average_drop`, `increase_in_confidence`, `confidence_change`: Grad-CAM++ confidence metrics.
- `pointing_game`, `energy_pointing_game`, `box_localization`: localization against boxes.
- `randomization_sanity`: cascading model-parameter randomisation (Adebayo et al.).
"""
from metrics.causal import CausalCurve, causal_curves, deletion, insertion
from metrics.road import RoadResult, road
from metrics.robustness import max_sensitivity
from metrics.confidence import ConfidenceChange, average_drop, confidence_change, increase_in_confidence
from metrics.complexity import complexity, sparseness
from metrics.infidelity import infidelity
from metrics.localization import (
    BoxLocalization,
    box_localization,
    box_masks,
    energy_pointing_game,
    pointing_game,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
)
from metrics.sanity import RandomLogitResult, SanityResult, default_stages, random_logit, randomization_sanity
from metrics.substrates import SUBSTRATES

__all__ = [
    "SUBSTRATES",
    "BoxLocalization",
    "CausalCurve",
    "ConfidenceChange",
    "SanityResult",
    "average_drop",
    "box_localization",
    "causal_curves",
    "confidence_change",
    "default_stages",
    "deletion",
    "energy_pointing_game",
    "increase_in_confidence",
    "insertion",
    "pointing_game",
    "randomization_sanity",
]
