"""What the layers after Ablation-CAM's target layer do to one ablated channel, read off their torch.fx graph.

Ablation-CAM needs, for every channel k of the target layer's output A, the logit y_c^k of the model
with channel k set to 0: w_k = (y_c - y_c^k) / y_c, map = ReLU(sum_k w_k A_k). Run as defined, that is
one pass of the tail (the graph after the cut, `ablation.split_at`) per channel. `Tail` runs the tail
once on A, node by node, and sorts every node by what zeroing one channel of A does to it:

- per-channel nodes: channel k of the node depends on channel k of A alone. Element-wise operations keep
  every element where it is: batch norm in eval, activations (ReLU, ReLU6, SiLU, GELU, hardswish, ...),
  dropout in eval, identity, dtype casts, flattening, and arithmetic with values that do not depend on
  A (a residual input) or with per-channel values of the same layout (x * sigmoid(x)). Pooling,
  depthwise convolutions and means over the spatial dimensions of a [B,C,H,W] value keep channel k in
  channel k. Zeroing channel k of A changes only channel k's elements of such a node, to what they are
  when every channel of A is zero, so one more pass of these nodes, on A with all channels at 0, gives
  them for every k at once (`where` says which elements are channel k's);
- rank-1 nodes: a channel-mixing linear layer (nn.Linear over the channel dimension, nn.Conv2d over
  dimension 1) reading a per-channel value u. Ablating channel k changes u by delta_k, zero outside
  channel k, and the layer's output by exactly layer(delta_k) without bias: the outer product of delta_k
  with column k of the weight for a Linear (and a 1x1 convolution), conv(delta_k, W[:, k]) for a KxK
  convolution (the copies of a chunk as one grouped convolution). A batch norm right after the
  convolution is affine per output channel and folds into its weight;
- the suffix, everything else, runs on the ablated copies, batched: it reads the rank-1 nodes' copies,
  the per-channel nodes' ablated copies and, per image, the values that do not depend on A.

The paths (`Tail.path`):
- "per-channel": the logits are a final nn.Linear over per-channel features (a GAP + linear head, with
  any per-channel layers before it): y_c - y_c^k = W[c, k] (f_k(A) - f_k(0)) for all k at once, no copies;
- "rank-1": some rank-1 node feeds the suffix, which runs on the copies;
- "split": neither; the whole tail runs on ablated copies of A, as the definition does (one pass per
  channel, batched). Also what runs when the tail changes a value in place that something else still
  reads (the probe could not keep the values it saw apart); the split replays the graph as the model does.

A channel that is zero everywhere needs no copy: ablating it changes nothing, its drop is exactly 0.
Copies run `budget` elements at a time (their largest value per copy times the chunk's copies), so
memory does not grow with the number of channels or images.
"""
from __future__ import annotations

import functools
import math
import operator
from dataclasses import dataclass

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

PER_CHANNEL, RANK1, CONST, SUFFIX = "per-channel", "rank-1", "const", "suffix"

# Element-wise: each output element is a function of the same element of the inputs.
_ELEMENTWISE_MODULES = {nn.Identity, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU,
                        nn.GELU, nn.SiLU, nn.Mish, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Sigmoid,
                        nn.Tanh, nn.Softplus}
_DROPOUT_MODULES = {nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout}
_NORM_MODULES = {nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d}
_ELEMENTWISE_FUNCTIONS = {torch.relu, torch.relu_, F.relu, F.relu_, F.relu6, F.leaky_relu, F.elu, F.selu,
                          F.gelu, F.silu, F.mish, F.hardswish, F.hardsigmoid, F.hardtanh, F.softplus,
                          torch.sigmoid, F.sigmoid, torch.tanh, F.tanh, torch.clamp, torch.clip, torch.neg,
                          torch.add, torch.sub, torch.mul, torch.div, operator.add, operator.sub,
                          operator.mul, operator.truediv, operator.neg}
_DROPOUT_FUNCTIONS = {F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout}
_ELEMENTWISE_METHODS = {"relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "clamp", "clamp_", "clip",
                        "clip_", "clamp_min", "clamp_min_", "clamp_max", "clamp_max_", "neg", "add", "add_",
                        "sub", "sub_", "mul", "mul_", "div", "div_", "float", "contiguous"}
