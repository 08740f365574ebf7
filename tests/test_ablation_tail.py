"""Ablation-CAM's tail analysis (study/explainers/ablation_tail.py) against the paper's definition.

The reference is the definition taken literally: the whole model, in float64, run once per channel k with
a forward hook setting channel k of the target layer's output to 0; w_k = (y_c - y_c^k) / y_c and the map
ReLU(sum_k w_k A_k). Each path (per-channel, rank-1, and the split every copy runs through) must give
those maps on small random networks and the planted ones: residual blocks that add in place, tails of
batch norm -> ReLU -> pool -> linear, tails that start with a 1x1 or a 3x3 convolution, token [B,N,D] and
channels-last [B,H,W,C] layers, dead channels, and a front that torch.fx cannot trace.
"""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from _planted import PlantedNet, planted_images
from study.explainers import ablation
from study.explainers.reshape import FeatureLayer

pytestmark = pytest.mark.usefixtures("one_thread")  # many small passes: one thread

SIZE = 16


def slow_maps(model: nn.Module, x: torch.Tensor, targets: torch.Tensor, name: str, as_map=lambda out: out):
    """Raw maps [B,T,h,w] by the definition: one float64 pass of the whole model per channel, with channel k
    of the layer's output (`as_map(out)[:, k]`, a view) set to 0 by a forward hook."""
    model, x = copy.deepcopy(model).double(), x.double()
    state = {}

    def hook(_module, _inputs, out):
        if "k" not in state:
            state["A"] = as_map(out).clone()
            return None
        out = out.clone()
        as_map(out)[:, state["k"]] = 0
        return out

    handle = model.get_submodule(name).register_forward_hook(hook)
    try:
        with torch.no_grad():
            y = model(x).gather(1, targets)
            ablated = []
            for k in range(state["A"].shape[1]):
                state["k"] = k
                ablated.append(model(x).gather(1, targets))
    finally:
        handle.remove()
    weights = (y[..., None] - torch.stack(ablated, 2)) / y[..., None]
    return F.relu(torch.einsum("btk,bkhw->bthw", weights, state["A"]))


def randomised(model: nn.Module, seed: int = 0) -> nn.Module:
    """`model` in eval mode with random batch-norm statistics and affine parameters (not the identity)."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(0.3 * torch.randn(m.num_features, generator=g))
            m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))
            m.weight.data.copy_(0.5 + torch.rand(m.num_features, generator=g))
            m.bias.data.copy_(0.2 * torch.randn(m.num_features, generator=g))
    return model.eval()


class Block(nn.Module):
    """torchvision's BasicBlock: ReLU(inplace=True) and `out += identity`."""

    def __init__(self, c: int, statement: bool = False):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.relu, self.statement = nn.ReLU(inplace=True), statement

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.statement:  # a bare in-place call: the value it writes is read again afterwards
            out.add_(identity)
        else:
            out += identity
        return self.relu(out)


class ResidualNet(nn.Module):
    def __init__(self, c: int = 8, classes: int = 5, statement: bool = False):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, c, 3, stride=2, padding=1), nn.BatchNorm2d(c), nn.ReLU(inplace=True))
        self.block = Block(c, statement)
        self.pool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(c, classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.block(self.stem(x))), 1))


class ConvHead(nn.Module):
    """features (the target) -> [conv] -> batch norm -> activation -> pool -> dropout -> linear."""

    def __init__(self, kernel: int | None, c: int = 8, classes: int = 5, act=nn.ReLU6):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, c, 3, stride=2, padding=1), nn.BatchNorm2d(c))
        self.conv = nn.Conv2d(c, 2 * c, kernel, stride=kernel - 1 or 1, padding=kernel // 2, bias=kernel == 3) \
            if kernel else nn.Identity()
        self.bn, self.act = nn.BatchNorm2d(2 * c if kernel else c), act()
        self.pool, self.drop = nn.AdaptiveAvgPool2d(1), nn.Dropout(0.3)
        self.fc = nn.Linear(2 * c if kernel else c, classes)

    def forward(self, x):
        return self.fc(self.drop(self.pool(self.act(self.bn(self.conv(self.features(x))))).flatten(1)))


class TinyTokens(nn.Module):
    """A ViT-like network: patch embedding, a class token, norm -> attention and an MLP with residuals, the head
    on the class token."""

    def __init__(self, d: int = 8, classes: int = 5):
        super().__init__()
        self.embed = nn.Conv2d(3, d, 4, stride=4)
        self.cls = nn.Parameter(torch.randn(1, 1, d))
        self.norm, self.qkv, self.proj = nn.LayerNorm(d), nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc1, self.fc2, self.head = nn.Linear(d, 2 * d), nn.Linear(2 * d, d), nn.Linear(d, classes)

    def forward(self, x):
        tokens = self.embed(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls.expand(x.shape[0], -1, -1), tokens], 1)
        q, k, v = self.qkv(self.norm(tokens)).chunk(3, dim=-1)
        tokens = tokens + self.proj(torch.softmax(q @ k.transpose(1, 2) / q.shape[-1] ** 0.5, -1) @ v)
        tokens = tokens + self.fc2(F.gelu(self.fc1(tokens)))
        return self.head(tokens[:, 0])


