"""Example-based explanations: which training images a prediction rests on (Koh & Liang, ICML 2017).

`influence` scores every training image for every test image by the influence function of the model's
last linear layer, with the features before it frozen. That head, with parameters theta = (W, b), is
taken to have been trained to minimise

    R(theta) = (1/n) sum_i L(z_i, theta) + (l2/2) ||theta||^2,   L = cross-entropy of softmax(W phi + b)

over all n training images. Koh & Liang's eq. 2 and Lemma:

    I_up,loss(z, z_test) = - grad L(z_test)^T H^-1 grad L(z),   H = the Hessian of R at theta

is the derivative of the test loss with respect to up-weighting z by epsilon; leaving z out is
epsilon = -1/n, so the test loss changes by about

    Delta L(z_test) = -(1/n) I_up,loss(z, z_test) = (1/n) grad L(z_test)^T H^-1 grad L(z).

That is `scores[b, i]`: positive when training image i helped test image b (leaving it out would raise the
test loss), negative when it hurt. The last layer has a closed form: with x~ = (phi, 1) and the softmax
p, grad L(z) = (p - e_y) x~^T, and H = (1/n) sum_i (diag(p_i) - p_i p_i^T) (x) x~_i x~_i^T + l2 I,
a K x K grid of (D+1) x (D+1) blocks with the softmax cross terms off the diagonal. The exact Hessian is
formed and Cholesky-solved when it fits (`max_exact` parameters); otherwise conjugate gradients with
Hessian-vector products made of the same closed form solve for H^-1 grad L(z_test). Either way no
per-example gradient of size K(D+1) is ever stored: scores are contracted from p - e_y and x~.

Why not captum.influence: captum is only an optional dependency here (`camstudy[compare]`), and its
influence functions take per-example gradients and Hessian products by autograd over generic parameters
and leave the regulariser to the caller. The last layer's softmax cross-entropy has the closed form above,
which is a few batched matrix products, keeps the l2 term of the stated objective, and needs no extra package.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from metrics.model_calls import model_device

__all__ = ["influence", "Influence", "last_layer_features"]

EXAMPLE_METHODS = ("influence", "similarity")   # the examples task's methods (study.protocol.tasks.examples)
CHUNK_ELEMENTS = 1 << 24  # bound on the [B, chunk, K] intermediates of the contractions


@dataclass(frozen=True)
class Influence:
    """`scores` Tensor[B_test, N_train] (see `influence`), `top` / `harmful` LongTensor[B_test, k] indices
    of the k highest / lowest scores, and the `method` that made them."""

    scores: torch.Tensor
    top: torch.Tensor
    harmful: torch.Tensor
    method: str


def influence(
    model: nn.Module,
    train_x: torch.Tensor,
    train_y,
    test_x: torch.Tensor,
    test_targets=None,
    *,
    l2: float,
    k: int = 5,
    batch_size: int = 256,
    method: str = "influence",
    solver: str = "auto",
    max_exact: int = 4096,
) -> Influence:
    """Score each training image for each test image (see the module docstring for the formula).

    `train_y`: the training labels [N]; `test_targets`: the class whose loss is explained per test image
    [B] (None: the model's top-1). `l2` is the weight decay the head was trained with (> 0; it keeps H
    positive definite). `batch_size` images go through the model at once. `method="similarity"` is the
    baseline: cosine similarity of the features, top = most similar, harmful = least similar.
    `solver`: "exact" (Cholesky of the full Hessian), "cg" (conjugate gradients), or "auto" (exact when
    K(D+1) <= `max_exact`).
    """
    if method not in EXAMPLE_METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(EXAMPLE_METHODS)}")
    if solver not in ("auto", "exact", "cg"):
        raise ValueError(f"solver must be 'auto', 'exact' or 'cg', got {solver!r}")
    if method == "influence" and not l2 > 0:
        raise ValueError(f"l2 must be > 0 (the head's weight decay; it keeps the Hessian invertible), got {l2}")
    n = len(train_x)
    if not 1 <= k <= n:
        raise ValueError(f"k must be between 1 and the number of training images ({n}), got {k}")
    train_phi, fc = last_layer_features(model, train_x, batch_size)
    test_phi, _ = last_layer_features(model, test_x, batch_size)
    if method == "similarity":
        scores = F.normalize(test_phi, dim=1) @ F.normalize(train_phi, dim=1).T
    else:
        head = _Head(fc)
        y = _labels(train_y, n, head.num_classes, "train_y").to(train_phi.device)
        test_p = head.probabilities(test_phi)
        t = test_p.argmax(1) if test_targets is None else _labels(
            test_targets, len(test_x), head.num_classes, "test_targets").to(test_phi.device)
        train_x1, test_x1 = head.augment(train_phi), head.augment(test_phi)
        train_p = head.probabilities(train_phi)
        g_test = (test_p - F.one_hot(t, head.num_classes))[:, :, None] * test_x1[:, None, :]  # [B,K,D']
        hessian = _Hessian(train_x1, train_p, l2)
        exact = solver == "exact" or (solver == "auto" and g_test[0].numel() <= max_exact)
        s_test = hessian.solve(g_test) if exact else hessian.solve_cg(g_test)
        scores = _contract(s_test, train_x1, train_p - F.one_hot(y, head.num_classes)) / n
    scores = scores.float()
    return Influence(scores, scores.topk(k, dim=1).indices, (-scores).topk(k, dim=1).indices, method)


def last_layer_features(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> tuple[torch.Tensor, nn.Linear]:
    """(the input of the model's last nn.Linear for every image, float64 [N,D]; that layer), in batches.

    The layer's output must be the model's output (the logits), else its influence would not be about them.
    """
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(model).__name__} has no nn.Linear layer: influence explains a last linear layer")
    if not isinstance(x, torch.Tensor) or x.dim() < 2 or len(x) == 0:
        raise ValueError(f"images must be a non-empty Tensor[N,...], got {getattr(x, 'shape', type(x).__name__)}")
    fc = linears[-1]
    device = model_device(model)
    store: dict = {}

    def hook(_module, inputs, output):
        store["phi"], store["out"] = inputs[0], output

    model.eval()
    features = []
    handle = fc.register_forward_hook(hook)
    try:
        with torch.no_grad():
            for chunk in x.split(batch_size):
                logits = model(chunk.to(device))
                if store.get("out") is None or store["out"].shape != logits.shape or not torch.allclose(
                        store["out"].float(), logits.float(), atol=1e-4, rtol=1e-4):
                    raise ValueError(f"the output of {type(model).__name__}'s last nn.Linear is not the model's "
                                     f"output (logits): influence on the last layer does not apply")
                features.append(store.pop("phi").double().flatten(1))
                store.clear()
    finally:
        handle.remove()
    return torch.cat(features), fc


class _Head:
    """The last linear layer in float64, with a constant 1 feature appended when it has a bias."""

    def __init__(self, fc: nn.Linear):
        weight = fc.weight.detach().double()
        self.has_bias = fc.bias is not None
        self.theta = torch.cat([weight, fc.bias.detach().double()[:, None]], 1) if self.has_bias else weight
        self.num_classes = weight.shape[0]

    def augment(self, phi: torch.Tensor) -> torch.Tensor:
        return torch.cat([phi, phi.new_ones(len(phi), 1)], 1) if self.has_bias else phi

    def probabilities(self, phi: torch.Tensor) -> torch.Tensor:
        return (self.augment(phi) @ self.theta.T).softmax(1)


class _Hessian:
    """H = (1/n) sum_i (diag(p_i) - p_i p_i^T) (x) x_i x_i^T + l2 I for parameters laid out as [K, D']."""

    def __init__(self, x: torch.Tensor, p: torch.Tensor, l2: float):
        self.x, self.p, self.l2 = x, p, l2

    def matrix(self) -> torch.Tensor:
        """The exact Hessian [K*D', K*D']: block (k, l) is (1/n) sum_i (delta_kl p_ik - p_ik p_il) x_i x_i^T."""
        (n, d), kk = self.x.shape, self.p.shape[1]
        h = self.x.new_zeros(kk, d, kk, d)
        for x, p in zip(*(t.split(max(1, CHUNK_ELEMENTS // (kk * kk * d))) for t in (self.x, self.p))):
            s = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]  # [c,K,K]
            h += torch.einsum("ckl,cd,ce->kdle", s, x, x)
        h = h.reshape(kk * d, kk * d) / n
        return h + self.l2 * torch.eye(kk * d, dtype=h.dtype, device=h.device)

    def solve(self, g: torch.Tensor) -> torch.Tensor:
        """H^-1 g for g [B,K,D'], by Cholesky of the exact Hessian."""
        factor = torch.linalg.cholesky(self.matrix())
        return torch.cholesky_solve(g.flatten(1).T, factor).T.reshape(g.shape)

    def product(self, v: torch.Tensor) -> torch.Tensor:
        """H v for v [B,K,D'] without forming H: (1/n) sum_i (p_i * u_i - p_i (p_i . u_i)) x_i^T + l2 v, u_i = v x_i."""
        out = self.l2 * v
        for x, p in zip(*(t.split(_chunk(v.shape[0], self.p.shape[1])) for t in (self.x, self.p))):
            u = torch.einsum("bkd,nd->bnk", v, x)
            w = p * u - p * (p * u).sum(-1, keepdim=True)
            out = out + torch.einsum("bnk,nd->bkd", w, x) / len(self.x)
        return out

    def solve_cg(self, g: torch.Tensor, tol: float = 1e-10) -> torch.Tensor:
        """H^-1 g by conjugate gradients, all B right-hand sides at once (H is symmetric positive definite)."""
        s = torch.zeros_like(g)
        r, q = g.clone(), g.clone()
        rr = (r * r).sum((1, 2))
        stop = tol**2 * rr.clamp_min(torch.finfo(g.dtype).tiny)
        for _ in range(g[0].numel()):
            if bool((rr <= stop).all()):
                break
            hq = self.product(q)
            alpha = rr / (q * hq).sum((1, 2)).clamp_min(torch.finfo(g.dtype).tiny)
            s = s + alpha[:, None, None] * q
            r = r - alpha[:, None, None] * hq
            rr_new = (r * r).sum((1, 2))
            q = r + (rr_new / rr.clamp_min(torch.finfo(g.dtype).tiny))[:, None, None] * q
            rr = rr_new
        return s


def _contract(s: torch.Tensor, x: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """s_b . grad L(z_i) for all b, i, with grad L(z_i) = r_i x_i^T never formed: [B,K,D'] x [N,D'] x [N,K] -> [B,N]."""
    step = _chunk(s.shape[0], s.shape[1])
    parts = [(torch.einsum("bkd,nd->bnk", s, xc) * rc).sum(-1) for xc, rc in zip(x.split(step), r.split(step))]
    return torch.cat(parts, 1)


def _chunk(b: int, k: int) -> int:
    return max(1, CHUNK_ELEMENTS // (b * k))


def _labels(values, n: int, num_classes: int, name: str) -> torch.Tensor:
    labels = torch.as_tensor(values)
    if labels.dtype.is_floating_point or labels.dtype == torch.bool or labels.shape != (n,):
        raise ValueError(f"{name} must be {n} integer class indices, got {labels.dtype} of shape {tuple(labels.shape)}")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"{name} must be class indices 0..{num_classes - 1}, "
                         f"got {int(labels.min())}..{int(labels.max())}")
    return labels.long()