# Flattening (never across the batch) keeps every element's place in the flat order of one image.
_FLATTEN = {nn.Flatten, torch.flatten, "flatten"}
# Within-channel operations on [B,C,H,W]: channel k of the output reads channel k of the input only.
_POOL = {nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.AvgPool2d, nn.MaxPool2d, F.adaptive_avg_pool2d,
         F.adaptive_max_pool2d, F.avg_pool2d, F.max_pool2d}
_REDUCE = {torch.mean, torch.amax, torch.sum, "mean", "amax", "sum"}  # over spatial dimensions only


@dataclass(frozen=True)
class Suffix:
    """What runs on the ablated copies: `module` takes the values of the `inputs` nodes (per copy) and returns
    the logits, or, when the tail ends in `head` (an nn.Linear), that layer's input: the copies then need only
    its target rows. `per_copy`: the most elements one copy holds in any of its values."""

    module: fx.GraphModule
    inputs: list[fx.Node]
    head: nn.Linear | None
    per_copy: int


@dataclass(frozen=True)
class _Mix:
    """A rank-1 node: a linear layer whose input changes by `delta` [B,K,...] (channel k's change at index k
    of dimension 1, zero elsewhere) when channel k of A is ablated; `columns` [K, out] or [K, out, kh, kw]: its
    weight's column k, a following batch norm folded in; `conv`: the convolution (stride, padding,
    dilation), None for a Linear."""

    delta: torch.Tensor
    columns: torch.Tensor
    conv: nn.Conv2d | None


