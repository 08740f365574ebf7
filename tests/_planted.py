"""Planted-signal models for the explainer tests: the evidence for each class lives in a known box.

`PlantedNet` sees only high-frequency texture (zero-sum 3x3 filters + ReLU, average-pooled to a 16x16
grid), and each class's channels are gated to that class's box. So class 0's logit depends only on the
pixels in `boxes(size)[0]`, class 1's only on `boxes(size)[1]`; class 2 is a constant "background"
logit. A faithful explanation of class c must peak inside box c, whatever the image. Hiding a region —
zeroing it, multiplying it by a mask, or filling it with its mean colour (LIME) — removes its texture
and lowers that class's logit, which is what every perturbation method measures.

Two heads share the same features (`model.features`, the layer to explain):
- `head="gap"`: global average pooling + one linear layer (CAM-compatible; closed-form Ablation-CAM);
- `head="fc"`: VGG-style flatten + linear over the whole map (no GAP; spatially varying weights).
"""
from __future__ import annotations

import torch
from torch import nn

GRID = 16  # the feature map is GRID x GRID cells whatever the input size
NUM_CLASSES = 3  # classes 0 and 1 have planted boxes; class 2 is a constant background logit
CELL_BOXES = ((2, 2, 6, 6), (10, 9, 14, 13))  # (x0, y0, x1, y1) in feature cells, max exclusive
CLASS_LOGIT = 6.0  # class c's logit on a typical noise image (planted_images) with its box intact
BACKGROUND_LOGIT = 3.0


def boxes(size: int = 64) -> list[tuple[int, int, int, int]]:
    """The planted boxes in input pixels, (x_min, y_min, x_max, y_max) with max exclusive."""
    cell = size // GRID
    return [tuple(v * cell for v in box) for box in CELL_BOXES]


def planted_images(n: int = 2, size: int = 64, seed: int = 0) -> torch.Tensor:
    """Uniform noise images Tensor[n,3,size,size]: texture everywhere, so only the model decides what matters."""
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def in_box(maps: torch.Tensor, box: tuple[int, int, int, int]) -> torch.Tensor:
    """Whether each map's (first) maximum lies inside `box`: maps [..., H, W] -> BoolTensor[...]."""
    w = maps.shape[-1]
    flat = maps.flatten(-2).argmax(-1)
    y, x = flat // w, flat % w
    x0, y0, x1, y1 = box
    return (x >= x0) & (x < x1) & (y >= y0) & (y < y1)


class RegionGate(nn.Module):
    """Multiplies each channel by its class's box on the feature grid (channels of class c see only box c)."""

    def __init__(self, channels_per_class: int):
        super().__init__()
        gate = torch.zeros(len(CELL_BOXES) * channels_per_class, GRID, GRID)
        for c, (x0, y0, x1, y1) in enumerate(CELL_BOXES):
            gate[c * channels_per_class:(c + 1) * channels_per_class, y0:y1, x0:x1] = 1.0
        self.register_buffer("gate", gate)

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return a * self.gate


