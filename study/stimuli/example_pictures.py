"""The examples task's pictures: each test image beside its most helpful training images and their labels.

The training pool is the model's training set (`train_images`), its class names matched to the model's
categories by name. Every test image is scored against the whole pool in one `study.explainers.influence.influence`
call (so a picture does not depend on how the build batches its requests), and an image never explains
itself: a training image with the test image's id (e.g. `digits` used for both) is left out of its ranking.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from study.protocol.tasks import ExampleRequest


@dataclass(frozen=True)
class TrainingPool:
    """The training images, their labels as the model's class indices, and the model's inputs for them."""
    items: list
    labels: torch.Tensor
    x: torch.Tensor

    @classmethod
    def load(cls, spec: str, root: str | Path | None, model) -> TrainingPool:
        from study.images.sets import labelled_refs

        entries, classes = labelled_refs(spec, root)
        items = [entry.load() for entry in entries]
        index = {name: i for i, name in enumerate(model.categories)}
        unknown = sorted(set(classes) - set(index))
        if unknown:
            raise ValueError(f"training images {spec!r}: classes {', '.join(unknown[:5])} are not classes of model "
                             f"{model.name!r}; the examples task needs the set the model was trained on")
        if not items:
            raise ValueError(f"training images {spec!r} holds no images")
        labels = torch.tensor([index[classes[item.labels[0]]] for item in items])
        return cls(items, labels, model.preprocess([item.image for item in items]))


def example_pictures(model, pool: TrainingPool, items: Sequence, requests: Sequence[ExampleRequest]) -> list[list]:
    """One picture per request (in a list, as `Renderer.render` gives one per target); the requests share
    model, method, training set, k and l2."""
    from study.explainers.influence import influence
    from study.stimuli.render import examples_picture

    first = requests[0]
    result = influence(model, pool.x, pool.labels, model.preprocess([item.image for item in items]),
                       torch.tensor([r.targets[0] for r in requests]), l2=first.l2, k=1, method=first.method)
    scores = result.scores.clone()
    position = {item.image_id: i for i, item in enumerate(pool.items)}
    for row, item in enumerate(items):
        if item.image_id in position:
            scores[row, position[item.image_id]] = float("-inf")
    top = scores.topk(first.k, dim=1).indices
    names = model.categories
    return [[examples_picture(item.image, [(pool.items[i].image, names[int(pool.labels[i])]) for i in row])]
            for item, row in zip(items, top.tolist())]
