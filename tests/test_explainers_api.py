"""explain()'s contract: shapes, targets, post-processing, mixed precision, shared passes and clear errors."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from _planted import NUM_CLASSES, PlantedNet, planted_images
from study.explainers import explain

GRADIENT_METHODS = ["cam", "gradcam", "gradcam++", "guided_backprop", "guided_gradcam"]


@pytest.fixture(scope="module")
def planted():
    return PlantedNet("gap"), planted_images(3)


def _pearson(a, b):
    a, b = a.flatten().double(), b.flatten().double()
    return torch.corrcoef(torch.stack([a, b]))[0, 1].item()


@pytest.mark.parametrize("method", GRADIENT_METHODS)
def test_maps_are_float32_in_unit_range_at_input_size(method, planted):
    model, x = planted
    one = explain(method, model, x, torch.tensor([0, 1, 0]), target_layer="features")
    many = explain(method, model, x, torch.tensor([[0, 1], [1, 2], [0, 0]]), target_layer="features")
    assert one.shape == (3, 64, 64) and many.shape == (3, 2, 64, 64)
    assert one.dtype == torch.float32 and not one.requires_grad and one.device == x.device
    flat = many.flatten(2)
    assert torch.allclose(flat.amin(2), torch.zeros(3, 2)) and torch.allclose(flat.amax(2)[:, :1], torch.ones(3, 1))
    torch.testing.assert_close(many[:, 0], one)


def test_targets_none_means_top1_and_lists_work(planted):
    model, x = planted
    top1 = model(x).argmax(1)
    expected = explain("gradcam", model, x, top1, target_layer="features")
    torch.testing.assert_close(explain("gradcam", model, x, None, target_layer="features"), expected)
    torch.testing.assert_close(explain("gradcam", model, x, top1.tolist(), target_layer="features"), expected)


def test_normalize_false_returns_the_raw_rectified_maps_that_normalize_scales(planted):
    model, x = planted
    raw = explain("gradcam++", model, x, torch.tensor([0, 1, 0]), target_layer="features", normalize=False)
    scaled = explain("gradcam++", model, x, torch.tensor([0, 1, 0]), target_layer="features")
    assert raw.min() >= 0 and raw.amax((1, 2)).gt(1).any()
    low, high = raw.amin((1, 2), keepdim=True), raw.amax((1, 2), keepdim=True)
    torch.testing.assert_close(scaled, (raw - low) / (high - low))


@pytest.mark.parametrize("method", ["guided_backprop", "guided_gradcam"])
def test_guided_reduce_none_keeps_the_colour_channels(method, planted):
    model, x = planted
    rgb = explain(method, model, x, torch.tensor([0, 1, 0]), target_layer="features", reduce="none")
    rgb_many = explain(method, model, x, torch.tensor([[0, 1]] * 3), target_layer="features", reduce="none")
    assert rgb.shape == (3, 3, 64, 64) and rgb_many.shape == (3, 2, 3, 64, 64)
    raw = explain(method, model, x, torch.tensor([0, 1, 0]), target_layer="features", reduce="none", normalize=False)
    reduced = explain(method, model, x, torch.tensor([0, 1, 0]), target_layer="features", normalize=False)
    torch.testing.assert_close(reduced, raw.abs().amax(1))


@pytest.mark.parametrize("method", GRADIENT_METHODS)
def test_one_forward_pass_serves_every_requested_class(method, planted):
    model, x = planted
    calls = []
    handle = model.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    try:
        explain(method, model, x, torch.tensor([[0, 1, 2]] * 3), target_layer="features", batch_size=8)
    finally:
        handle.remove()
    assert calls == [3]  # one batched pass for all 3 classes (the target range is checked inside it)


@pytest.mark.parametrize("method", GRADIENT_METHODS)
def test_bf16_autocast_and_channels_last_keep_the_maps(method, planted):
    model, x = planted
    targets = torch.tensor([0, 1, 0])
    fp32 = explain(method, model, x, targets, target_layer="features")
    torch.testing.assert_close(explain(method, model, x, targets, target_layer="features", channels_last=True),
                               fp32, rtol=1e-4, atol=1e-5)
    bf16 = explain(method, model, x, targets, target_layer="features", amp="bf16")
    assert bf16.dtype == torch.float32 and _pearson(bf16, fp32) > 0.95


@pytest.mark.parametrize("method", GRADIENT_METHODS)
def test_works_under_no_grad_and_on_inference_tensors_but_not_inside_inference_mode(method, planted):
    model, x = planted
    expected = explain(method, model, x, torch.tensor([0, 1, 0]), target_layer="features")
    with torch.no_grad():
        torch.testing.assert_close(explain(method, model, x, torch.tensor([0, 1, 0]), target_layer="features"), expected)
    with torch.inference_mode():
        frozen = x.clone()
    torch.testing.assert_close(explain(method, model, frozen, torch.tensor([0, 1, 0]), target_layer="features"), expected)
    if method != "cam":
        with torch.inference_mode(), pytest.raises(ValueError, match="outside torch.inference_mode"):
            explain(method, model, x, torch.tensor([0, 1, 0]), target_layer="features")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("method", GRADIENT_METHODS)
def test_maps_stay_on_the_gpu(method):
    model, x = PlantedNet("gap").cuda(), planted_images(2).cuda()
    maps = explain(method, model, x, torch.tensor([0, 1]).cuda(), target_layer="features", amp="bf16")
    assert maps.device.type == "cuda"


# --------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda m, x: explain("nosuch", m, x), ValueError, "unknown method 'nosuch'"),
        (lambda m, x: explain("gradcam", m, x[0]), ValueError, r"Tensor\[B,C,H,W\]"),
        (lambda m, x: explain("gradcam", m, (x * 255).long()), ValueError, r"float Tensor\[B,C,H,W\]"),
        (lambda m, x: explain("gradcam", m, x, target_layer="layer9"), LookupError, "no layer 'layer9'"),
        (lambda m, x: explain("gradcam", m, x, target_layer=nn.Conv2d(3, 3, 1)), LookupError, "not a submodule"),
        (lambda m, x: explain("gradcam", m, x, target_layer="head.2"), ValueError, r"\(B,C,H,W\) feature map"),
        (lambda m, x: explain("gradcam", m, x, [0, NUM_CLASSES, 1]), ValueError, "out of range"),
        (lambda m, x: explain("gradcam", m, x, [-1, 0, 1]), ValueError, "out of range"),
        (lambda m, x: explain("gradcam", m, x, [0, 1]), ValueError, "shape"),
        (lambda m, x: explain("gradcam", m, x, torch.zeros(3, 1, 1, dtype=torch.long)), ValueError, "shape"),
        (lambda m, x: explain("gradcam", m, x, [0.0, 1.0, 0.0]), ValueError, "integers"),
        (lambda m, x: explain("gradcam", m, x, batch_size=0), ValueError, "batch_size"),
        (lambda m, x: explain("guided_backprop", m, x, reduce="mean"), ValueError, "reduce"),
        (lambda m, x: explain("gradcam", m, x, amp="fp8"), ValueError, "amp"),
        (lambda m, x: explain("gradcam", lambda v: v, x), ValueError, "torch.nn.Module"),
    ],
)
def test_bad_inputs_give_errors_that_name_the_problem(call, error, message, planted):
    model, x = planted
    with pytest.raises(error, match=message):
        call(model, x)


@pytest.mark.parametrize("method", GRADIENT_METHODS + ["guided_ablationcam"])
def test_a_misspelt_option_is_an_error_not_ignored(method, planted):
    model, x = planted
    with pytest.raises(ValueError, match="'n_mask'.*valid options"):
        explain(method, model, x, [0, 1, 0], target_layer="features", n_mask=10)


def test_a_misspelt_option_names_the_valid_ones():
    model, x = PlantedNet(), planted_images(1)
    with pytest.raises(ValueError, match="valid options: grid, n_masks, p"):
        explain("rise", model, x, [0], n_mask=10)


@pytest.mark.parametrize("training", [True, False])
def test_explain_leaves_the_model_in_the_mode_it_found(training, planted):
    model, x = planted
    model.train(training)
    explain("gradcam", model, x, [0, 1, 0], target_layer="features")
    assert model.training is training
    assert all(m.training is training for m in model.modules())


def test_registering_a_method_name_twice_is_an_error():
    from study.explainers.core import register

    with pytest.raises(ValueError, match="'gradcam' is already registered"):
        register("gradcam", needs_layer=True, per_image_batches=True)(lambda *a, **k: None)


def test_cam_needs_a_gap_linear_head():
    with pytest.raises(ValueError, match="GAP\\+linear"):
        explain("cam", PlantedNet("fc"), planted_images(1), target_layer="features")


def test_default_chunks_on_a_cpu_hold_about_a_million_input_values(monkeypatch, planted):
    import metrics.model_calls

    model, x = planted
    monkeypatch.setattr(metrics.model_calls, "CPU_CHUNK_VALUES", x[0].numel() * 5)  # five inputs a chunk
    calls = []
    handle = model.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    try:
        chosen = explain("rise", model, x, n_masks=24, seed=0)
        assert max(calls) == 5
        calls.clear()
        given = explain("rise", model, x, n_masks=24, seed=0, batch_size=12)  # an explicit size is kept
        assert max(calls) == 12
    finally:
        handle.remove()
    torch.testing.assert_close(chosen, given, atol=1e-5, rtol=0)  # the same masks, whatever the chunks