class Tail:
    """The tail of a model cut at the target layer, run once on the layer's output `a` (and `saved`, the
    earlier values it reads); `positions` [K, m]: where channel k lies among one image's elements of `a`.

    `logits` are the tail's output on `a`, `path` how `drops` will compute y_c - y_c^k (module docstring).
    """

    def __init__(self, tail: fx.GraphModule, a: torch.Tensor, saved: list, positions: torch.Tensor):
        self.module, self.positions = tail, positions
        # At least float32 even under amp: one channel's drop y_c - y_c^k is often below bf16's resolution of y_c.
        self.dtype = torch.promote_types(a.dtype, torch.float32)
        self.a = a.to(self.dtype)
        self.inputs = [self.a, *(v.to(self.dtype) if v.is_floating_point() else v for v in saved)]
        self.pairs = active_pairs(self.a, positions)
        self.nodes = list(tail.graph.nodes)
        self.env, self.zero, self.where, self.role, self.mixes, self.sizes = {}, {}, {}, {}, {}, {}
        # Normal tensors even under inference mode: their version counters reveal in-place writes.
        with torch.inference_mode(False), torch.no_grad(), torch.autocast(a.device.type, enabled=False):
            safe = self._probe()
        placeholders = [n for n in self.nodes if n.op == "placeholder"]
        self.env.update(zip(placeholders, self.inputs))  # as the front gave them, whatever the probe wrote
        last = self.nodes[-1].args[0]
        self.logits = self.env[last]
        self.plain = ([n for n in self.nodes if n.op not in ("placeholder", "output")], placeholders)
        self.path, self.part = "split", None  # part: the rank-1 path's (suffix nodes, their inputs)
        if self.role.get(last) == RANK1 and self.logits.dim() == 2:
            self.path = PER_CHANNEL
        elif safe:
            part = self._partition()
            if last in part[0] and any(self.role[n] == RANK1 for n in part[1]):
                self.path, self.part = RANK1, part

    def drops(self, targets: torch.Tensor, budget: int, shortcuts: bool = True) -> torch.Tensor:
        """y_c - y_c^k, Tensor[B,T,K], for targets LongTensor[B,T]; `shortcuts=False` runs the split (every
        copy through the whole tail) whatever the path, as the paper's definition does."""
        if shortcuts and self.path == PER_CHANNEL:  # W[c, k] (f_k(A) - f_k(0)), delta = f(0) - f(A)
            mix = self.mixes[self.nodes[-1].args[0]]
            return -mix.columns.t()[targets] * mix.delta[:, None, :]
        return self._copies_drops(self.suffix(shortcuts), targets, budget)

    # --- the probe ------------------------------------------------------------------------------------

    def _probe(self) -> bool:
        """Run the tail on A, sorting the nodes (`role`); False if a value was written in place while
        something else could still read it (then only the split is safe). Suffix values are dropped once
        read (the copies recompute them): only their size per image is kept (`sizes`)."""
        safe, inputs, first = True, iter(self.inputs), self.nodes[0]
        readers = {node: len(node.users) for node in self.nodes}
        for node in self.nodes:
            if node.op == "output":
                continue
            if node.op == "placeholder":
                self.env[node] = next(inputs).clone()  # the tail may write its inputs in place
                self.role[node] = CONST
                if node is first:
                    self.role[node], self.where[node] = PER_CHANNEL, self.positions
                    self.zero[node] = zeroed(self.a, self.positions.flatten())
            else:
                copy_first = in_place(node, self.module) and self._only_reader(node)
                versions = [(a, self.env[a]._version) for a in node.all_input_nodes if torch.is_tensor(self.env[a])]
                self.env[node] = _run(self.module, node, self.env.__getitem__, copy_first)
                safe = safe and all(self.env[a]._version == v for a, v in versions)
                if safe:
                    self._classify(node, copy_first)
                else:
                    self.role[node] = SUFFIX
            value = self.env[node]
            self.sizes[node] = value.numel() // len(self.a) if torch.is_tensor(value) else 0
            for a in node.all_input_nodes:
                readers[a] -= 1
                if not readers[a] and self.role[a] == SUFFIX:
                    del self.env[a]
        return safe

    def _only_reader(self, node: fx.Node) -> bool:
        """Whether `node` is the only reader of the value it writes in place (no other node, no view)."""
        arg = node.args[0] if node.args else None
        if not isinstance(arg, fx.Node) or len(arg.users) != 1 or not torch.is_tensor(self.env[arg]):
            return False
        storage = self.env[arg].untyped_storage().data_ptr()
        return not any(torch.is_tensor(v) and v.untyped_storage().data_ptr() == storage
                       for n, v in self.env.items() if n is not arg)

    def _classify(self, node: fx.Node, copy_first: bool) -> None:
        """Set `role[node]` (and `where`, `zero` or `mixes`) from its operation and its inputs' roles."""
        deps = [a for a in node.all_input_nodes if self.role[a] != CONST]
        self.role[node] = SUFFIX if deps else CONST
        if not deps:
            return
        out, kind = self.env[node], _kind(node, self.module)
        if all(self.role[a] == PER_CHANNEL for a in deps) and torch.is_tensor(out):
            where = self._per_channel_where(node, kind, deps, out)
            if where is not None:
                self.role[node], self.where[node] = PER_CHANNEL, where
                self.zero[node] = _run(self.module, node, lambda a: self.zero.get(a, self.env[a]), copy_first)
                return
            if kind == "mix" and deps == [node.args[0]]:  # a module call: its input is args[0]
                source, layer = node.args[0], self.module.get_submodule(node.target)
                conv = layer if isinstance(layer, nn.Conv2d) else None
                dim = 1 if conv is not None else self.env[source].dim() - 1  # the dimension the layer mixes
                if _aligned(self.where[source], self.env[source].shape[1:], dim - 1):
                    delta = (self.zero[source] - self.env[source]).movedim(dim, 1)
                    columns = layer.weight.to(self.dtype).transpose(0, 1).contiguous()
                    self.role[node], self.mixes[node] = RANK1, _Mix(delta, columns, conv)
            return
        mix = self.mixes.get(node.args[0]) if kind == "norm" else None  # a batch norm after a rank-1 conv
        if mix is not None and mix.conv is not None and len(node.args[0].users) == 1 and out.dim() == 4:
            norm = self.module.get_submodule(node.target)
            scale = torch.rsqrt(norm.running_var.to(self.dtype) + norm.eps)  # BN(y + d) = BN(y) + scale * d
            if norm.weight is not None:
                scale = scale * norm.weight.to(self.dtype)
            self.role[node] = RANK1
            self.mixes[node] = _Mix(mix.delta, mix.columns * scale.view(1, -1, 1, 1), mix.conv)

    def _per_channel_where(self, node, kind, deps, out) -> torch.Tensor | None:
        """Where channel k lies in `out` if the node keeps channels apart (see the module docstring), else None."""
        first = self.env[deps[0]]
        if out.shape[:1] != first.shape[:1]:
            return None
        if kind in ("elementwise", "norm", "flatten"):
            same = (out.shape == first.shape or kind == "flatten") and out[0].numel() == first[0].numel()
            if same and all(self.env[a].shape == first.shape and torch.equal(self.where[a], self.where[deps[0]])
                            for a in deps):
                return self.where[deps[0]]
            return None
        k = self.positions.shape[0]
        if (kind in ("pool", "reduce") and deps == [node.args[0]] and first.dim() == 4 and out.dim() >= 2
                and out.shape[:2] == first.shape[:2] and _aligned(self.where[deps[0]], first.shape[1:], 0)
                and (kind == "pool" or _spatial_dims(node, first.dim()))):
            return torch.arange(out[0].numel(), device=out.device).view(k, -1)
        return None

    # --- the copies ---------------------------------------------------------------------------------

    def _partition(self) -> tuple[list[fx.Node], list[fx.Node]]:
        """(suffix nodes, the values they read from outside the suffix), in graph order. A value that does
        not depend on A and is not a per-image tensor (a shape, a parameter's product) is recomputed in the
        suffix from the values it comes from."""
        suffix = {n for n in self.nodes if self.role.get(n) == SUFFIX}
        boundary, todo = set(), [a for n in suffix for a in n.all_input_nodes]
        b = len(self.a)
        while todo:
            a = todo.pop()
            if a in suffix or a in boundary or a.op == "get_attr":
                continue
            value = self.env[a]
            if self.role[a] != CONST or (torch.is_tensor(value) and value.dim() and len(value) == b):
                boundary.add(a)
            else:
                suffix.add(a)
                todo += a.all_input_nodes
        return [n for n in self.nodes if n in suffix], [n for n in self.nodes if n in boundary]

    def suffix(self, shortcuts: bool = True) -> Suffix:
        """What runs on the ablated copies (not on the per-channel path): the rank-1 path's suffix, or with
        `shortcuts=False` (and on the split path) the whole tail."""
        nodes, inputs = self.part if shortcuts and self.part is not None else self.plain
        last = self.nodes[-1].args[0]
        head = self.module.get_submodule(last.target) if last.op == "call_module" else None
        if type(head) is not nn.Linear or len(last.users) != 1:
            head = None
        graph = subgraph(self.nodes, set(nodes) - {last} if head is not None else set(nodes), inputs,
                         last.args[0] if head is not None else last)
        per_copy = max(self.sizes[n] for n in (*nodes, *inputs))
        return Suffix(fx.GraphModule(self.module, graph), inputs, head, max(per_copy, 1))

    def _copies_drops(self, suffix: Suffix, targets, budget) -> torch.Tensor:
        """y_c - y_c^k from the suffix run on the copies of every active (image, channel) pair."""
        y = self.logits.to(self.dtype).gather(1, targets)
        drops = y.new_zeros(len(self.a), targets.shape[1], self.positions.shape[0])
        head = suffix.head
        with torch.autocast(self.a.device.type, enabled=False):
            for i in range(len(self.a)):  # a chunk's copies come from one image: rank-1 copies broadcast its value
                for channel in self.pairs[self.pairs[:, 0] == i, 1].split(max(1, budget // suffix.per_copy)):
                    out = suffix.module(*(self._copies(n, i, channel) for n in suffix.inputs)).to(self.dtype)
                    if head is None:
                        scores = out.gather(1, targets[i].expand(len(channel), -1))
                    else:  # only the target rows of the final linear layer
                        scores = out @ head.weight.to(self.dtype)[targets[i]].t()
                        scores = scores if head.bias is None else scores + head.bias.to(self.dtype)[targets[i]]
                    drops[i, :, channel] = (y[i] - scores).t()
        return drops

    def _copies(self, node: fx.Node, i: int, channel: torch.Tensor) -> torch.Tensor:
        """The value of `node` for copies of image i with channel channel[j] of A set to 0, [n, ...]."""
        value, n = self.env[node], len(channel)
        if self.role[node] == CONST:
            return value[i : i + 1].repeat(n, *[1] * (value.dim() - 1))  # the suffix may write its inputs
        if self.role[node] == PER_CHANNEL:  # channel k's elements from the all-zero pass
            at = self.where[node][channel]
            copies = value[i].reshape(1, -1).repeat(n, 1)
            copies.scatter_(1, at, self.zero[node][i].reshape(-1)[at])
            return copies.view(n, *value.shape[1:])
        mix = self.mixes[node]
        d, w = mix.delta[i, channel], mix.columns[channel]  # channel k's change, the weight's column k
        if mix.conv is None:  # a Linear: delta_k[..., None] * W[:, k]
            return torch.addcmul(value[i], d[..., None], w.view(n, *[1] * (d.dim() - 1), -1))
        conv = mix.conv
        if w.shape[-2:] == (1, 1) and conv.stride == (1, 1) and conv.padding in ((0, 0), "valid", "same"):
            return torch.addcmul(value[i], d[:, None], w)  # a 1x1 convolution: the outer product
        change = F.conv2d(d[None], w.reshape(-1, 1, *w.shape[-2:]), None, conv.stride, conv.padding,
                          conv.dilation, groups=n)  # conv(delta_k, W[:, k]) for every copy at once
        return change.view(n, *value.shape[1:]) + value[i]


def active_pairs(a: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """LongTensor[n, 2] of the (image, channel) pairs whose channel is not zero everywhere, image-major."""
    return a.reshape(len(a), -1)[:, positions].ne(0).any(2).nonzero()


def zeroed(a: torch.Tensor, flat: torch.Tensor) -> torch.Tensor:
    """A copy of `a` with the elements at flat positions `flat` (of each image) set to 0."""
    copy = a.clone(memory_format=torch.contiguous_format)
    copy.view(len(copy), -1)[:, flat] = 0
    return copy


def _aligned(where: torch.Tensor, shape, dim: int) -> bool:
    """Whether channel k lies only at index k of dimension `dim` of a value of per-image `shape`."""
    k = where.shape[0]
    if not shape or shape[dim] != k:
        return False
    inner = math.prod(shape[dim:][1:])
    return bool((where // inner % k == torch.arange(k, device=where.device)[:, None]).all())


def _spatial_dims(node: fx.Node, ndim: int) -> bool:
    """Whether a reduction (mean, amax, sum) runs over dimensions 2 and up only."""
    dims = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else None)
    dims = (dims,) if isinstance(dims, int) else dims
    return isinstance(dims, (tuple, list)) and len(dims) > 0 and all(
        isinstance(d, int) and d % ndim >= 2 for d in dims)


def _kind(node: fx.Node, root: nn.Module) -> str | None:
    """What kind of operation a node is, as far as channels go: "elementwise", "norm", "flatten", "pool",
    "reduce", "mix" (a linear layer mixing channels), or None (anything else)."""
    if node.op == "call_module":
        module = root.get_submodule(node.target)
        kind = type(module)  # exact types: a subclass may compute something else in its forward
        if kind in _ELEMENTWISE_MODULES or (kind in _DROPOUT_MODULES and not module.training):
            return "elementwise"
        if kind in _NORM_MODULES:
            return "norm" if not module.training and module.running_mean is not None else None
        if kind in _FLATTEN:
            return "flatten"
        if kind in _POOL:
            return "pool" if not getattr(module, "return_indices", False) else None
        if kind is nn.Linear:
            return "mix"
        if kind is nn.Conv2d:
            depthwise = module.groups == module.in_channels == module.out_channels
            return "pool" if depthwise else "mix" if module.groups == 1 and module.padding_mode == "zeros" else None
        return None
    target = node.target
    if node.op == "call_function":
        if target in _DROPOUT_FUNCTIONS:
            training = node.kwargs.get("training", node.args[2] if len(node.args) > 2 else True)
            return "elementwise" if training is False else None
        if target in _ELEMENTWISE_FUNCTIONS:
            return "elementwise"
    elif node.op != "call_method":
        return None
    if node.op == "call_method" and target in _ELEMENTWISE_METHODS:
        return "elementwise"
    if target in _FLATTEN:
        return "flatten"
    if target in _POOL:
        return "pool"
    if target in _REDUCE:
        return "reduce"
    return None


def in_place(node: fx.Node, root: nn.Module | None = None) -> bool:
    """Whether the node writes its first argument in place (`x.relu_()`, `inplace=True`, ReLU(inplace=True))."""
    if node.op == "call_module":
        return root is not None and getattr(root.get_submodule(node.target), "inplace", False) is True
    name = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", "")
    return (name.endswith("_") and not name.endswith("__")) or bool(node.kwargs.get("inplace"))


def _run(root: nn.Module, node: fx.Node, value, copy_first: bool = False):
    """Evaluate one node with its inputs' values from `value(node)`; `copy_first`: on a copy of its first
    argument (an in-place operation whose input must keep its value)."""
    args, kwargs = fx.map_arg(node.args, value), fx.map_arg(node.kwargs, value)
    if copy_first:
        args = (args[0].clone(), *args[1:])
    if node.op == "call_module":
        return root.get_submodule(node.target)(*args, **kwargs)
    if node.op == "call_function":
        return node.target(*args, **kwargs)
    if node.op == "call_method":
        return getattr(args[0], node.target)(*args[1:], **kwargs)
    return functools.reduce(getattr, node.target.split("."), root)  # get_attr


def subgraph(nodes: list[fx.Node], keep: set[fx.Node], inputs: list[fx.Node], result) -> fx.Graph:
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
