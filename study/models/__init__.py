"""`load_model`: the embedded default, torchvision, timm and Hugging Face classifiers, or a user's own `module:callable`."""
from __future__ import annotations

import importlib
from pathlib import Path

import torch
from torch import nn

from study.images.imagenet import imagenet_categories
from study.models.layers import default_layer
from study.models.abn import AttentionBranchNetwork, load_abn
from study.models.classifier import Classifier
from study.models.files import read_weights

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# EfficientNet-Lite scales inputs as (x*255 - 127) / 128.
LITE_MEAN = (127 / 255,) * 3
LITE_STD = (128 / 255,) * 3
DEFAULT_MODEL = "efficientnet_lite0"

__all__ = ["AttentionBranchNetwork", "Classifier", "load_model", "imagenet_categories", "DEFAULT_MODEL"]


def load_model(
    name: str = DEFAULT_MODEL,
    weights: str | Path | None = None,
    device: str | torch.device | None = None,
) -> Classifier:
    """Load a classifier by name, never touching the network.

    - `"efficientnet_lite0"`: the embedded default with real ImageNet weights from a PyPI package.
    - a torchvision classifier name (`"resnet50"`): weights from `weights=PATH` (loaded with
      `weights_only=True`), else from the local torch hub cache; `weights="random"` keeps the random
      initialisation (sanity checks, tests).
    - `"timm:<architecture>"`: timm's architecture (`pip install camstudy[timm]`) with `weights=PATH` (a
      state dict or a `.safetensors` file; the number of classes is read from it), or random weights
      without; preprocessing from timm's configuration of the architecture.
    - `"hf:<folder>"`: a Hugging Face image classifier saved with `save_pretrained` (`camstudy[hf]`);
      preprocessing from the folder's preprocessor_config.json, class names from its config's id2label.
    - `"package.module:callable"`: a user's function returning an `nn.Module` (optionally with `weights`).
    - `"abn"`: an Attention Branch Network from a checkpoint of `camstudy train-abn` (`weights=CHECKPOINT`).

    A suffix `@N` (`"efficientnet_lite0@160"`) feeds the same network N x N inputs instead of its own size
    (224 x 224 unless a timm or Hugging Face configuration says otherwise): a second, less accurate model
    from the same weights, for the trust task when only one is at hand.
    """
    full_name = name
    name, size = _split_input_size(name)
    if name == "abn":
        return load_abn(weights).to(device or "cpu")
    categories = None
    if name == DEFAULT_MODEL and weights is None:
        from study.models.efficientnet_lite import efficientnet_lite0_pretrained

        net, mean, std = efficientnet_lite0_pretrained(), LITE_MEAN, LITE_STD
    elif name.startswith(("timm:", "hf:")):
        from study.models.external import hf_network, timm_network

        library, _, what = name.partition(":")
        if library == "timm":
            found = timm_network(what, None if weights in (None, "random") else _load_state(weights))
        else:
            found = hf_network(what)
        net, mean, std, categories = found.network, found.mean, found.std, found.categories
        size = size or found.size
    elif ":" in name:
        net, mean, std = _user_network(name), IMAGENET_MEAN, IMAGENET_STD
        if weights not in (None, "random"):
            net.load_state_dict(_load_state(weights))
    else:
        net, mean, std = _torchvision_network(name, weights), IMAGENET_MEAN, IMAGENET_STD
    net = net.eval()
    size = size or (224, 224)
    probe = torch.zeros(1, 3, *size)
    num_classes = net(probe).shape[-1] if not hasattr(net, "_fc") else net._fc.out_features
    if categories is None:
        categories = imagenet_categories() if num_classes == 1000 else [f"class {i}" for i in range(num_classes)]
    classifier = Classifier(
        net,
        name=full_name,
        categories=categories,
        target_layer="network." + default_layer(net, probe),
        mean=mean,
        std=std,
        input_size=size,
    )
    return classifier.to(device) if device is not None else classifier


def _split_input_size(name: str) -> tuple[str, tuple[int, int] | None]:
    """The name without an `@N` suffix, and (N, N) (None without a suffix: the model's own size)."""
    base, at, size = name.rpartition("@") if "@" in name else (name, "", "")
    if not at:
        return name, None
    if not size.isdigit() or not 32 <= int(size) <= 1024:
        raise ValueError(f"model {name!r}: the input size after '@' must be a number of pixels from 32 to 1024")
    return base, (int(size), int(size))


def _load_state(path: str | Path) -> dict:
    """A state dict from a torch file (loaded with weights_only=True) or a .safetensors file."""
    if Path(path).suffix == ".safetensors" and Path(path).is_file():
        return _safetensors(Path(path))
    state = read_weights(path, "weights file")
    return state.get("state_dict", state) if isinstance(state.get("state_dict"), dict) else state


def _safetensors(path: Path) -> dict:
    try:
        from safetensors.torch import load_file
    except ImportError as err:
        raise ValueError(f"{path} is a safetensors file; pip install safetensors (or 'camstudy[timm]')") from err
    return load_file(path)


def _torchvision_network(name: str, weights: str | Path | None) -> nn.Module:
    import torchvision

    classifiers = torchvision.models.list_models(module=torchvision.models)
    if name not in classifiers and name != DEFAULT_MODEL:
        raise ValueError(f"unknown model {name!r}: use {DEFAULT_MODEL!r}, a torchvision classifier "
                         f"(e.g. resnet50, vgg16, densenet121), 'timm:<architecture>', 'hf:<folder>' or "
                         f"'module:callable'")
    if name == DEFAULT_MODEL:  # the default architecture with user weights
        from study.models.efficientnet_lite import EfficientNetLite0

        net = EfficientNetLite0()
    else:
        net = torchvision.models.get_model(name, weights=None)
    if weights == "random":
        return net
    path = Path(weights) if weights is not None else _hub_cache_file(name)
    if path is None:
        raise FileNotFoundError(
            f"no local weights for {name!r}: pass weights=PATH (a state dict), put torchvision's file in the "
            f"torch hub cache ({torch.hub.get_dir()}/checkpoints), or weights='random' for an untrained model"
        )
    net.load_state_dict(_load_state(path))
    return net


def _hub_cache_file(name: str) -> Path | None:
    import torchvision

    url = torchvision.models.get_model_weights(name).DEFAULT.url
    path = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
    return path if path.is_file() else None


def _user_network(spec: str) -> nn.Module:
    module_name, _, attr = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"cannot load model {spec!r}: {err}") from err
    net = factory()
    if not isinstance(net, nn.Module):
        raise ValueError(f"{spec} returned {type(net).__name__}, not a torch.nn.Module")
    return net
