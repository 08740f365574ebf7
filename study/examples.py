"""`from study.examples import influence`: the import path DESIGN.md gives; influence functions live in
`study.explainers.influence`."""
from study.explainers.influence import Influence, influence, last_layer_features

__all__ = ["Influence", "influence", "last_layer_features"]
