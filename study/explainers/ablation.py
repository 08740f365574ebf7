"""Ablation-CAM (Desai & Ramaswamy 2020): weight each channel by the drop in the target logit when it
is set to zero.

w_k = (y_c - y_c^k) / y_c with y_c the logit and y_c^k the logit with channel k of the target layer
zeroed; the map is ReLU(sum_k w_k A_k) at the layer's resolution. Only the part of the network after the
target layer (the tail) is ever re-run, and only as much of it as one ablated channel needs. The model is
split at the layer with torch.fx (traced once per call); the front runs once per image, and
`ablation_tail.Tail` reads off the tail's graph what zeroing one channel does (`path` of `ablate`):
- "per-channel": the tail keeps channel k apart up to a final linear layer (batch norm, activations,
  residual additions, pooling, dropout: a ResNet or EfficientNet cut in its last block or at its head,
  any GAP + linear head), so y_c - y_c^k = W[c, k] (f_k(A) - f_k(0)) for every k from two passes of
  those layers;
- "rank-1": at the first channel-mixing layer (a convolution or linear layer) the ablation is a rank-1
  change of its output; only the layers after it run on the K ablated copies, batched;
- "split": otherwise the whole tail runs on the ablated copies (one pass per channel, batched): the
  definition itself, and what the other paths are tested against.
Models torch.fx cannot trace (or whose tail needs a value that is not per image) get a forward pass with
the layer's output captured: a GAP+linear head is then checked numerically and solved in closed form,
y_c - y_c^k = w_ck * mean(A_k) ("closed form"); otherwise a forward hook swaps in the ablated copies
("hooks"): the layers before the target then run once on one image per chunk of copies, and the tail
must broadcast a batch-of-one value against the copies (most CNNs do). Channels that are zero everywhere
are never copied (their drop is exactly 0), and copies run as many at a time as hold no more elements
than `batch_size` inputs.

Differences from pytorch-grad-cam's AblationCAM: it reruns the whole model (layers before the target
included) for every chunk of 32 copies; when the layer's activations can be negative it ablates to
min(A) - 1e7 instead of zero (we always use zero, as the paper); it takes the ReLU at the layer's
resolution, min-max scales, then resizes with OpenCV (we upsample bilinearly, then scale).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from study.explainers.ablation_tail import Tail, active_pairs, in_place, subgraph
from study.explainers.core import capture, gap_linear_head, register
from study.explainers.reshape import FeatureLayer, as_feature_layer


@register("ablationcam", needs_layer=True, per_image_batches=False)
def ablationcam(model, x, targets, *, layer, batch_size, seed=None) -> torch.Tensor:
    return ablation_maps(model, x, targets, layer, batch_size)


def ablation_maps(model: nn.Module, x: torch.Tensor, targets: torch.Tensor, layer: FeatureLayer,
                  batch_size: int) -> torch.Tensor:
    """Raw Ablation-CAM maps Tensor[B,T,h,w] (h,w the layer's) for targets LongTensor[B,T].

    Channel k is ablated in the layer's own output: for a transformer layer, feature k of every patch token
    (the prefix tokens are kept; see reshape.py). Also the building block of guided Ablation-CAM.
    """
    return ablate(model, x, targets, layer, batch_size).maps


@dataclass(frozen=True)
class Ablation:
    """Raw maps Tensor[B,T,h,w] and how the drops y_c - y_c^k were computed (the module docstring's paths)."""

    maps: torch.Tensor
    path: str


def ablate(model: nn.Module, x: torch.Tensor, targets: torch.Tensor, layer: FeatureLayer, batch_size: int,
           *, shortcuts: bool = True) -> Ablation:
    """`ablation_maps` and the path it took; `shortcuts=False` runs every ablated copy through the whole
    tail ("split"), the paper's definition on the cut model (for tests and the benchmark)."""
    layer = as_feature_layer(layer)
    split = split_at(model, layer.module)
    maps, paths = [], []
    with torch.no_grad():
        for xb, tb in zip(x.split(batch_size), targets.split(batch_size)):
            tail = probe(split, layer, xb) if split is not None else None
            if tail is None:
                split = None  # untraceable, or a tail needing values that are not per image: every chunk
                activations, scores, drops, path = _captured_drops(model, layer, xb, tb, batch_size)
            else:
                budget = batch_size * xb[0].numel()  # elements a chunk of ablated copies may hold
                drops = _channelwise_drops(tail, tb, budget) if shortcuts else None
                path = tail.path if drops is not None else "split"
                if drops is None:
                    drops = tail.drops(tb, budget, shortcuts=False)
                activations = layer.view(tail.a, xb.shape[-2:])(tail.a)
                scores = tail.logits.gather(1, tb)
            weights = (drops / scores[..., None]).float()
            with torch.autocast(x.device.type, enabled=False):  # combine in float32 under amp
                maps.append(F.relu(torch.einsum("btk,bkhw->bthw", weights, activations.float())))
            paths.append(path)
    return Ablation(torch.cat(maps), "+".join(dict.fromkeys(paths)))


def probe(split: Split, layer: FeatureLayer, x: torch.Tensor) -> Tail | None:
    """The tail run on the front's output for `x` (see ablation_tail.Tail); None when it needs a value that
    is not per image (a shape, say), which the ablated copies could not share."""
    a, *saved = split.front(x)
    if not all(isinstance(v, torch.Tensor) and v.shape[:1] == x.shape[:1] for v in saved):
        return None
    return Tail(split.tail, a, saved, layer.positions(layer.view(a, x.shape[-2:]), a))


def _channelwise_drops(tail: Tail, targets: torch.Tensor, budget: int) -> torch.Tensor | None:
    """y_c - y_c^k [B,T,K] by the per-channel or the rank-1 path (see ablation_tail.py), None when the tail
    allows neither and every ablated copy must run through all of it (the split)."""
    return tail.drops(targets, budget) if tail.path != "split" else None


def _captured_drops(model, layer: FeatureLayer, x, targets, batch_size):
    """(A as [b,K,h,w], y_c [b,T], y_c - y_c^k [b,T,K], path) without a split: one forward pass with the layer
    captured, then the closed form of a GAP+linear head or the hooked copies."""
    with capture(layer, x.shape[-2:]) as store:
        logits = model(x)
    output = store.output
    to_map = layer.view(output, x.shape[-2:])
    activations, scores = to_map(output).float(), logits.float().gather(1, targets)
    fc = gap_linear_head(model, activations, logits)
    if fc is not None:
        return activations, scores, fc.weight.float()[targets] * activations.mean((2, 3))[:, None, :], "closed form"
    # Ablated copies are layer-sized: as many per chunk as fit in batch_size inputs' memory.
    copies = batch_size * max(1, x[0].numel() // output[0].numel())
    drops = _hooked_drops(model, layer, x, output, layer.positions(to_map, output), scores, targets, copies)
    return activations, scores, drops, "hooks"


def _hooked_drops(model, layer: FeatureLayer, x, output, positions, scores, targets, batch_size) -> torch.Tensor:
    """y_c - y_c^k [B,T,K] for models torch.fx cannot split: the layer's output is replaced by the ablated
    copies of one image while the model runs on that image alone."""
    drops = scores.new_zeros(*scores.shape, positions.shape[0])
    swap = {}
    handle = layer.module.register_forward_hook(lambda _m, _i, _o: swap["copies"])
    try:
        for chunk in active_pairs(output, positions).split(batch_size):
            for i in chunk[:, 0].unique().tolist():
                channel = chunk[chunk[:, 0] == i, 1]
                image = torch.full_like(channel, i)
                swap["copies"] = _ablate(output, image, positions[channel])
                logits = model(x[i : i + 1])
                if logits.shape[0] != len(channel):
                    raise ValueError(
                        f"ablationcam cannot split {type(model).__name__} at {layer.name}: torch.fx "
                        f"cannot trace it and its layers after the target do not broadcast a batch of ablated copies")
                drops[image, :, channel] = scores[image] - logits.float().gather(1, targets[image])
    finally:
        handle.remove()
    return drops


def _ablate(output: torch.Tensor, image: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Copies of output[image] with the elements at `positions` [n, m] (a row per copy: one channel) set to 0."""
    copies = output[image].contiguous()  # indexing copied already
    copies.view(len(image), -1).scatter_(1, positions, 0.0)
    return copies


@dataclass(frozen=True)
class Split:
    """A model cut at a layer: `front(x) -> (A, *saved)`, `tail(A, *saved) -> logits`.

    `saved` are the values computed before the layer that the tail still needs (a residual input, say),
    each with the batch as its first dimension so they can be indexed per ablated copy.
    """

    front: fx.GraphModule
    tail: fx.GraphModule


class _LayerAsLeaf(fx.Tracer):
    """Traces through every module except the target layer, which stays one call (its output is A). With
    `opaque`, the modules that do not contain the layer stay calls too, but for torch's containers."""

    def __init__(self, layer: nn.Module, name: str, opaque: bool):
        super().__init__()
        self.layer, self.name, self.opaque = layer, name, opaque

    def is_leaf_module(self, m: nn.Module, qualified_name: str) -> bool:
        contains = self.name.startswith(qualified_name + ".")
        return (m is self.layer or super().is_leaf_module(m, qualified_name)
                or (self.opaque and not contains and not isinstance(m, nn.Sequential)))


def split_at(model: nn.Module, layer: nn.Module) -> Split | None:
    """Cut `model` at `layer` with torch.fx, or None when it cannot be traced or cut cleanly (the layer
    called more than once, the logits not depending on it).

    The modules that do not contain the layer are kept whole first: cheaper to trace, and fx need not read
    code it cannot trace (EfficientNet-Lite's convolutions pad by the input's size). When the tail then holds
    whole modules of other libraries than torch (a ResNet block after the cut), whose insides the tail's
    analysis should see, the model is traced again into every module; the first cut stays if that fails.
    """
    name = next(n for n, m in model.named_modules() if m is layer)
    split = _cut(model, layer, name, opaque=True)
    if split is not None and any(n.op == "call_module" and not type(split.tail.get_submodule(n.target))
                                 .__module__.startswith("torch.") for n in split.tail.graph.nodes):
        split = _cut(model, layer, name, opaque=False) or split
    return split


def _cut(model: nn.Module, layer: nn.Module, name: str, opaque: bool) -> Split | None:
    try:
        graph = _LayerAsLeaf(layer, name, opaque).trace(model)
    except Exception:  # fx raises many types on untraceable code (control flow, unsupported ops)
        return None
    nodes = list(graph.nodes)
    cut = [n for n in nodes if n.op == "call_module" and n.target == name]
    if len(cut) != 1:
        return None
    after = set()  # every node that depends on the layer's output
    for node in nodes[nodes.index(cut[0]) + 1:]:
        if any(a is cut[0] or a in after for a in node.all_input_nodes):
            after.add(node)
    output = nodes[-1]
    if output not in after:
        return None
    saved = list(dict.fromkeys(a for n in nodes if n in after for a in n.all_input_nodes
                               if a is not cut[0] and a not in after and a.op != "get_attr"))

    front = fx.GraphModule(model, subgraph(nodes, set(nodes) - after - {output}, [], (cut[0], *saved)))
    _drop_unused(front.graph)  # values only the tail used
    front.recompile()
    tail = fx.GraphModule(model, subgraph(nodes, after - {output}, [cut[0], *saved], output.args[0]))
    return Split(front, tail)


def _drop_unused(graph: fx.Graph) -> None:
    """Dead-code elimination that keeps in-place calls: `x.relu_()` written as a statement works by its
    side effect alone, and fx's own pass would drop it (its result is unused)."""
    for node in reversed(list(graph.nodes)):
        if node.op in ("call_function", "call_method", "get_attr") and not node.users and not in_place(node):
            graph.erase_node(node)
