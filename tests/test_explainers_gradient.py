"""Gradient and guided explainers against known answers and the reference libraries.

- planted-signal models (tests/_planted.py): each class's evidence sits in a known box;
- pytorch-grad-cam (Grad-CAM, Grad-CAM++), captum (GuidedBackprop) and the CAM formula, on random-init
  torchvision models;
- twins of one network applying ReLU as modules, in place, functionally, as a tensor method, and ReLU6.
"""
from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from study.explainers import METHODS, explain
from study.explainers.guided import guided_gradients
from _planted import PlantedNet, boxes, in_box, planted_images

OURS = ["gradcam", "gradcam++", "guided_backprop", "guided_gradcam", "guided_ablationcam"]


def pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-map Pearson correlation of [N,H,W] maps."""
    a, b = a.flatten(1).double(), b.flatten(1).double()
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))


# ---------------------------------------------------------------------------------- planted signal


@pytest.mark.parametrize("head", ["gap", "fc"])
@pytest.mark.parametrize("method", OURS + ["cam"])
def test_each_class_map_peaks_in_its_own_planted_box(head, method):
    if method == "cam" and head == "fc":
        pytest.skip("CAM is defined for GAP+linear heads only (its error is tested in test_explainers_api)")
    model, x = PlantedNet(head), planted_images(3)
    maps = explain(method, model, x, torch.tensor([[0, 1]] * 3), target_layer="features")
    box0, box1 = boxes()
    assert in_box(maps[:, 0], box0).all() and in_box(maps[:, 1], box1).all()


# ------------------------------------------------------------------------------------- reference libraries


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(1)
    return torchvision.models.resnet18(weights=None, num_classes=20).eval(), "layer4", torch.randn(3, 3, 96, 96)


@pytest.fixture(scope="module")
def vgg():
    """vgg11 with a narrower FC head (fast on CPU; still flatten + MLP, no GAP)."""
    torch.manual_seed(2)
    model = torchvision.models.vgg11(weights=None)
    model.classifier = nn.Sequential(nn.Linear(512 * 7 * 7, 256), nn.ReLU(inplace=True), nn.Linear(256, 20))
    return model.eval(), "features.19", torch.randn(3, 3, 64, 64)


def _pytorch_grad_cam(cls_name, model, layer, x, classes):
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cam = getattr(pytorch_grad_cam, cls_name)(model=model, target_layers=[model.get_submodule(layer)])
    try:
        return torch.from_numpy(cam(x, [ClassifierOutputTarget(c) for c in classes]))
    finally:
        cam.activations_and_grads.release()


@pytest.mark.parametrize("net", ["resnet", "vgg"])
@pytest.mark.parametrize(("ours", "theirs"), [("gradcam", "GradCAM"), ("gradcam++", "GradCAMPlusPlus")])
def test_gradient_cams_match_pytorch_grad_cam(net, ours, theirs, request):
    model, layer, x = request.getfixturevalue(net)
    targets = torch.tensor([[3, 7], [0, 11], [5, 19]])
    maps = explain(ours, model, x, targets, target_layer=layer)
    for t in range(targets.shape[1]):
        reference = _pytorch_grad_cam(theirs, model, layer, x, targets[:, t].tolist())
        assert reference.flatten(1).amax(1).gt(0).all(), "degenerate reference map: pick other targets"
        assert pearson(maps[:, t], reference).min() >= 0.99


@pytest.mark.parametrize("net", ["resnet", "vgg"])
def test_guided_backprop_matches_captum(net, request):
    from captum.attr import GuidedBackprop

    model, _, x = request.getfixturevalue(net)
    for module in model.modules():  # captum's module hooks cannot follow in-place ReLUs; ours can
        if isinstance(module, nn.ReLU):
            module.inplace = False
    targets = torch.tensor([[3, 7], [0, 11], [5, 19]])
    ours = guided_gradients(model, x, targets)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for t in range(2):
            reference = GuidedBackprop(model).attribute(x.clone(), target=targets[:, t])
            torch.testing.assert_close(ours[:, t], reference, rtol=1e-4, atol=1e-6 * reference.abs().max().item())


def test_cam_is_the_class_weighted_sum_of_the_last_feature_maps(resnet):
    model, layer, x = resnet
    targets = torch.tensor([4, 9, 13])
    store = {}
    handle = model.layer4.register_forward_hook(lambda m, i, o: store.update(A=o))
    with torch.no_grad():
        model(x)
    handle.remove()
    expected = torch.einsum("bk,bkhw->bhw", model.fc.weight[targets], store["A"])
    expected = F.interpolate(expected[:, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    got = explain("cam", model, x, targets, target_layer=layer, normalize=False)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_gradcam_is_rectified_cam_over_hw_on_a_gap_linear_head(resnet):
    """For logits = W GAP(A) + b, dy_c/dA_ij^k = w_k^c / (hw): Grad-CAM = ReLU(CAM) / hw (Grad-CAM paper, 3.1)."""
    model, layer, x = resnet
    targets = torch.tensor([[4], [9], [13]])
    kw = dict(layer=model.layer4, batch_size=8, seed=None)
    cam, gradcam = METHODS["cam"].fn(model, x, targets, **kw), METHODS["gradcam"].fn(model, x, targets, **kw)
    h, w = cam.shape[-2:]
    torch.testing.assert_close(gradcam * (h * w), F.relu(cam), rtol=1e-4, atol=1e-5)


def test_guided_gradcam_is_guided_backprop_times_upsampled_gradcam(vgg):
    model, layer, x = vgg
    targets = torch.tensor([[1, 2], [3, 4], [5, 6]])
    raw = dict(target_layer=layer, normalize=False)
    guided = explain("guided_backprop", model, x, targets, reduce="none", **raw)
    cam = explain("gradcam", model, x, targets, **raw)
    got = explain("guided_gradcam", model, x, targets, reduce="none", **raw)
    torch.testing.assert_close(got, guided * cam[:, :, None], rtol=1e-4, atol=1e-7)


# ---------------------------------------------------------------------- batches, ReLU styles, ReLU6


def test_a_batch_gives_the_same_maps_as_one_image_at_a_time():
    model, x = PlantedNet("fc"), planted_images(3)
    targets = torch.tensor([[0, 2], [1, 0], [2, 1]])
    for method in OURS:
        batch = explain(method, model, x, targets, target_layer="features", batch_size=3)
        single = torch.cat([explain(method, model, x[i : i + 1], targets[i : i + 1], target_layer="features")
                            for i in range(3)])
        chunked = explain(method, model, x, targets, target_layer="features", batch_size=2)
        torch.testing.assert_close(batch, single, rtol=1e-4, atol=1e-5, msg=method)
        torch.testing.assert_close(batch, chunked, rtol=1e-4, atol=1e-5, msg=method)


class TwinNet(nn.Module):
    """One small network whose ReLUs are applied in the way `style` names (weights fixed by the seed)."""

    def __init__(self, style: str):
        super().__init__()
        torch.manual_seed(3)
        self.style = style
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.conv3 = nn.Conv2d(16, 16, 3, padding=1)
        self.features = nn.Identity()  # the target layer: the last rectified feature map
        self.act = nn.ReLU(inplace=style == "inplace")
        self.fc = nn.Linear(16, 5)

    def relu(self, x):
        if self.style in ("module", "inplace"):
            return self.act(x)
        if self.style == "functional":
            return F.relu(x)
        if self.style == "functional_inplace":
            return F.relu(x, inplace=True)
        if self.style == "torch":
            return torch.relu(x)
        if self.style == "clamp":
            return x.clamp(min=0)
        x.relu_()  # "method_": the side effect alone does the work
        return x

    def forward(self, x):
        x = self.relu(self.conv2(self.relu(self.conv1(x))))
        a = self.features(self.relu(self.conv3(x)))
        return self.fc(self.relu(a).mean((2, 3)))  # a no-op ReLU after the layer, in place for some styles


STYLE_CASES = [
    (style, method)
    for style in ["inplace", "functional", "functional_inplace", "torch", "clamp", "method_"]
    for method in ["cam", *OURS]
]


@pytest.mark.parametrize(("style", "method"), STYLE_CASES)
def test_relu_styles_give_the_same_maps_as_the_nn_relu_twin(style, method):
    x = torch.randn(2, 3, 32, 32)
    targets = torch.tensor([[0, 3], [4, 1]])
    expected = explain(method, TwinNet("module"), x, targets, target_layer="features", normalize=False, reduce="none")
    got = explain(method, TwinNet(style), x, targets, target_layer="features", normalize=False, reduce="none")
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)


def test_guided_rule_reaches_functional_relus():
    """On the functional twin the guided gradient is not the plain gradient, and is captum's on the module twin."""
    from captum.attr import GuidedBackprop

    x, targets = torch.randn(2, 3, 32, 32), torch.tensor([[0], [4]])
    ours = guided_gradients(TwinNet("functional"), x, targets)[0][:, 0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = GuidedBackprop(TwinNet("module")).attribute(x.clone(), target=targets[:, 0])
    net = TwinNet("functional")
    xg = x.clone().requires_grad_(True)
    plain = torch.autograd.grad(net(xg).gather(1, targets).sum(), xg)[0]
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-8)
    assert (ours - plain).abs().max() > 0.1 * plain.abs().max()


