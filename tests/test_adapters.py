"""The captum: and gradcam_lib: adapters: same interface, same answers as the libraries, clear errors."""
from __future__ import annotations

import sys

import pytest
import torch

from _planted import PlantedNet, boxes, in_box, planted_images
from study.explainers import explain

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:captum")  # "inputs did not require grad" etc.


@pytest.fixture(scope="module")
def planted():
    return PlantedNet("gap"), planted_images(2)


TWO_CLASSES = torch.tensor([[0, 1], [0, 1]])


def _peaks_in_planted_boxes(maps):
    box0, box1 = boxes()
    return bool(in_box(maps[:, 0], box0).all() and in_box(maps[:, 1], box1).all())


def test_captum_saliency_is_the_largest_absolute_input_gradient_per_pixel(planted):
    model, x = planted
    maps = explain("captum:Saliency", model, x, TWO_CLASSES, normalize=False)
    for t in range(2):
        xg = x.clone().requires_grad_(True)
        grad = torch.autograd.grad(model(xg)[:, t].sum(), xg)[0]
        torch.testing.assert_close(maps[:, t], grad.abs().amax(1))


def test_captum_layer_gradcam_and_gradcam_lib_gradcam_agree_with_ours(planted):
    model, x = planted
    ours = explain("gradcam", model, x, TWO_CLASSES, target_layer="features")
    captum = explain("captum:LayerGradCam", model, x, TWO_CLASSES, target_layer="features")
    torch.testing.assert_close(captum, ours, rtol=1e-4, atol=1e-5)
    library = explain("gradcam_lib:GradCAM", model, x, TWO_CLASSES, target_layer="features")
    assert library.shape == ours.shape and library.device == x.device
    for t in range(2):
        both = torch.stack([library[:, t].flatten(), ours[:, t].flatten()])
        assert torch.corrcoef(both)[0, 1] > 0.99


@pytest.mark.parametrize(("method", "options"), [
    ("captum:IntegratedGradients", {}),
    ("captum:Occlusion", {}),
    ("captum:Occlusion", {"sliding_window_shapes": (3, 16, 16), "strides": (3, 8, 8)}),
    ("captum:GuidedGradCam", {}),
    ("gradcam_lib:ScoreCAM", {}),
    ("gradcam_lib:GradCAMPlusPlus", {}),
])
def test_library_methods_find_the_planted_evidence(method, options, planted):
    model, x = planted
    maps = explain(method, model, x[:1], TWO_CLASSES[:1], target_layer="features", batch_size=64, **options)
    assert _peaks_in_planted_boxes(maps)


def test_options_reach_the_library_and_unknown_ones_are_refused(planted):
    model, x = planted
    from_zeros = explain("captum:IntegratedGradients", model, x, TWO_CLASSES, n_steps=4, normalize=False)
    from_itself = explain("captum:IntegratedGradients", model, x, TWO_CLASSES, n_steps=4, baselines=x, normalize=False)
    assert from_zeros.amax() > 0 and from_itself.abs().amax() == 0
    with pytest.raises(ValueError, match="no option 'steps'.*n_steps"):
        explain("captum:IntegratedGradients", model, x, TWO_CLASSES, steps=2)
    with pytest.raises(ValueError, match="no option 'target'"):
        explain("captum:Saliency", model, x, TWO_CLASSES, target=1)


def test_seeded_library_sampling_repeats_and_leaves_the_global_generator_alone(planted):
    model, x = planted
    before = torch.random.get_rng_state()
    a = explain("captum:GradientShap", model, x, TWO_CLASSES, seed=3, stdevs=0.1)
    b = explain("captum:GradientShap", model, x, TWO_CLASSES, seed=3, stdevs=0.1)
    torch.testing.assert_close(a, b)
    assert torch.equal(torch.random.get_rng_state(), before)


def test_gradcam_lib_leaves_no_parameter_gradients_behind(planted):
    model, x = planted
    explain("gradcam_lib:HiResCAM", model, x, TWO_CLASSES, target_layer="features")
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize(
    ("method", "message"),
    [
        ("torchcam:GradCAM", "unknown library 'torchcam'"),
        ("captum:Nope", "captum.attr has no attribution 'Nope'; choose from .*IntegratedGradients"),
        ("captum:NeuronGradient", "has no attribution 'NeuronGradient'"),
        ("captum:NoiseTunnel", "has no attribution 'NoiseTunnel'"),
        ("gradcam_lib:Nope", "pytorch_grad_cam has no CAM class 'Nope'; choose from .*ScoreCAM"),
        ("gradcam_lib:GuidedBackpropReLUModel", "no CAM class 'GuidedBackpropReLUModel'"),
    ],
)
def test_unknown_names_are_refused_with_the_choices(method, message, planted):
    model, x = planted
    with pytest.raises(ValueError, match=message):
        explain(method, model, x)


@pytest.mark.parametrize(("method", "module"), [("captum:Saliency", "captum.attr"),
                                                ("gradcam_lib:GradCAM", "pytorch_grad_cam")])
def test_a_missing_library_names_the_pip_extra(method, module, planted, monkeypatch):
    monkeypatch.setitem(sys.modules, module, None)
    model, x = planted
    with pytest.raises(ImportError, match=r"camstudy\[compare\]"):
        explain(method, model, x)


@pytest.mark.parametrize("method", ["gradcam_lib:GradCAM", "captum:LayerGradCam", "captum:Saliency"])
def test_adapters_run_under_mixed_precision(method, planted):
    model, x = planted
    full = explain(method, model, x, TWO_CLASSES, target_layer="features")
    half = explain(method, model, x, TWO_CLASSES, target_layer="features", amp="bf16")
    assert half.dtype == torch.float32 and torch.corrcoef(torch.stack([half.flatten(), full.flatten()]))[0, 1] > 0.9


@pytest.mark.parametrize("method", ["gradcam_lib:GradCAM", "captum:IntegratedGradients"])
def test_adapters_work_inside_a_callers_no_grad(method, planted):
    model, x = planted
    expected = explain(method, model, x, TWO_CLASSES, target_layer="features")
    with torch.no_grad():
        torch.testing.assert_close(explain(method, model, x, TWO_CLASSES, target_layer="features"), expected)
