"""Methods of the established libraries behind `explain()`: `"captum:<Attribution>"`, `"gradcam_lib:<CAMClass>"`.

A study can then show or score captum's and pytorch-grad-cam's methods next to ours with the same
targets, target layer, image batching and post-processing (upsampling, min-max scaling). Options given
to explain() go to the class's constructor or to its `attribute` / call method, whichever names them.
The libraries are optional (`pip install 'camstudy[compare]'`).
"""
from __future__ import annotations

import contextlib
import importlib
import inspect

import torch
import torch.nn.functional as F

from study.explainers.core import Method

PIP_EXTRA = "camstudy[compare]"
# Arguments the adapter sets itself; a user option with one of these names would contradict explain().
RESERVED = {"self", "model", "forward_func", "layer", "target_layers", "inputs", "input_tensor", "target", "targets"}


def adapter(spec: str) -> Method:
    """The `Method` running `spec` ("captum:IntegratedGradients", "gradcam_lib:ScoreCAM", ...)."""
    library, _, name = spec.partition(":")
    builders = {"captum": ("captum.attr", "captum", _captum_method), "gradcam_lib": ("pytorch_grad_cam", "grad-cam", _gradcam_lib_method)}
    if library not in builders:
        raise ValueError(f"unknown library {library!r} in method {spec!r}; use 'captum:<Attribution>' or "
                         f"'gradcam_lib:<CAMClass>'")
    module_name, pip_name, build = builders[library]
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ImportError(f"method {spec!r} needs the package {pip_name}, which is not installed: "
                          f"pip install '{PIP_EXTRA}'") from err
    return build(spec, module, name)


def _parameters(fn) -> list[str]:
    return [p for p in inspect.signature(fn).parameters if p not in ("self", "args", "kwargs")]


def _route(spec: str, options: dict, init: list[str], call: list[str]) -> tuple[dict, dict]:
    """Split explain()'s extra options into constructor and call keyword arguments; unknown ones are errors."""
    ctor, kwargs = {}, {}
    for key, value in options.items():
        if key in call and key not in RESERVED:
            kwargs[key] = value
        elif key in init and key not in RESERVED:
            ctor[key] = value
        else:
            allowed = sorted((set(init) | set(call)) - RESERVED)
            raise ValueError(f"{spec} takes no option {key!r}; it takes {', '.join(allowed) or 'none'}")
    return ctor, kwargs


