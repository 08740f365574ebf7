"""Explainers on transformers and channels-last networks: torchvision ViT and Swin, timm, Hugging Face.

- the target layer's output read as a map (tokens without their prefix, channels-last maps), its
  gradients and its ablation, against the layouts written out by hand;
- parity with pytorch-grad-cam's reshape_transform path (Grad-CAM, Grad-CAM++), and Score-CAM and
  Ablation-CAM against the papers' formulas, one channel at a time, on small random ViT and Swin models;
- a planted-signal transformer (tests/_planted.py) whose right answer is known;
- default target layers, `score=`, and timm / Hugging Face models loaded by name from local files.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import VisionTransformer
from torchvision.models.swin_transformer import SwinTransformer

from _planted import PlantedViT, boxes, in_box, planted_images
from study import load_model
from study.explainers import explain
from study.explainers.reshape import FeatureLayer
from study.models.layers import default_layer

pytestmark = pytest.mark.usefixtures("one_thread")  # many small passes: one thread

SIZE = 64
LAYER_METHODS = ["gradcam", "gradcam++", "scorecam", "ablationcam"]


@pytest.fixture(scope="module")
def vit():
    """vit_b_16's architecture, tiny: 4x4 patches of 16 px plus a class token; a random (not zero) head."""
    torch.manual_seed(0)
    net = VisionTransformer(image_size=SIZE, patch_size=16, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64,
                            num_classes=10).eval()
    nn.init.normal_(net.heads.head.weight, std=1.0)
    return net


@pytest.fixture(scope="module")
def swin():
    """swin_t's architecture (torchvision SwinTransformer), tiny: channels-last stages down to 2x2."""
    torch.manual_seed(0)
    return SwinTransformer(patch_size=[4, 4], embed_dim=8, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1],
                           window_size=[4, 4], num_classes=10).eval()


@pytest.fixture(scope="module")
def x():
    return torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))


def vit_tokens_as_map(tokens: torch.Tensor) -> torch.Tensor:
    """pytorch-grad-cam's ViT reshape_transform convention: drop the class token, [B,D,h,w]."""
    b, n, d = tokens.shape
    side = int((n - 1) ** 0.5)
    return tokens[:, 1:].reshape(b, side, side, d).permute(0, 3, 1, 2)


def swin_as_map(output: torch.Tensor) -> torch.Tensor:
    return output.permute(0, 3, 1, 2)


def pearson(a, b) -> float:
    return float(np.corrcoef(np.asarray(a).ravel(), np.asarray(b).ravel())[0, 1])


def visible_targets(model, x, method="gradcam") -> torch.Tensor:
    """Per image, the class whose raw map is largest (a random model's top-1 map can be blank)."""
    classes = torch.arange(10).repeat(len(x), 1)
    raw = explain(method, model, x, classes, normalize=False)
    return raw.flatten(2).amax(2).argmax(1)


# ------------------------------------------------------------------------------ reading the layer


@pytest.mark.parametrize("prefix", [0, 1, 2, 5])
def test_tokens_lose_their_prefix_and_form_the_patch_grid(prefix):
    tokens = torch.randn(2, prefix + 12, 7)  # a 3x4 patch grid of a 48x64 input
    view = FeatureLayer(nn.Identity(), "blocks.0.norm1").view(tokens, (48, 64))
    mapped = view(tokens)
    assert mapped.shape == (2, 7, 3, 4)
    torch.testing.assert_close(mapped, tokens[:, prefix:].reshape(2, 3, 4, 7).permute(0, 3, 1, 2))
    assert mapped.data_ptr() == tokens[:, prefix:].data_ptr()  # a view, not a copy


def test_channels_last_maps_are_recognised_and_channels_first_ones_kept():
    layer = FeatureLayer(nn.LayerNorm(16), "features.7.0.norm1")
    nhwc = torch.randn(2, 2, 2, 16)
    torch.testing.assert_close(layer.view(nhwc, (64, 64))(nhwc), nhwc.permute(0, 3, 1, 2))
    nchw = torch.randn(2, 512, 7, 7)
    assert FeatureLayer(nn.Identity(), "layer4").view(nchw, (224, 224))(nchw) is nchw
    cube = torch.randn(2, 16, 16, 16)  # both readings fit: the layer's type decides
    assert FeatureLayer(nn.Conv2d(3, 16, 3), "conv").view(cube, (32, 32))(cube) is cube
    assert FeatureLayer(nn.LayerNorm(16), "norm").view(cube, (32, 32))(cube).shape == (2, 16, 16, 16)
    assert not torch.equal(FeatureLayer(nn.LayerNorm(16), "norm").view(cube, (32, 32))(cube), cube)