class _ReluThenCap(nn.Module):
    """ReLU6 written as an nn.ReLU module followed by min(x, 6), so captum can hook its ReLU part."""

    def __init__(self):
        super().__init__()
        self.relu = nn.ReLU()

    def forward(self, x):
        return torch.clamp(self.relu(x), max=6.0)


def test_guided_rule_on_relu6_is_relu_guided_then_ordinary_cap():
    """EfficientNet-Lite0 (ReLU6 throughout): ours equals captum on the twin whose ReLU6s are ReLU + cap."""
    from captum.attr import GuidedBackprop

    from study.models.efficientnet_lite import EfficientNetLite0

    torch.manual_seed(4)
    net = EfficientNetLite0(num_classes=10).eval()
    twin = EfficientNetLite0(num_classes=10).eval()
    twin.load_state_dict(net.state_dict())
    for name, module in list(twin.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.ReLU6):
                setattr(module, child_name, _ReluThenCap())
    x = 4 * torch.randn(2, 3, 64, 64)  # large enough that some pre-activations pass 6
    above = []
    hooks = [m.register_forward_hook(lambda m, i, o: above.append((i[0] > 6).sum().item()))
             for m in net.modules() if isinstance(m, nn.ReLU6)]
    with torch.no_grad():
        net(x)
    for h in hooks:
        h.remove()
    assert sum(above) > 0, "the cap is never reached: the test would not see how ReLU6 is treated"
    targets = torch.tensor([[2], [7]])
    ours = guided_gradients(net, x, targets)[0][:, 0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = GuidedBackprop(twin).attribute(x.clone(), target=targets[:, 0])
    torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-6 * reference.abs().max().item())
