"""Reading weight files: always `torch.load(..., weights_only=True)`, with errors that name the file."""
from __future__ import annotations

from pathlib import Path

import torch


def read_weights(path: str | Path, what: str) -> dict:
    """The dict saved in `path` (a state dict or a checkpoint); `what` names it in the errors."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"cannot read {what} from {path}: {err}") from err
    if not isinstance(state, dict):
        raise ValueError(f"{path} does not hold a state dict")
    return state