@pytest.mark.parametrize("shape, size, message", [
    ((2, 10, 8), (48, 48), r"blocks\.3 .*\[2, 10, 8\].*ambiguous"),  # 1 + 3x3 patches or 6 + 2x2
    ((2, 59, 8), (64, 64), r"blocks\.3 .*\[2, 59, 8\].*no prefix"),  # 51..59 patches: no square
    ((2, 16, 16, 16), (32, 32), r"blocks\.3 .*\[2, 16, 16, 16\].*ambiguous"),
    ((2, 5), (64, 64), r"blocks\.3 .*\[2, 5\]"),
])
def test_an_unreadable_shape_is_an_error_naming_the_layer_and_the_shape(shape, size, message):
    mixed = nn.Sequential(nn.Conv2d(16, 16, 1), nn.LayerNorm(16))
    with pytest.raises(ValueError, match=message):
        FeatureLayer(mixed, "blocks.3").view(torch.zeros(shape), size)


def test_reshape_overrides_the_reading_and_a_wrong_one_names_the_layer(vit, x):
    ours = explain("gradcam", vit, x, [1, 2])
    given = explain("gradcam", vit, x, [1, 2], reshape=vit_tokens_as_map)
    torch.testing.assert_close(given, ours)
    with pytest.raises(ValueError, match=r"reshape of target layer encoder\.layers\.encoder_layer_1\.ln_1"):
        explain("gradcam", vit, x, [1, 2], reshape=lambda t: t[:, 1:])


def test_gradients_are_the_token_gradients_reshaped(vit, x):
    from study.explainers.gradients import class_gradients

    layer = FeatureLayer(vit.encoder.layers[-1].ln_1, "ln_1")
    activations, grads = class_gradients(vit, x, torch.tensor([[3], [4]]), layer)
    store = {}
    handle = layer.module.register_forward_hook(lambda _m, _i, out: store.update(tokens=out))
    logits = vit(x)
    (token_grads,) = torch.autograd.grad(logits[[0, 1], [3, 4]].sum(), store["tokens"])
    handle.remove()
    torch.testing.assert_close(activations, vit_tokens_as_map(store["tokens"]).detach())
    torch.testing.assert_close(grads[0], vit_tokens_as_map(token_grads))
    assert token_grads[:, 1:].abs().amax() > 0


# ------------------------------------------------------------------------------ defaults and errors


def test_default_layers_are_the_first_norm_of_the_last_block_never_the_patch_embedding(vit, swin, x):
    assert default_layer(vit, x) == "encoder.layers.encoder_layer_1.ln_1"
    assert default_layer(swin, x) == "features.7.0.norm1"  # features[-1][-1].norm1
    assert default_layer(PlantedViT(), x) == "blocks.0.norm1"


def test_an_unrecognised_transformer_asks_for_a_target_layer(x):
    class Patchify(nn.Module):  # a patch embedding, then tokens through blocks no rule recognises
        def __init__(self):
            super().__init__()
            self.embed = nn.Conv2d(3, 16, 16, stride=16)
            self.mixer = nn.Sequential(nn.LayerNorm(16), nn.Linear(16, 16), nn.GELU())
            self.head = nn.Linear(16, 5)

        def forward(self, x):
            return self.head(self.mixer(self.embed(x).flatten(2).transpose(1, 2)).mean(1))

    with pytest.raises(LookupError, match="patch embedding embed.*target_layer="):
        explain("gradcam", Patchify(), x)
    maps = explain("gradcam", Patchify(), x, target_layer="mixer.0")
    assert maps.shape == (2, SIZE, SIZE)


@pytest.mark.parametrize("method", ["guided_backprop", "guided_gradcam", "guided_ablationcam"])
def test_guided_methods_on_a_network_without_rectifiers_say_why(method, vit, x):
    with pytest.raises(ValueError, match="rectifiers.*VisionTransformer has none"):
        explain(method, vit, x)


