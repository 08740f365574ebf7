"""Deletion and insertion against a one-image-at-a-time reference and a planted-signal model."""
import numpy as np
import pytest
import torch

from metrics import causal_curves, deletion, insertion
from metrics.substrates import blur, blur_taps
from _metrics_fixtures import (
    PlantedBoxModel,
    reference_auc,
    reference_curve,
    reference_moved,
    reference_substrate,
    tiny_classifier,
)


def test_blur_taps_are_standard_normal_mass_over_eleven_bins():
    from scipy.stats import norm

    expected = np.diff(norm.cdf(np.linspace(-5, 5, 12)))
    np.testing.assert_allclose(blur_taps().numpy(), expected, rtol=1e-12, atol=1e-15)
    assert abs(float(blur_taps().sum()) - 1) < 1e-6  # not renormalised, but nearly all the mass


def test_blur_is_a_zero_padded_same_convolution_per_channel():
    image = torch.rand(2, 3, 19, 23, dtype=torch.float64)
    got = blur(image).numpy()
    for b in range(2):
        np.testing.assert_allclose(got[b], reference_substrate("blur", image[b].numpy()), atol=1e-12)
    # zero padding, not reflection: a constant image darkens at the border only
    flat = blur(torch.ones(1, 1, 30, 30, dtype=torch.float64))[0, 0]
    assert flat[15, 15] == pytest.approx(1, abs=1e-5)
    assert flat[0, 0] < 0.6


@pytest.mark.parametrize("substrate", ["zeros", "blur", "mean"])
@pytest.mark.parametrize("step", [1, 7, 64, 200])
def test_curves_match_one_image_at_a_time_reference(substrate, step):
    torch.manual_seed(step)
    model = tiny_classifier(seed=step)
    x = torch.randn(3, 3, 12, 10)
    # coarse saliency so that many pixels tie; the order among ties is row-major
    maps = torch.randint(0, 4, (3, 12, 10)).float()
    targets = torch.tensor([0, 3, 4])
    result = causal_curves(
        model, x, maps, targets, step=step, deletion_substrate=substrate,
        insertion_substrate=substrate, batch_size=5,
    )
    moved = reference_moved(120, step=step)
    assert result["deletion"].pixels.tolist() == moved
    for kind, insert in (("deletion", False), ("insertion", True)):
        r = result[kind]
        assert r.curve.shape == (3, len(moved))
        for b in range(3):
            expected = reference_curve(model, x[b], maps[b].numpy(), int(targets[b]), moved, substrate, insert)
            np.testing.assert_allclose(r.curve[b].numpy(), expected, atol=1e-5)
            assert float(r.auc[b]) == pytest.approx(reference_auc(expected), abs=1e-5)


@pytest.mark.parametrize("n_steps", [1, 5, 33])
def test_n_steps_spreads_pixels_evenly(n_steps):
    model = tiny_classifier(seed=1)
    x = torch.randn(2, 3, 9, 11)
    maps = torch.rand(2, 9, 11)
    r = deletion(model, x, maps, [1, 2], n_steps=n_steps, substrate="mean", batch_size=4)
    moved = reference_moved(99, n_steps=n_steps)
    assert r.pixels.tolist() == moved and r.curve.shape == (2, n_steps + 1)
    for b in range(2):
        expected = reference_curve(model, x[b], maps[b].numpy(), [1, 2][b], moved, "mean", False)
        np.testing.assert_allclose(r.curve[b].numpy(), expected, atol=1e-5)


def test_single_metrics_agree_with_the_pair_and_share_the_original_score():
    model = tiny_classifier(seed=2)
    x = torch.randn(4, 3, 16, 16)
    maps = torch.rand(4, 16, 16)
    both = causal_curves(model, x, maps, step=20, batch_size=7)
    d = deletion(model, x, maps, step=20, batch_size=64)
    i = insertion(model, x, maps, step=20, batch_size=3)
    torch.testing.assert_close(d.curve, both["deletion"].curve)
    torch.testing.assert_close(i.curve, both["insertion"].curve)
    torch.testing.assert_close(d.curve[:, 0], i.curve[:, -1])
    # targets=None scores the top-1 class
    with torch.no_grad():
        assert d.targets.tolist() == model(x).argmax(1).tolist()


def test_planted_region_first_beats_random_beats_reverse():
    box = (8, 4, 20, 14)  # x0, y0, x1, y1
    model = PlantedBoxModel(box)
    torch.manual_seed(0)
    x = torch.randn(4, 3, 24, 32)
    inside = torch.zeros(24, 32)
    inside[box[1] : box[3], box[0] : box[2]] = 1
    noise = torch.rand(4, 24, 32)
    planted = inside + 0.5 * noise
    reverse = -planted
    random = torch.rand(4, 24, 32)
    targets = torch.zeros(4, dtype=torch.long)
    scores = {}
    for name, maps in (("planted", planted), ("random", random), ("reverse", reverse)):
        r = causal_curves(model, x, maps, targets, step=16, batch_size=64)
        scores[name] = (r["deletion"].auc, r["insertion"].auc)
    assert (scores["planted"][0] < scores["random"][0]).all()
    assert (scores["random"][0] < scores["reverse"][0]).all()
    assert (scores["planted"][1] > scores["random"][1]).all()
    assert (scores["random"][1] > scores["reverse"][1]).all()


