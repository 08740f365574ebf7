"""`from study.training import train_abn`: the import path DESIGN.md gives; the trainer lives in
`study.models.training`."""
from study.models.training import learning_rate, train_abn

__all__ = ["learning_rate", "train_abn"]
