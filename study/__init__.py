"""camstudy's core library: models, explainers, stimuli, storage, study design, export and the CLI."""
from study.models import Classifier, load_model

__all__ = ["Classifier", "load_model"]