@contextlib.contextmanager
def _seeded(seed: int | None, device: torch.device):
    """Run the library's sampling from `seed` without disturbing the caller's global random state."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


# ---------------------------------------------------------------------------------------------- captum


def _captum_method(spec: str, attr, name: str) -> Method:
    cls = getattr(attr, name, None)
    if not _is_captum_attribution(attr, cls):
        usable = sorted(n for n in dir(attr) if _is_captum_attribution(attr, getattr(attr, n)))
        raise ValueError(f"captum.attr has no attribution {name!r}; choose from {', '.join(usable)}")
    init, call = _parameters(cls.__init__), _parameters(cls.attribute)
    required = {p.name for p in inspect.signature(cls.attribute).parameters.values() if p.default is p.empty}
    needs_layer = "layer" in init
    one_image_at_a_time = issubclass(cls, attr.LimeBase)  # captum's LIME/KernelSHAP take one image per call

    def run(model, x, targets, *, layer, batch_size, seed, **options):
        ctor, kwargs = _route(spec, options, init, call)
        method = cls(model, layer.module, **ctor) if needs_layer else cls(model, **ctor)
        kwargs = {**_captum_defaults(required, call, x, batch_size), **kwargs}
        per_target = []
        with _seeded(seed, x.device):
            for column in targets.T:
                chunks = zip(x.split(1), column.split(1)) if one_image_at_a_time else [(x, column)]
                maps = [_captum_map(spec, _attribute(method, xb, tb, call, kwargs), x) for xb, tb in chunks]
                per_target.append(torch.cat(maps))
        return torch.stack(per_target, 1)

    randomised = "n_samples" in call or "perm_func" in init
    return Method(spec, run, needs_layer=needs_layer, per_image_batches=True, randomised=randomised)


def _is_captum_attribution(attr, cls) -> bool:
    """A class of captum.attr that explains a classifier's output for a target class without extra inputs.

    Left out: neuron attributions (they need a neuron, not a class), and wrappers of other attributions or
    of language models (NoiseTunnel, DataLoaderAttribution, LLM*), whose first argument is not the model.
    """
    if not (isinstance(cls, type) and issubclass(cls, attr.Attribution) and hasattr(cls, "attribute")):
        return False
    init = _parameters(cls.__init__)
    return bool(init) and init[0] in ("model", "forward_func") and "neuron_selector" not in _parameters(cls.attribute)


def _attribute(method, x, target, call, kwargs):
    if "target" in call:
        return method.attribute(x, target=target, **kwargs)
    return method.attribute(x, **kwargs)  # target-independent (LayerActivation): the same map for every class


def _captum_defaults(required: set[str], call: list[str], x: torch.Tensor, batch_size: int) -> dict:
    """Defaults that make each attribution run on an image batch within `batch_size` (the user can override).

    Baselines are zeros (the preprocessed dataset mean); the SHAP methods that require a baseline
    distribution get two zero images. Perturbations work on an 8x8 grid of patches (Occlusion: windows of
    one patch sliding by half a patch) rather than captum's default of every scalar input as a feature.
    """
    b, c, h, w = x.shape
    ph, pw = max(1, h // 8), max(1, w // 8)
    defaults: dict = {}
    if "baselines" in call:
        defaults["baselines"] = torch.zeros(2, c, h, w, device=x.device) if "baselines" in required else 0.0
    if "sliding_window_shapes" in call:
        defaults["sliding_window_shapes"] = (c, ph, pw)
        defaults["strides"] = (c, max(1, ph // 2), max(1, pw // 2))
    if "feature_mask" in call:
        rows = torch.arange(h, device=x.device) // ph
        cols = torch.arange(w, device=x.device) // pw
        defaults["feature_mask"] = (rows[:, None] * (cols.max() + 1) + cols[None, :])[None, None]
    if "perturbations_per_eval" in call:
        defaults["perturbations_per_eval"] = max(1, batch_size // b)
    if "internal_batch_size" in call:
        defaults["internal_batch_size"] = batch_size
    return defaults


def _captum_map(spec: str, attribution, x: torch.Tensor) -> torch.Tensor:
    """A non-negative map [B,h,w] from a captum attribution.

    Attributions over the input (one value per colour channel) keep each pixel's largest absolute value
    (Simonyan et al.'s saliency convention; as explain() reduces guided maps); attributions over a layer
    ([B,K,h,w]) are summed over channels and rectified, like a CAM (so LayerGradCam is Grad-CAM).
    """
    if isinstance(attribution, tuple):
        attribution = attribution[0]
    a = attribution.detach().float()
    if a.dim() == 4 and a.shape[1:] == x.shape[1:]:
        return a.abs().amax(1)
    if a.dim() == 4:
        return F.relu(a.sum(1))
    raise ValueError(f"{spec} returned an attribution of shape {tuple(a.shape)}, not a map over the image or "
                     f"over a (B,C,H,W) layer; choose a spatial target_layer")


# ----------------------------------------------------------------------------------- pytorch-grad-cam


def _gradcam_lib_method(spec: str, lib, name: str) -> Method:
    from pytorch_grad_cam.base_cam import BaseCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cls = getattr(lib, name, None)
    if not (isinstance(cls, type) and issubclass(cls, BaseCAM)):
        usable = sorted(n for n in dir(lib) if isinstance(getattr(lib, n), type) and issubclass(getattr(lib, n), BaseCAM))
        raise ValueError(f"pytorch_grad_cam has no CAM class {name!r}; choose from {', '.join(usable)}")
    init, call = _parameters(cls.__init__), _parameters(cls.__call__)

    def run(model, x, targets, *, layer, batch_size, seed, **options):
        """pytorch-grad-cam's maps: already upsampled (OpenCV) and min-max scaled per image by the library,
        so normalize=False returns them as the library gives them. The library computes on the CPU in numpy
        and leaves parameter gradients behind; the maps come back on x's device and the gradients are freed."""
        ctor, kwargs = _route(spec, options, init, call)
        if "batch_size" in init:
            ctor.setdefault("batch_size", batch_size)
        if "reshape_transform" in init:  # the library sees the layer as a map the way explain() does
            ctor.setdefault("reshape_transform", lambda output: layer.view(output, x.shape[-2:])(output))
        cam = cls(model=model, target_layers=[layer.module], **ctor)
        if "batch_size" not in init:
            cam.batch_size = batch_size  # ScoreCAM and others read this attribute when it is set
        try:  # in float32 even under explain(amp=...): the library moves activations to numpy, which has no bf16
            with _seeded(seed, x.device), torch.enable_grad(), torch.autocast(x.device.type, enabled=False):
                maps = [torch.from_numpy(cam(x, [ClassifierOutputTarget(c) for c in column], **kwargs))
                        for column in targets.T.tolist()]
        finally:  # not `with cam:` — its __exit__ swallows IndexError
            cam.activations_and_grads.release()
            model.zero_grad(set_to_none=True)
        return torch.stack(maps, 1).to(x.device)

    return Method(spec, run, needs_layer=True, per_image_batches=True, randomised=name == "RandomCAM")