class ChannelsLast(nn.Module):
    """A ConvNeXt-like block on a [B,H,W,C] map: norm -> Linear -> GELU -> Linear, then pool and a head."""

    def __init__(self, d: int = 8, classes: int = 5):
        super().__init__()
        self.embed = nn.Conv2d(3, d, 4, stride=4)
        self.norm = nn.LayerNorm(d)
        self.fc1, self.fc2, self.head = nn.Linear(d, 2 * d), nn.Linear(2 * d, d), nn.Linear(d, classes)

    def forward(self, x):
        h = self.embed(x).permute(0, 2, 3, 1)
        h = self.fc2(F.gelu(self.fc1(self.norm(h))))
        return self.head(h.mean((1, 2)))


class PaddedConv(nn.Conv2d):
    """Pads by the input's size, as EfficientNet-Lite's 'SAME' convolutions: torch.fx cannot trace it."""

    def forward(self, x):
        if x.shape[-1] % 2:
            x = F.pad(x, (0, 1, 0, 1))
        return super().forward(x)


class UntraceableFront(ConvHead):
    def __init__(self):
        super().__init__(kernel=1)
        self.features[0] = PaddedConv(3, 8, 3, stride=2, padding=1)


def tokens_as_map(out):
    return out[:, 1:].transpose(1, 2).unflatten(2, (SIZE // 4, SIZE // 4))


def channels_last_as_map(out):
    return out.permute(0, 3, 1, 2)


CASES = {  # name: (network, target layer, its [B,C,h,w] view, the path the tail allows)
    "residual block output": (lambda: ResidualNet(), "block", None, "per-channel"),
    "residual conv2": (lambda: ResidualNet(), "block.conv2", None, "per-channel"),
    "residual bn2": (lambda: ResidualNet(), "block.bn2", None, "per-channel"),
    "residual bn1 (in-place ReLU next)": (lambda: ResidualNet(), "block.bn1", None, "rank-1"),
    "residual conv1": (lambda: ResidualNet(), "block.conv1", None, "rank-1"),
    "residual block input": (lambda: ResidualNet(), "stem", None, "rank-1"),
    "residual add_ statement": (lambda: ResidualNet(statement=True), "block.conv2", None, "split"),
    "bn relu pool linear": (lambda: ConvHead(kernel=None, act=nn.ReLU), "features", None, "per-channel"),
    "1x1 conv first": (lambda: ConvHead(kernel=1), "features", None, "rank-1"),
    "3x3 conv first": (lambda: ConvHead(kernel=3, act=nn.SiLU), "features", None, "rank-1"),
    "tokens": (lambda: TinyTokens(), "norm", tokens_as_map, "rank-1"),
    "channels last": (lambda: ChannelsLast(), "norm", channels_last_as_map, "rank-1"),
    "untraceable front": (lambda: UntraceableFront(), "features.1", None, "rank-1"),
    "planted gap": (lambda: PlantedNet("gap", size=SIZE), "features", None, "per-channel"),
    "planted gap conv": (lambda: PlantedNet("gap", size=SIZE), "features.0", None, "per-channel"),
    "planted fc": (lambda: PlantedNet("fc", size=SIZE), "features", None, "split"),
}


def build(case: str, seed: int = 0):
    torch.manual_seed(seed)
    make, name, as_map, path = CASES[case]
    model = randomised(make(), seed)
    x = planted_images(3, SIZE, seed=seed) if case.startswith("planted") else torch.randn(3, 3, SIZE, SIZE)
    return model, x, name, as_map, path


def ablate(model, x, targets, name, as_map, batch_size=2, shortcuts=True):
    layer = FeatureLayer(model.get_submodule(name), name, as_map)
    return ablation.ablate(model, x, targets, layer, batch_size, shortcuts=shortcuts)


def assert_maps_equal(ours, ref, tolerance=1e-5):
    assert ref.amax() > 0, "a blank reference cannot tell the paths apart"
    torch.testing.assert_close(ours, ref.float(), rtol=0, atol=tolerance * float(ref.abs().max()))


@pytest.mark.parametrize("case", CASES)
def test_every_path_gives_the_definitions_maps(case):
    """In float64, so that only a wrong ablation (not float32's rounding of y_c - y_c^k) can tell them apart."""
    model, x, name, as_map, path = build(case)
    model, x = model.double(), x.double()
    classes = 3 if case.startswith("planted") else 5
    targets = torch.tensor([[0, 1], [1, 2], [2, 0]]) % classes
    ref = slow_maps(model, x, targets, name, as_map or (lambda out: out))
    fast = ablate(model, x, targets, name, as_map)  # two images per chunk: the third is a chunk of its own
    assert fast.path == path
    assert_maps_equal(fast.maps, ref)
    split = ablate(model, x, targets, name, as_map, shortcuts=False)
    assert split.path == "split"
    assert_maps_equal(split.maps, ref)


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("case", ["residual bn1 (in-place ReLU next)", "3x3 conv first", "tokens", "channels last"])
def test_in_float32_the_paths_round_as_the_split_does(case, seed):
    """float32, as models run: y_c - y_c^k loses digits to rounding on every path alike (the split included),
    about 1e-5 of the map's range on these networks; an ablation gone wrong is off by far more."""
    model, x, name, as_map, _ = build(case, seed)
    targets = model(x).argsort(1, descending=True)[:, :2]
    ref = slow_maps(model, x, targets, name, as_map or (lambda out: out))
    assert_maps_equal(ablate(model, x, targets, name, as_map).maps, ref, tolerance=1e-4)
    assert_maps_equal(ablate(model, x, targets, name, as_map, shortcuts=False).maps, ref, tolerance=1e-4)


def test_the_probe_leaves_the_activations_as_the_layer_gave_them():
    """Cut at bn1, the tail starts with ReLU(inplace=True): the map must weigh A, not ReLU(A)."""
    model, x, name, as_map, _ = build("residual bn1 (in-place ReLU next)")
    with torch.no_grad():
        a = model.block.bn1(model.block.conv1(model.stem(x)))
    layer = FeatureLayer(model.block.bn1, name)
    tail = ablation.probe(ablation.split_at(model, layer.module), layer, x)
    assert tail.a.min() < 0
    torch.testing.assert_close(tail.a, a)


def test_a_dead_channel_gets_no_copy_and_weight_zero():
    model, x, name, _, _ = build("1x1 conv first")
    with torch.no_grad():  # channel 2 of the target is 0 everywhere (a ReLU after a negative bias)
        model.features.append(nn.ReLU())
        model.features[0].weight[2] = 0
        model.features[1].bias[2] = -5.0
    sizes = []
    handle = model.act.register_forward_hook(lambda _m, _i, out: sizes.append(len(out)))
    targets = torch.tensor([[0], [1], [2]])
    try:
        fast = ablate(model, x, targets, name, None, batch_size=64)
    finally:
        handle.remove()
    with torch.no_grad():
        a = model.features(x)
    live = int(a.flatten(2).ne(0).any(2).sum())
    assert live < 3 * 8 and a[:, 2].eq(0).all()
    assert fast.path == "rank-1" and sum(sizes) - len(x) == live  # the probe's pass, then one copy per live channel
    assert_maps_equal(fast.maps, slow_maps(model, x, targets, name))


def test_copies_run_in_chunks_bounded_by_batch_size():
    model, x, name, _, _ = build("1x1 conv first")
    sizes = []
    handle = model.act.register_forward_hook(lambda _m, _i, out: sizes.append(len(out)))
    try:
        ablate(model, x, torch.tensor([[0], [1], [2]]), name, None, batch_size=3)
    finally:
        handle.remove()
    per_copy = 16 * (SIZE // 2) ** 2  # the 1x1 convolution's output: the largest value a copy holds
    assert max(sizes[1:]) == 3 * x[0].numel() // per_copy == 2