def test_cam_on_a_class_token_head_stays_an_error(vit, x):
    with pytest.raises(ValueError, match="GAP\\+linear"):
        explain("cam", vit, x)


# ------------------------------------------------------------------------------ against references


@pytest.mark.parametrize("name, as_map", [("vit", vit_tokens_as_map), ("swin", swin_as_map)])
def test_gradcam_agrees_with_pytorch_grad_cams_reshape_transform(name, as_map, request, x):
    assert_agrees_with_pytorch_grad_cam("gradcam", "GradCAM", request.getfixturevalue(name), x, as_map)


def test_gradcam_plus_plus_agrees_with_pytorch_grad_cam_far_above_its_epsilon(vit, x):
    """pytorch-grad-cam adds 1e-6 to the denominator 2g^2 + sum(A) g^3: with a head scaled by 100 the
    gradients are large enough that it no longer matters."""
    loud = VisionTransformer(image_size=SIZE, patch_size=16, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64,
                             num_classes=10).eval()
    loud.load_state_dict(vit.state_dict())
    loud.heads.head.weight.data *= 100
    assert_agrees_with_pytorch_grad_cam("gradcam++", "GradCAMPlusPlus", loud, x, vit_tokens_as_map)


def assert_agrees_with_pytorch_grad_cam(method, cls, model, x, as_map):
    """Our `method` at the default layer against the library's `cls` there with reshape_transform=as_map:
    Pearson >= 0.99 per image, each for a class whose map is not blank."""
    pytorch_grad_cam = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    targets = visible_targets(model, x, method)
    ours = explain(method, model, x, targets)
    layer = model.get_submodule(default_layer(model, x))
    cam = getattr(pytorch_grad_cam, cls)(model=model, target_layers=[layer], reshape_transform=as_map)
    try:
        theirs = cam(x, [ClassifierOutputTarget(int(c)) for c in targets])
    finally:
        cam.activations_and_grads.release()
    for b in range(len(x)):
        assert pearson(ours[b], theirs[b]) >= 0.99


def hooked(model, layer, as_map, edit=None):
    """A hook storing the layer's map as store["A"] and replacing its output by `edit(output)` when given:
    (store, handle)."""
    store = {}

    def hook(_m, _i, out):
        store["A"] = as_map(out)
        return None if edit is None else edit(out)

    return store, layer.register_forward_hook(hook)


