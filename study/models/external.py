"""Classifiers of other libraries by name, offline: `timm:<architecture>` and `hf:<saved folder>`.

Both libraries are optional (`pip install camstudy[timm]`, `camstudy[hf]`). Neither ever downloads:
timm builds the architecture with `pretrained=False` and loads the user's weights file; Hugging Face
loads a folder written by `save_pretrained` with `local_files_only=True`. Each returns the network with
the preprocessing and class names its own configuration states, so `load_model` can wrap it in a
`Classifier` like any other.
"""
from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn


@dataclass(frozen=True)
class External:
    """A network with what its library's configuration says about its inputs and classes."""

    network: nn.Module
    mean: tuple[float, ...]
    std: tuple[float, ...]
    size: tuple[int, int]
    categories: list[str] | None  # None: the caller names them (ImageNet's for 1000 classes)


def _library(module: str, extra: str, spec: str):
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ValueError(f"model {spec!r} needs the package {module}, which is not installed: "
                         f"pip install 'camstudy[{extra}]'") from err


def timm_network(arch: str, state: dict | None) -> External:
    """timm's `arch` with random weights, then `state` (a state dict) loaded into it when given.

    The number of classes is read off the state dict's classifier weight (the key timm's configuration
    names), so a fine-tuned head of any size loads without saying its size.
    """
    timm = _library("timm", "timm", f"timm:{arch}")
    if not timm.is_model(arch):
        close = timm.list_models(f"*{arch.split('_')[0]}*")[:8]
        raise ValueError(f"timm has no architecture {arch!r}; similar: {', '.join(close) or 'none'}")
    net = timm.create_model(arch, pretrained=False)
    if state is not None:
        head = net.pretrained_cfg.get("classifier")
        weight = state.get(f"{head}.weight") if isinstance(head, str) else None
        if weight is not None and weight.shape[0] != net.num_classes:
            net.reset_classifier(weight.shape[0])
        net.load_state_dict(state)
    config = timm.data.resolve_data_config({}, model=net)
    return External(net, tuple(config["mean"]), tuple(config["std"]), tuple(config["input_size"][1:]), None)


class LogitsOf(nn.Module):
    """A Hugging Face image classifier as a plain `x -> logits` module (its ModelOutput unwrapped)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=x).logits


def hf_network(folder: str) -> External:
    """The image classifier saved in `folder` (config.json + weights, preprocessor_config.json if any)."""
    transformers = _library("transformers", "hf", f"hf:{folder}")
    path = Path(folder)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"hf:{folder}: no config.json there; save the model with save_pretrained(folder)")
    net = transformers.AutoModelForImageClassification.from_pretrained(path, local_files_only=True)
    config = net.config
    processor = path / "preprocessor_config.json"
    settings = json.loads(processor.read_text()) if processor.is_file() else {}
    side = getattr(config, "image_size", 224)
    size = settings.get("size", side)
    if isinstance(size, dict):
        size = (size["height"], size["width"]) if "height" in size else (size["shortest_edge"],) * 2
    size = (size, size) if isinstance(size, int) else tuple(size)
    mean = tuple(settings.get("image_mean", (0.5, 0.5, 0.5)))  # transformers' own default for ViT
    std = tuple(settings.get("image_std", (0.5, 0.5, 0.5)))
    categories = [config.id2label[i] for i in range(config.num_labels)]
    return External(LogitsOf(net), mean, std, size, categories)
