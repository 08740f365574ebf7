"""Ablation-CAM (Desai & Ramaswamy 2020): weight each channel by the drop in the target logit when it
is set to zero.

w_k = (y_c - y_c^k) / y_c with y_c the logit and y_c^k the logit with channel k of the target layer
zeroed; the map is ReLU(sum_k w_k A_k) at the layer's resolution. Only the part of the network after the
target layer runs for the K ablated copies:
- GAP+linear heads: closed form, y_c - y_c^k = w_ck * mean(A_k) (one forward pass, nothing traced);
- otherwise the model is split at the layer with torch.fx (traced once per call): the front (and any
  earlier values the tail needs, such as a residual input) runs once per image (twice for the first
  chunk, whose first pass found no closed form). If the tail acts channel by channel up to a final
  linear layer (a ResNet cut at its last conv), three tail passes give every y_c^k (see
  `_channelwise_drops`); otherwise the tail runs on the ablated copies, as many at a time as hold no
  more elements than `batch_size` inputs;
- models torch.fx cannot trace fall back to a forward hook that swaps in the ablated copies; the layers
  before the target then run once on one image per chunk of copies, and the tail must broadcast
  a batch-of-one value against the copies (most CNNs do).

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
    layer = as_feature_layer(layer)
    split, tried = None, False  # traced only for a head that is not GAP+linear
    maps = []
    with torch.no_grad():
        for xb, tb in zip(x.split(batch_size), targets.split(batch_size)):
            run = _split_forward(split, xb) if split is not None else None
            if run is None:
                with capture(layer, xb.shape[-2:]) as store:
                    logits = model(xb)
                run = store.output, [], logits
            output, saved, logits = run
            to_map = layer.view(output, xb.shape[-2:])
            fc = gap_linear_head(model, to_map(output), logits)
            if fc is None and not tried:  # no closed form: cut the model once, redo this chunk's front
                tried, split = True, split_at(model, layer.module)
                run = _split_forward(split, xb) if split is not None else None
                if run is None:
                    split = None
                else:
                    output, saved, logits = run
            activations = to_map(output).float()
            scores = logits.float().gather(1, tb)  # y_c, [b,T]
            if fc is not None:
                drops = fc.weight.float()[tb] * activations.mean((2, 3))[:, None, :]
            else:
                positions = layer.positions(to_map, output)
                drops = _channelwise_drops(split, output, saved, positions, tb) if split is not None else None
            if drops is None:
                # Ablated copies are layer-sized: as many per chunk as fit in batch_size inputs' memory.
                copies = batch_size * max(1, xb[0].numel() // output[0].numel())
                ablated = (_ablated_scores(split, output, saved, positions, tb, copies) if split is not None
                           else _hooked_ablated_scores(model, layer, xb, output, positions, tb, copies))
                drops = scores[..., None] - ablated
            weights = drops / scores[..., None]
            with torch.autocast(x.device.type, enabled=False):  # combine in float32 under amp
                maps.append(F.relu(torch.einsum("btk,bkhw->bthw", weights, activations)))
    return torch.cat(maps)


def _split_forward(split: Split, x: torch.Tensor):
    """(A, saved, logits) through the cut model, the tail in float32 (see `_ablated_scores`); None when the
    tail needs a value that is not per image (a shape, say), which the ablated copies could not share."""
    activations, *saved = split.front(x)
    if not all(isinstance(v, torch.Tensor) and v.shape[:1] == x.shape[:1] for v in saved):
        return None
    activations, saved = activations.float(), [v.float() if v.is_floating_point() else v for v in saved]
    with torch.autocast(x.device.type, enabled=False):
        logits = split.tail(activations, *saved)
    return activations, saved, logits


def _channelwise_drops(split: Split, output, saved, positions, targets) -> torch.Tensor | None:
    """y_c - y_c^k [B,T,K] from three tail passes, when the tail acts channel by channel up to a final
    linear layer over K features (a ResNet cut at its last conv: bn, residual add, ReLU, average pool).

    Zeroing channel k then changes only feature k, from f_k(A) to f_k(0), so y_c - y_c^k =
    w_ck (f_k(A) - f_k(0)). Checked on the batch at hand: zeroing a random half of the channels must
    give exactly the features that rule predicts; None (use the ablated copies) otherwise.
    """
    if split.head is None:
        return None
    k = positions.shape[0]
    half = (torch.rand(k, generator=torch.Generator().manual_seed(0)) < 0.5).to(output.device)
    with torch.autocast(output.device.type, enabled=False):
        full = split.features(output, *saved).float()
        if full.shape != (output.shape[0], k):
            return None
        zero = split.features(_zeroed(output, positions.flatten()), *saved).float()
        mixed = split.features(_zeroed(output, positions[half].flatten()), *saved).float()
    tolerance = 1e-5 * float(full.abs().amax().clamp_min(1.0))
    if not torch.allclose(mixed, torch.where(half, zero, full), rtol=1e-4, atol=tolerance):
        return None
    return split.head.weight.float()[targets] * (full - zero)[:, None, :]


def _zeroed(output: torch.Tensor, flat: torch.Tensor) -> torch.Tensor:
    """A copy of `output` with the elements at flat positions `flat` (of each image) set to 0."""
    copy = output.clone(memory_format=torch.contiguous_format)
    copy.view(len(copy), -1)[:, flat] = 0
    return copy


def _ablation_pairs(b: int, k: int, device) -> torch.Tensor:
    """Every (image, channel) pair as LongTensor[B*K, 2], image-major."""
    return torch.cartesian_prod(torch.arange(b, device=device), torch.arange(k, device=device)).view(b * k, 2)


def _ablate(output: torch.Tensor, image: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Copies of output[image] with the elements at `positions` [n, m] (a row per copy: one channel) set to 0."""
    copies = output[image].contiguous()  # indexing copied already
    copies.view(len(image), -1).scatter_(1, positions, 0.0)
    return copies


