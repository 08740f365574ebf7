"""camstudy's core library: models, explainers, stimuli, storage, study design, export and the CLI."""
from __future__ import annotations

__all__ = ["Classifier", "load_model"]


def __getattr__(name: str):
    # torch is imported only by code that needs a model, so export, report and the survey start fast.
    if name in __all__:
        from study import models

        return getattr(models, name)
    raise AttributeError(f"module 'study' has no attribute {name!r}")