def reference_scorecam(model, x, target, layer, as_map):
    """Score-CAM one channel at a time (the authors' loop): [H,W] for one image."""
    store, handle = hooked(model, layer, as_map)
    with torch.no_grad():
        model(x)
        handle.remove()
        a = store["A"][0]
        cam = torch.zeros(x.shape[-2:], dtype=torch.float64)
        for k in range(a.shape[0]):
            up = F.interpolate(a[None, k : k + 1], size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
            if up.max() == up.min():
                continue
            mask = (up - up.min()) / (up.max() - up.min())
            cam += F.softmax(model(x * mask), 1)[0, target].double() * up.double()
    return F.relu(cam)


def reference_ablationcam(model, x, target, layer, as_map):
    """Ablation-CAM by the paper: the whole model rerun with feature k of the patch tokens (never the
    class token) set to 0; w_k = (y_c - y_c^k) / y_c; ReLU(sum_k w_k A_k) upsampled. [H,W] for one image."""
    store, handle = hooked(model, layer, as_map)
    with torch.no_grad():
        y = model(x)[0, target].double()
        handle.remove()
        a = store["A"][0].double()
        weights = []
        for k in range(a.shape[0]):
            def zero_k(out, k=k):
                out = out.clone()
                as_map(out)[:, k] = 0  # the map is a view of the output: this zeroes patch tokens only
                return out

            _, handle = hooked(model, layer, as_map, zero_k)
            weights.append((y - model(x)[0, target].double()) / y)
            handle.remove()
    cam = F.relu(torch.einsum("k,khw->hw", torch.stack(weights), a))
    return F.interpolate(cam[None, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0]


@pytest.mark.parametrize("name, as_map", [("vit", vit_tokens_as_map), ("swin", swin_as_map)])
@pytest.mark.parametrize("method, reference", [("scorecam", reference_scorecam),
                                               ("ablationcam", reference_ablationcam)])
def test_perturbation_cams_match_the_papers_formulas(name, as_map, method, reference, request, x):
    model = request.getfixturevalue(name)
    layer = model.get_submodule(default_layer(model, x))
    targets = model(x).argmax(1)
    ours = explain(method, model, x, targets, normalize=False, batch_size=8)  # batched, in chunks
    for b in range(len(x)):
        ref = reference(model, x[b : b + 1], int(targets[b]), layer, as_map).float()
        assert ref.max() > 0
        torch.testing.assert_close(ours[b], ref, rtol=0, atol=1e-4 * float(ref.abs().max()))


def test_ablationcam_on_a_vit_is_the_same_batched_or_one_image_at_a_time(vit, x, monkeypatch):
    from study.explainers import ablation

    targets = torch.tensor([[1, 2], [3, 4]])
    together = explain("ablationcam", vit, x, targets, normalize=False, batch_size=64)
    alone = torch.cat([explain("ablationcam", vit, x[i : i + 1], targets[i : i + 1], normalize=False, batch_size=5)
                       for i in range(2)])
    monkeypatch.setattr(ablation, "split_at", lambda *args: None)  # the hook fallback
    hooked_maps = explain("ablationcam", vit, x, targets, normalize=False, batch_size=64)
    scale = float(together.abs().max())
    torch.testing.assert_close(alone, together, rtol=0, atol=1e-5 * scale)
    torch.testing.assert_close(hooked_maps, together, rtol=0, atol=1e-5 * scale)


# ------------------------------------------------------------------------------ planted signal


@pytest.mark.parametrize("method", LAYER_METHODS + ["cam"])
def test_every_layer_method_finds_the_planted_tokens(method):
    model, x = PlantedViT(), planted_images(3)
    layer = {"target_layer": "blocks.0"} if method == "cam" else {}  # CAM: the block feeding GAP + linear
    maps = explain(method, model, x, torch.tensor([[0, 1]] * 3), **layer)
    for c in range(2):
        assert in_box(maps[:, c], boxes(SIZE)[c]).all(), f"{method} misses box {c}"


def test_the_random_baseline_does_not_find_the_planted_tokens():
    model, x = PlantedViT(), planted_images(8, seed=3)
    maps = explain("random", model, x, torch.tensor([[0, 1]] * 8), seed=0)
    hits = torch.stack([in_box(maps[:, c], boxes(SIZE)[c]) for c in range(2)])
    assert hits.float().mean() < 0.5


# ------------------------------------------------------------------------------ score=


class Scored(nn.Module):
    """A model whose 'logits' are another model's softmax or sigmoid scores."""

    def __init__(self, model, fn):
        super().__init__()
        self.model, self.fn = model, fn

    def forward(self, x):
        return self.fn(self.model(x))


@pytest.mark.parametrize("score, fn", [("softmax", lambda y: y.softmax(1)), ("sigmoid", torch.sigmoid)])
@pytest.mark.parametrize("method, options", [("rise", {"n_masks": 40}), ("scorecam", {}),
                                             ("lime", {"num_samples": 30, "n_segments": 20})])
def test_score_names_the_class_score_perturbation_methods_measure(score, fn, method, options, vit, x):
    """Explaining with score=S equals explaining a model whose logits are already S, with score="logit"."""
    layer = "encoder.layers.encoder_layer_1.ln_1"
    direct = explain(method, vit, x, [1, 2], score=score, normalize=False, seed=0, target_layer=layer, **options)
    via_logit = explain(method, Scored(vit, fn), x, [1, 2], score="logit", normalize=False, seed=0,
                        target_layer=f"model.{layer}", **options)
    torch.testing.assert_close(direct, via_logit, rtol=1e-4, atol=1e-6)


def test_an_unknown_score_is_an_error(vit, x):
    with pytest.raises(ValueError, match="score must be one of 'softmax', 'sigmoid', 'logit'"):
        explain("rise", vit, x, score="probability")


# ------------------------------------------------------------------------------ models by name


@pytest.mark.parametrize("arch, layer", [("test_vit", "network.blocks.5.norm1"), ("test_convnext", None)])
@pytest.mark.parametrize("fmt", ["safetensors", "pt"])
def test_a_timm_model_loads_by_name_from_a_local_file_and_explains(arch, layer, fmt, tmp_path):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    net = timm.create_model(arch, pretrained=False, num_classes=7).eval()
    path = tmp_path / f"net.{fmt}"
    if fmt == "safetensors":
        pytest.importorskip("safetensors.torch").save_file(net.state_dict(), path)
    else:
        torch.save(net.state_dict(), path)
    model = load_model(f"timm:{arch}", weights=path)
    assert len(model.categories) == 7 and model.input_size == (160, 160)
    if layer is not None:
        assert model.target_layer == layer
    else:  # a CNN: its last feature map (after the stages, an identity before the pooled head), never the stem
        assert model.target_layer == "network.norm_pre"
    x = model.preprocess([np.zeros((50, 70, 3), np.uint8), np.full((60, 60, 3), 200, np.uint8)])
    torch.testing.assert_close(model(x), net(x))
    maps = explain("gradcam", model, x)
    assert maps.shape == (2, 160, 160) and maps.isfinite().all()


def test_a_saved_hugging_face_classifier_loads_by_folder_and_explains(tmp_path):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                                    num_attention_heads=2, intermediate_size=64, num_labels=3,
                                    id2label={0: "cat", 1: "dog", 2: "fox"}, label2id={"cat": 0, "dog": 1, "fox": 2})
    net = transformers.ViTForImageClassification(config).eval()
    net.save_pretrained(tmp_path)
    transformers.ViTImageProcessor(size={"height": 32, "width": 32}, image_mean=[0.4, 0.5, 0.6],
                                   image_std=[0.2, 0.25, 0.3]).save_pretrained(tmp_path)
    model = load_model(f"hf:{tmp_path}")
    assert model.categories == ["cat", "dog", "fox"] and model.input_size == (32, 32)
    # vit.encoder.layer.1.layernorm_before before transformers 5, vit.layers.1.layernorm_before since
    assert model.target_layer.startswith("network.model.vit.") and model.target_layer.endswith("1.layernorm_before")
    torch.testing.assert_close(model.mean.flatten(), torch.tensor([0.4, 0.5, 0.6]))
    x = model.preprocess([np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8)] * 2)
    torch.testing.assert_close(model(x), net(pixel_values=x).logits)
    for method in ("gradcam", "ablationcam", "scorecam"):
        maps = explain(method, model, x, [0, 2])
        assert maps.shape == (2, 32, 32) and maps.isfinite().all()