def _ablated_scores(split, output, saved, positions, targets, batch_size) -> torch.Tensor:
    """y_c^k for every image, target and channel, [B,T,K], running only the tail on the ablated copies.

    The tail runs in float32 even under amp: one channel's drop y_c - y_c^k is often below bf16's
    resolution of y_c, and the tail is a small part of the network.
    """
    b, k = output.shape[0], positions.shape[0]
    out = torch.empty(b, targets.shape[1], k, device=output.device)
    for chunk in _ablation_pairs(b, k, output.device).split(batch_size):
        image, channel = chunk.unbind(1)
        inputs = (_ablate(output, image, positions[channel]), *(value[image] for value in saved))
        with torch.autocast(output.device.type, enabled=False):
            if split.head is None:
                scores = split.tail(*inputs).float().gather(1, targets[image])
            else:  # only the target rows of the final linear layer
                rows, bias = split.head.weight[targets[image]], split.head.bias
                scores = torch.einsum("if,itf->it", split.features(*inputs).float(), rows.float())
                scores = scores if bias is None else scores + bias[targets[image]].float()
        out[image, :, channel] = scores
    return out


def _hooked_ablated_scores(model, layer: FeatureLayer, x, output, positions, targets, batch_size) -> torch.Tensor:
    """y_c^k as `_ablated_scores`, for models torch.fx cannot split: the layer's output is replaced by the
    ablated copies of one image while the model runs on that image alone."""
    b, k = output.shape[0], positions.shape[0]
    out = torch.empty(b, targets.shape[1], k, device=output.device)
    swap = {}
    handle = layer.module.register_forward_hook(lambda _m, _i, _o: swap["copies"])
    try:
        for chunk in _ablation_pairs(b, k, output.device).split(batch_size):
            for i in chunk[:, 0].unique().tolist():
                channel = chunk[chunk[:, 0] == i, 1]
                image = torch.full_like(channel, i)
                swap["copies"] = _ablate(output, image, positions[channel])
                logits = model(x[i : i + 1])
                if logits.shape[0] != len(channel):
                    raise ValueError(
                        f"ablationcam cannot split {type(model).__name__} at {layer.name}: torch.fx "
                        f"cannot trace it and its layers after the target do not broadcast a batch of ablated copies")
                out[image, :, channel] = logits.float().gather(1, targets[image])
    finally:
        handle.remove()
    return out