class PlantedNet(nn.Module):
    """Logits [B,3]; see the module docstring. `size` must be a multiple of 16; weights are fixed by `seed`."""

    def __init__(self, head: str = "gap", size: int = 64, channels_per_class: int = 4, seed: int = 0):
        super().__init__()
        if size % GRID:
            raise ValueError(f"size must be a multiple of {GRID}, got {size}")
        if head not in ("gap", "fc"):
            raise ValueError(f"head must be 'gap' or 'fc', got {head!r}")
        g = torch.Generator().manual_seed(seed)
        k = len(CELL_BOXES) * channels_per_class
        conv = nn.Conv2d(3, k, 3, padding=1, bias=False)
        weight = torch.randn(k, 3, 3, 3, generator=g)
        conv.weight.data = weight - weight.mean((1, 2, 3), keepdim=True)  # zero-sum: blind to flat colour
        self.features = nn.Sequential(conv, nn.ReLU(), nn.AvgPool2d(size // GRID), RegionGate(channels_per_class))
        # Per-class channel weights, scaled so class c's logit is CLASS_LOGIT on a typical noise image.
        with torch.no_grad():
            a = self.features(planted_images(8, size, seed=seed + 1))
        if head == "gap":
            pooled = a.mean((0, 2, 3))  # [K]
            linear = nn.Linear(k, NUM_CLASSES)
            weight = torch.zeros(NUM_CLASSES, k)
            for c in range(len(CELL_BOXES)):
                ch = slice(c * channels_per_class, (c + 1) * channels_per_class)
                weight[c, ch] = CLASS_LOGIT / (channels_per_class * pooled[ch])
            self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), linear)
        else:
            mean_map = a.mean(0).flatten()  # [K*GRID*GRID]
            linear = nn.Linear(k * GRID * GRID, NUM_CLASSES)
            spatial = 0.5 + torch.rand(k * GRID * GRID, generator=g)  # positive, varies with position
            owner = torch.arange(k).repeat_interleave(GRID * GRID) // channels_per_class
            weight = torch.zeros(NUM_CLASSES, k * GRID * GRID)
            for c in range(len(CELL_BOXES)):
                w = spatial * (owner == c)
                weight[c] = w * CLASS_LOGIT / (w * mean_map).sum()
            self.head = nn.Sequential(nn.Flatten(), linear)
        linear.weight.data = weight
        linear.bias.data = torch.tensor([0.0, 0.0, BACKGROUND_LOGIT])
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class PlantedBlock(nn.Module):
    """A transformer block whose attention only lets each token see itself: x + attn(norm1(x)).

    Tokens come as feature pairs (a, -a), so each token's mean is 0 and norm1 (a LayerNorm) only divides it
    by its norm: a feature that is 0 before norm1 stays 0 after it, and the class groups stay apart.
    """

    def __init__(self, dim: int, tokens: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, 1, bias=False, batch_first=True)
        with torch.no_grad():  # values and output projection are the identity; queries and keys do not matter
            self.attn.in_proj_weight[2 * dim:] = torch.eye(dim)
            self.attn.out_proj.weight.copy_(torch.eye(dim))
        self.register_buffer("mask", torch.full((tokens, tokens), float("-inf")).fill_diagonal_(0.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        return x + self.attn(h, h, h, attn_mask=self.mask, need_weights=False)[0]


class PlantedViT(nn.Module):
    """PlantedNet as a vision transformer: a class token, GRID x GRID patch tokens, one block, and a head
    on the mean patch token (logits [B,3]; class c's logit depends only on the patch tokens in box c).

    Patch embedding: zero-sum filters (blind to flat colour), absolute value (texture energy), gated so
    that class c's features are non-zero only on the patches of box c, then paired as (a, -a); the head
    reads the features a only (were it to read both, zeroing either twin would lower the logit alike, and
    Ablation-CAM's sum w_k A_k would cancel each pair). Tokens are
    [B, 1 + GRID*GRID, D]: one prefix token, then the patches row by row, as in ViT.
    """

    def __init__(self, size: int = 64, channels_per_class: int = 4, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        k = len(CELL_BOXES) * channels_per_class
        patch = size // GRID
        self.patch_embed = nn.Conv2d(3, k, patch, stride=patch, bias=False)
        weight = torch.randn(k, 3, patch, patch, generator=g)
        self.patch_embed.weight.data = weight - weight.mean((1, 2, 3), keepdim=True)
        self.gate = RegionGate(channels_per_class)  # [k, GRID, GRID]
        self.cls_token = nn.Parameter(torch.zeros(1, 1, 2 * k))
        self.blocks = nn.Sequential(PlantedBlock(2 * k, 1 + GRID * GRID))
        self.head = nn.Linear(2 * k, NUM_CLASSES)
        with torch.no_grad():
            pooled = self.blocks(self.tokens(planted_images(8, size, seed=seed + 1)))[:, 1:].mean((0, 1))
        weight = torch.zeros(NUM_CLASSES, 2 * k)  # only the features a count; their twins -a only centre the tokens
        for c in range(len(CELL_BOXES)):
            ch = slice(c * channels_per_class, (c + 1) * channels_per_class)
            weight[c, ch] = CLASS_LOGIT / (channels_per_class * pooled[ch])
        self.head.weight.data = weight
        self.head.bias.data = torch.tensor([0.0, 0.0, BACKGROUND_LOGIT])
        self.eval()

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        a = self.gate(self.patch_embed(x).abs()).flatten(2).transpose(1, 2)  # [B, GRID*GRID, k]
        patches = torch.cat([a, -a], 2)
        return torch.cat([self.cls_token.expand(x.shape[0], -1, -1), patches], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.tokens(x))[:, 1:].mean(1))
