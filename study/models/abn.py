"""The Attention Branch Network (Fukui et al., *Attention Branch Network*, CVPR 2019, arXiv 1812.10025).

A feature extractor gives g [B,C,h,w]. The attention branch, after its own resolution-keeping
convolutions, makes K class maps and from them one attention map M; the perception branch classifies
the attended features. In the paper's notation (eqs. 1-2; eq. 3 is the training loss, see
`study.models.training.train_abn`):

    class maps  = ReLU(BN(conv1x1_K(branch(g))))               [B,K,h,w]
    attention logits = GAP(class maps)                          [B,K]
    M(x)        = sigmoid(BN(conv1x1_1(class maps)))            [B,1,h,w]
    g'(x)       = (1 + M(x)) * g(x)                             (the residual attention of eq. 2)
    logits      = perception(g'(x))                             [B,K]

The authors' released code puts a KxK convolution before the pooling and a 3x3 one for M; we keep the
paper's form: pooling directly on the class maps and a 1x1 convolution for M.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from study.models.files import read_weights

BACKBONES = ("resnet18", "resnet50", "efficientnet_lite0", "tiny")
LITE0_SPLIT = 11  # EfficientNet-Lite0 blocks 0-10 are stages 1-5 (stride 16); block 11 starts the last downsampling


class ResidualBlock(nn.Module):
    """The default attention branch: a pointwise residual block keeping shape,

        branch(g) = ReLU(g + BN(conv1x1(ReLU(BN(conv1x1(g))))))

    Pointwise on purpose. A branch of k x k convolutions lets each class-map cell see the evidence of a margin
    around it ((k - 1) / 2 cells per convolution: 2 cells for two 3x3 ones). Trained through GAP alone, the class
    maps have no reason to prefer an object's own cells to that margin, so they come out as a plateau over the
    object dilated by it, and M's peak lands anywhere on the plateau: beside a small object as often as on it
    (docs/METHODS.md gives the planted-square measurements; a plain branch of two 3x3 convolutions, without
    the identity, fails the same way, so the identity is not the cause). With 1x1 convolutions a class-map
    cell sees only its own cell's features, and M is as sharp as the extractor's features; the identity keeps
    the block residual, as the paper's branch (ResNet blocks) is.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(),
            nn.Conv2d(channels, channels, 1, bias=False), nn.BatchNorm2d(channels),
        )
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + x)