@pytest.mark.parametrize("name, extra", [("timm:test_vit", "timm"), ("hf:/nowhere", "hf")])
def test_a_missing_library_names_the_extra_to_install(name, extra, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "timm" if extra == "timm" else "transformers", None)
    with pytest.raises(ValueError, match=rf"pip install 'camstudy\[{extra}\]'"):
        load_model(name)


def test_timm_and_hugging_face_names_work_in_the_command_line(tmp_path):
    """The names `load_model` takes work in `camstudy explain` and `camstudy score` too."""
    timm = pytest.importorskip("timm")
    transformers = pytest.importorskip("transformers")
    from PIL import Image

    from study.cli import main

    images = tmp_path / "images"
    images.mkdir()
    for k in range(2):
        Image.fromarray(np.random.default_rng(k).integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(images / f"{k}.png")
    torch.manual_seed(0)
    torch.save(timm.create_model("test_vit", pretrained=False, num_classes=5).state_dict(), tmp_path / "vit.pt")
    config = transformers.ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                                    num_attention_heads=2, intermediate_size=64, num_labels=3)
    transformers.ViTForImageClassification(config).save_pretrained(tmp_path / "hf")
    transformers.ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path / "hf")
    assert main(["explain", "--model", "timm:test_vit", "--weights", str(tmp_path / "vit.pt"), "--images", str(images),
                 "--methods", "gradcam,random", "--out", str(tmp_path / "maps")]) == 0
    assert len(list((tmp_path / "maps").rglob("*.npy"))) == 4
    assert main(["score", "--model", f"hf:{tmp_path / 'hf'}", "--images", str(images), "--methods", "gradcam",
                 "--step", "256", "--no-plots", "--out", str(tmp_path / "scores")]) == 0
    assert (tmp_path / "scores" / "faithfulness.csv").read_text().count("gradcam") >= 2