@dataclass(frozen=True)
class Split:
    """A model cut at a layer: `front(x) -> (A, *saved)`, `tail(A, *saved) -> logits`.

    `saved` are the values computed before the layer that the tail still needs (a residual input, say),
    each with the batch as its first dimension so they can be indexed per ablated copy. When the tail
    ends in a linear layer, `features` and `head` let the copies compute only the target logits (for a
    ResNet-50 at its last conv, the full 1000-way layer over 2048 copies costs two forward passes).
    """

    front: fx.GraphModule
    tail: fx.GraphModule
    features: fx.GraphModule | None = None  # the tail without a final linear layer, when it ends in one
    head: nn.Linear | None = None  # that layer: the copies then only need the target rows of its weight


class _LayerAsLeaf(fx.Tracer):
    """Traces through every module except the target layer, which stays one call (its output is A)."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer

    def is_leaf_module(self, m: nn.Module, qualified_name: str) -> bool:
        return m is self.layer or super().is_leaf_module(m, qualified_name)


def split_at(model: nn.Module, layer: nn.Module) -> Split | None:
    """Cut `model` at `layer` with torch.fx, or None when it cannot be traced or cut cleanly (the layer
    called more than once, the logits not depending on it)."""
    name = next(n for n, m in model.named_modules() if m is layer)
    try:
        graph = _LayerAsLeaf(layer).trace(model)
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

    front = fx.GraphModule(model, _subgraph(nodes, set(nodes) - after - {output}, [], (cut[0], *saved)))
    _drop_unused(front.graph)  # values only the tail used
    front.recompile()
    inputs = [cut[0], *saved]
    tail = fx.GraphModule(model, _subgraph(nodes, after - {output}, inputs, output.args[0]))
    last = output.args[0]
    if (isinstance(last, fx.Node) and last.op == "call_module" and len(last.users) == 1
            and isinstance(model.get_submodule(last.target), nn.Linear) and last.args[0] in after):
        features = fx.GraphModule(model, _subgraph(nodes, after - {output, last}, inputs, last.args[0]))
        return Split(front, tail, features, model.get_submodule(last.target))
    return Split(front, tail)


def _drop_unused(graph: fx.Graph) -> None:
    """Dead-code elimination that keeps in-place calls: `x.relu_()` written as a statement works by its
    side effect alone, and fx's own pass would drop it (its result is unused)."""
    for node in reversed(list(graph.nodes)):
        if node.op in ("call_function", "call_method", "get_attr") and not node.users and not _in_place(node):
            graph.erase_node(node)


def _in_place(node: fx.Node) -> bool:
    name = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", "")
    return (name.endswith("_") and not name.endswith("__")) or bool(node.kwargs.get("inplace"))


def _subgraph(nodes: list[fx.Node], keep: set[fx.Node], inputs: list[fx.Node], result) -> fx.Graph:
    """A graph taking `inputs` as placeholders, computing the `keep` nodes in order and returning `result`."""
    graph, env = fx.Graph(), {}
    for i, node in enumerate(inputs):
        env[node] = graph.placeholder(f"input_{i}")
    for node in nodes:
        if node in keep and node not in env:
            for a in node.all_input_nodes:
                if a.op == "get_attr" and a not in env:
                    env[a] = graph.node_copy(a, env.__getitem__)
            env[node] = graph.node_copy(node, env.__getitem__)
    graph.output(fx.map_arg(result, env.__getitem__))
    return graph