class AttentionBranchNetwork(nn.Module):
    """extractor -> (attention branch, perception branch); see the module docstring for the equations.

    `extractor` maps images to g [B,channels,h,w]; `perception` maps (1 + M) * g to logits [B,num_classes].
    `branch` is the attention branch's own convolutions before the class maps (default: one pointwise
    `ResidualBlock` at `channels` channels, keeping resolution); `branch_channels` is its output width
    (default `channels`).
    `backbone` names the `from_backbone` recipe, so a checkpoint can be rebuilt (None for custom parts).
    """

    def __init__(self, extractor: nn.Module, perception: nn.Module, channels: int, num_classes: int, *,
                 branch: nn.Module | None = None, branch_channels: int | None = None,
                 backbone: str | None = None):
        super().__init__()
        if channels < 1 or num_classes < 2:
            raise ValueError(f"an ABN needs channels >= 1 and num_classes >= 2, got {channels} and {num_classes}")
        if (branch is None) != (branch_channels is None):
            raise ValueError("pass branch and branch_channels together (the branch's output width)")
        width = channels if branch_channels is None else branch_channels
        self.num_classes = num_classes
        self.backbone = backbone
        self.extractor = extractor
        self.branch = ResidualBlock(channels) if branch is None else branch
        self.class_maps = nn.Sequential(nn.Conv2d(width, num_classes, 1, bias=False),
                                        nn.BatchNorm2d(num_classes), nn.ReLU())
        self.attention_map = nn.Sequential(nn.Conv2d(num_classes, 1, 1, bias=False), nn.BatchNorm2d(1), nn.Sigmoid())
        # The paper does not say how this 1x1 convolution starts. With random signs, M can start (and, when the
        # perception branch has no need to change it, stay) low where a class's evidence is; starting from the
        # mean of the class maps makes attention begin where any class evidence is, and training moves it on.
        nn.init.constant_(self.attention_map[0].weight, 1.0 / num_classes)
        if branch is None:
            # Nor how the class maps' 1x1 convolution starts. On the default branch we draw it as PyTorch does
            # (Kaiming-uniform) and drop the signs. With random signs a class map can start closed (below its
            # batch mean, so zero after the ReLU) on its own class's evidence, where no gradient reaches it;
            # GAP + CE is then met by a map lit on the background of every image and outvoted by the other
            # classes' maps where they have evidence: the class is recognised by absence, and M is dimmest on
            # its object. The default branch's features are non-negative (it ends in a ReLU) and pointwise, so
            # with non-negative weights every class map starts open where its cell's features are strongest, on
            # what stands out from the background, and training sorts the classes from there. A branch of one's
            # own (the backbones' blocks among them) keeps PyTorch's draw: its output need not be non-negative,
            # and on resnet18 the non-negative start did not localise better (docs/METHODS.md).
            with torch.no_grad():
                self.class_maps[0].weight.abs_()
        self.perception = perception  # registered last: its final nn.Linear is the model's last one

    def forward_all(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(attention logits [B,K], perception logits [B,K], M [B,1,h,w]) from one pass, for training."""
        g = self.extractor(x)
        maps = self.class_maps(self.branch(g))
        m = self.attention_map(maps)
        return maps.mean((2, 3)), self.perception((1 + m) * g), m

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_all(x)[1]

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """The attention map M as Tensor[B,h,w] in [0,1] at the feature map's resolution (class-agnostic)."""
        g = self.extractor(x)
        return self.attention_map(self.class_maps(self.branch(g)))[:, 0]

    @classmethod
    def from_backbone(cls, name: str, num_classes: int, weights: str | Path | None = None) -> AttentionBranchNetwork:
        """An ABN cut out of a known backbone, optionally from the backbone's pretrained state dict (a local file).

        - `resnet18`, `resnet50` (torchvision): extractor = stem + layer1..layer3 (the paper's split, stride 16);
          attention branch = one block of layer4's kind and width at stride 1; perception = layer4 + global
          average pooling + a new fc.
        - `efficientnet_lite0` (`study.models.efficientnet_lite`): the analogous split before the last
          downsampling stage, also stride 16: extractor = stem + blocks 0-10 (stages 1-5, 112 channels);
          attention branch = one MBConv of stage 6's kind and width (112 -> 192, kernel 5) at stride 1;
          perception = blocks 11-15 (stages 6-7) + the 1x1 head + pooling + dropout + a new fc.
        - `tiny`: three small conv layers for CPU tests and the 8x8 digits (stride 2 extractor, 32 channels);
          attention branch = the default pointwise `ResidualBlock`.

        The ResNet and EfficientNet branches keep the paper's kind of block (3x3 / 5x5 convolutions) although
        that dilates the class maps (see `ResidualBlock`): at stride 16 the extractor's own receptive field spans
        the image, and a pointwise block did not localise better there (resnet18, 8x8 attention on 128-px planted
        squares, 3 seeds: M's peak on the square in 41-87% of images with the paper's block, 62-74% pointwise).

        `weights` is the whole backbone's state dict (torchvision's file, or the efficientnet-lite0 package's
        file); its classifier is dropped, since the ABN's classes are new. Never downloads.
        """
        if name not in BACKBONES:
            raise ValueError(f"unknown ABN backbone {name!r}; choose from {', '.join(BACKBONES)}")
        if name == "tiny" and weights is not None:
            raise ValueError("the tiny backbone has no pretrained weights; pass weights=None")
        build = {"resnet18": _resnet, "resnet50": _resnet, "efficientnet_lite0": _lite0, "tiny": _tiny}[name]
        parts = build(name, num_classes, weights)
        return cls(*parts, num_classes, backbone=name, **_branch(name, parts[2]))


def _load_backbone_weights(net: nn.Module, weights: str | Path | None, head: str) -> None:
    """Load a backbone state dict without its classifier `head` (the ABN's fc is new)."""
    if weights is None:
        return
    path = Path(weights)
    state = {k: v for k, v in read_weights(path, "backbone weights").items() if not k.startswith(head + ".")}
    try:
        missing, unexpected = net.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shapes that do not match
        detail = str(err).strip().splitlines()[-1].strip()
        raise ValueError(f"{path} does not fit {type(net).__name__}: {detail}") from err
    missing = [k for k in missing if not k.startswith(head + ".")]
    if missing or unexpected:
        raise ValueError(f"{path} does not fit {type(net).__name__}: "
                         f"missing {missing[:3]}, unexpected {unexpected[:3]}")


def _resnet(name: str, num_classes: int, weights) -> tuple[nn.Module, nn.Module, int]:
    import torchvision

    net = torchvision.models.get_model(name, weights=None)
    _load_backbone_weights(net, weights, "fc")
    extractor = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3)
    perception = nn.Sequential(net.layer4, nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                               nn.Linear(net.fc.in_features, num_classes))
    return extractor, perception, net.layer4[0].conv1.in_channels