def test_small_maps_are_upsampled_like_the_input():
    model = tiny_classifier(seed=3)
    x = torch.randn(2, 3, 16, 16)
    coarse = torch.rand(2, 4, 4)
    up = torch.nn.functional.interpolate(coarse[:, None], size=(16, 16), mode="bilinear", align_corners=False)[:, 0]
    torch.testing.assert_close(deletion(model, x, coarse, step=9).curve, deletion(model, x, up, step=9).curve)


def test_model_mode_is_restored_and_eval_is_used():
    model = tiny_classifier(seed=4).train()
    x = torch.randn(2, 3, 8, 8)
    r = deletion(model, x, torch.rand(2, 8, 8), [0, 1], step=64)
    assert model.training
    with torch.no_grad():
        expected = torch.softmax(model.eval()(x), 1)[[0, 1], [0, 1]]
    torch.testing.assert_close(r.curve[:, 0], expected)


def test_bf16_autocast_stays_close_to_fp32():
    model = tiny_classifier(seed=5)
    x = torch.randn(2, 3, 12, 12)
    maps = torch.rand(2, 12, 12)
    exact = insertion(model, x, maps, step=16)
    fast = insertion(model, x, maps, step=16, amp="bf16")
    assert fast.curve.dtype == torch.float32
    torch.testing.assert_close(fast.curve, exact.curve, atol=0.05, rtol=0)


def test_channels_last_input_gives_the_same_curves():
    model = tiny_classifier(seed=6)
    x = torch.randn(3, 3, 12, 12)
    maps = torch.rand(3, 12, 12)
    plain = deletion(model, x, maps, step=10)
    cl_model = model.to(memory_format=torch.channels_last)
    cl = deletion(cl_model, x.contiguous(memory_format=torch.channels_last), maps, step=10)
    torch.testing.assert_close(cl.curve, plain.curve, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"step": 0}, "step"),
        ({"step": 5, "n_steps": 3}, "either step or n_steps"),
        ({"n_steps": 1000}, "n_steps"),
        ({"substrate": "noise"}, "unknown substrate"),
        ({"batch_size": 0}, "batch_size"),
        ({"amp": "fp8"}, "amp"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    model = tiny_classifier()
    with pytest.raises(ValueError, match=message):
        deletion(model, torch.randn(1, 3, 8, 8), torch.rand(1, 8, 8), **kwargs)


def test_bad_maps_and_targets_are_named():
    model = tiny_classifier()
    x = torch.randn(2, 3, 8, 8)
    with pytest.raises(ValueError, match="2 images"):
        deletion(model, x, torch.rand(3, 8, 8))
    with pytest.raises(ValueError, match="NaN"):
        deletion(model, x, torch.full((2, 8, 8), float("nan")))
    with pytest.raises(ValueError, match=r"\[B, H, W\]"):
        deletion(model, x, torch.rand(2, 2, 8, 8))
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 5\)"):
        deletion(model, x, torch.rand(2, 8, 8), [0, 7])
    with pytest.raises(ValueError, match="one class per image"):
        deletion(model, x, torch.rand(2, 8, 8), [0, 1, 2])


class CountingModel(torch.nn.Module):
    """Records the batch size of every forward pass of the wrapped model."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.batches = []

    def forward(self, x):
        self.batches.append(x.shape[0])
        return self.inner(x)


def test_passes_are_streamed_in_chunks_and_the_original_is_scored_once():
    model = CountingModel(tiny_classifier(seed=8))
    x = torch.randn(3, 3, 12, 10)
    result = causal_curves(model, x, torch.rand(3, 12, 10), step=7, batch_size=5)
    n = result["deletion"].curve.shape[1] - 1
    assert n == 18
    assert sum(model.batches) == 3 * (2 * n + 1)  # not 2 * (n + 1): the original serves both curves
    assert max(model.batches) <= 5


def test_default_chunks_on_a_cpu_hold_about_a_million_input_values(monkeypatch):
    import metrics.model_calls

    monkeypatch.setattr(metrics.model_calls, "CPU_CHUNK_VALUES", 3 * 12 * 10 * 4)  # four 3x12x10 inputs
    model = CountingModel(tiny_classifier(seed=8))
    x = torch.randn(3, 3, 12, 10)
    maps = torch.rand(3, 12, 10)
    chosen = causal_curves(model, x, maps, step=7)
    assert max(model.batches) == 4
    model.batches.clear()
    explicit = causal_curves(model, x, maps, step=7, batch_size=9)  # an explicit size is kept
    assert max(model.batches) == 9
    torch.testing.assert_close(chosen["deletion"].curve, explicit["deletion"].curve)
    assert metrics.model_calls.chunk_size(x.to("meta"), 256) == 256  # accelerators keep the large chunk
    with pytest.raises(ValueError, match="batch_size"):
        metrics.model_calls.chunk_size(x, 0)  # a --batch-size of 0 is an error on every device


def test_metrics_package_does_not_import_study_or_ui():
    import subprocess
    import sys
    from pathlib import Path

    code = "import sys, metrics; print(sorted({m.split('.')[0] for m in sys.modules} & {'study', 'ui'}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "[]"
