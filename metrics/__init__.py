"""Faithfulness, localization, robustness, complexity and sanity metrics for saliency maps;
depends on torch (and numpy/scipy) only, never on `study` or `ui`. Metrics that score a class take
`score="softmax" | "sigmoid" | "logit"`. Metrics that run the model take `batch_size=`, how many
inputs run at once (it bounds memory); left at None it is chosen for the device: the metric's own
largest chunk (64 or 256) on an accelerator, about 2**20 input values on a CPU, where small chunks
stay in cache and run faster per image.

- `deletion`, `insertion`, `causal_curves` (both from one pass over the originals; `order="morf"|"lerf"`):
  RISE causal metrics.
- `road`: ROAD with noisy linear imputation (Rong et al. 2022).
- `infidelity`, `max_sensitivity`: Yeh et al. 2019, as captum defines them.
- `average_drop`, `increase_in_confidence`, `confidence_change`: Grad-CAM++ confidence metrics.
- `pointing_game`, `energy_pointing_game`, `box_localization`: localization against boxes;
  `relevance_mass_accuracy`, `relevance_rank_accuracy` (Arras et al. 2022) against masks, which
  `box_masks` makes from boxes.
- `sparseness` (Gini, Chalasani et al. 2020), `complexity` (entropy, Bhatt et al. 2020): the map alone.
- `randomization_sanity` (`mode="cascading"|"independent"`, Adebayo et al. 2018) and
  `random_logit` (Sixt et al. 2020): sanity checks.
"""
from metrics.causal import CausalCurve, causal_curves, deletion, insertion
from metrics.complexity import complexity, sparseness
from metrics.confidence import ConfidenceChange, average_drop, confidence_change, increase_in_confidence
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
from metrics.road import RoadResult, road
from metrics.robustness import max_sensitivity
from metrics.sanity import RandomLogitResult, SanityResult, default_stages, random_logit, randomization_sanity
from metrics.substrates import SUBSTRATES

__all__ = [
    "SUBSTRATES",
    "BoxLocalization",
    "CausalCurve",
    "ConfidenceChange",
    "RandomLogitResult",
    "RoadResult",
    "SanityResult",
    "average_drop",
    "box_localization",
    "box_masks",
    "causal_curves",
    "complexity",
    "confidence_change",
    "default_stages",
    "deletion",
    "energy_pointing_game",
    "increase_in_confidence",
    "infidelity",
    "insertion",
    "max_sensitivity",
    "pointing_game",
    "random_logit",
    "randomization_sanity",
    "relevance_mass_accuracy",
    "relevance_rank_accuracy",
    "road",
    "sparseness",
]