def _lite0(name: str, num_classes: int, weights) -> tuple[nn.Module, nn.Module, int]:
    from study.models.efficientnet_lite import EfficientNetLite0

    net = EfficientNetLite0()
    _load_backbone_weights(net, weights, "_fc")
    extractor = nn.Sequential(net._conv_stem, net._bn0, net._stem_act, *net._blocks[:LITE0_SPLIT])
    perception = nn.Sequential(*net._blocks[LITE0_SPLIT:], net._conv_head, net._bn1, net._head_act, net._avg_pooling,
                               nn.Flatten(), net._dropout, nn.Linear(net._fc.in_features, num_classes))
    return extractor, perception, net._blocks[LITE0_SPLIT]._expand_conv.in_channels


def _tiny(name: str, num_classes: int, weights) -> tuple[nn.Module, nn.Module, int]:
    extractor = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
    )
    perception = nn.Sequential(
        nn.Conv2d(32, 64, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, num_classes),
    )
    return extractor, perception, 32


def _branch(name: str, channels: int) -> dict:
    """The attention branch's own convolutions for a backbone: one block of its last stage's kind, stride 1."""
    if name.startswith("resnet"):
        from torchvision.models.resnet import BasicBlock, Bottleneck

        block = BasicBlock if name == "resnet18" else Bottleneck
        width = 512 * block.expansion
        downsample = nn.Sequential(nn.Conv2d(channels, width, 1, bias=False), nn.BatchNorm2d(width))
        return {"branch": block(channels, 512, stride=1, downsample=downsample), "branch_channels": width}
    if name == "efficientnet_lite0":
        from study.models.efficientnet_lite import MBConv

        return {"branch": MBConv(channels, 192, 5, 1, 6), "branch_channels": 192}
    return {}


CHECKPOINT_FORMAT = "camstudy-abn-1"
META_KEYS = ("backbone", "num_classes", "categories", "input_size", "mean", "std")


def read_checkpoint(path: str | Path) -> dict:
    """A checkpoint written by `study.models.training.train_abn`, read with `weights_only=True`.

    It is a dict: `format`, `model` (state dict), `optimizer` (state dict), `epoch` (epochs done), `seed`,
    and `meta` (backbone, num_classes, categories, input_size, mean, std: what `load_model("abn")` needs).
    """
    checkpoint = read_weights(path, "ABN checkpoint")
    if checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not an ABN checkpoint written by camstudy train-abn / train_abn")
    return checkpoint


def load_trained(net: AttentionBranchNetwork, checkpoint: dict, path: str | Path) -> None:
    """Load a checkpoint's model state into `net`, or say why it does not fit (a ValueError naming the first
    mismatch). The likely reason: the default attention branch (`ResidualBlock`, used by `tiny` and by custom
    ABNs without their own branch) had 3x3 convolutions before it became pointwise; those ABNs need retraining."""
    try:
        net.load_state_dict(checkpoint["model"])
    except RuntimeError as err:
        detail = next((line.strip() for line in str(err).splitlines()[1:] if line.strip()), str(err).strip())
        raise ValueError(f"{path} does not fit this ABN ({detail}); an ABN on the default attention branch trained "
                         "before that branch became pointwise (1x1 convolutions, see docs/METHODS.md) must be "
                         "retrained (camstudy train-abn)") from err


def load_abn(weights: str | Path | None):
    """`load_model("abn", weights=CHECKPOINT)`: the trained ABN as a camstudy `Classifier`."""
    from study.models.layers import last_spatial_layer
    from study.models.classifier import Classifier

    if weights is None:
        raise ValueError("load_model('abn') needs weights=CHECKPOINT (written by camstudy train-abn)")
    checkpoint = read_checkpoint(weights)
    meta = checkpoint.get("meta") or {}
    lacking = [k for k in META_KEYS if meta.get(k) is None]
    if lacking:
        raise ValueError(f"{weights} lacks {', '.join(lacking)}: only ABNs built with from_backbone and trained "
                         f"with meta (as camstudy train-abn does) can be loaded by name")
    net = AttentionBranchNetwork.from_backbone(meta["backbone"], meta["num_classes"])
    load_trained(net, checkpoint, weights)
    net.eval()
    probe = torch.zeros(1, 3, *meta["input_size"])
    return Classifier(net, name="abn", categories=meta["categories"],
                      target_layer="network." + last_spatial_layer(net, probe),
                      mean=meta["mean"], std=meta["std"], input_size=tuple(meta["input_size"]))
