"""Running a classifier the way every metric needs it: on its own device, in eval mode, in chunks.

Metrics score one target class per input: its softmax probability (the default, single-label
classifiers), its sigmoid (multi-label classifiers, where classes do not compete) or its raw logit.
Scores stay on the model's device until the caller is done, so chunked loops never wait on a host
round trip.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor, nn

AMP_DTYPES = {None: None, "bf16": torch.bfloat16, "fp16": torch.float16}

CPU_CHUNK_VALUES = 2**20
"""Input values per chunk when a metric or `explain` chooses its own chunk size on a CPU. There,
per-image throughput falls once a chunk's activations outgrow the caches: on 2 cores
EfficientNet-Lite0 at 224x224 runs about 2.3x faster per image in chunks of 2-8 images than of 64,
ResNet-18 peaks from 8 on (`bench/bench_metrics_r2.py --chunks`). 2**20 values is 6 images of
3x224x224, 27 of 3x112x112."""


def model_device(model: nn.Module, fallback: torch.device = torch.device("cpu")) -> torch.device:
    """The device of the model's first parameter or buffer (a parameter-free model runs anywhere)."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return fallback


def check_amp(amp: str | None) -> torch.dtype | None:
    if amp not in AMP_DTYPES:
        raise ValueError(f"amp must be one of None, 'bf16', 'fp16'; got {amp!r}")
    return AMP_DTYPES[amp]


def checked_inputs(model: nn.Module, x: Tensor, batch_size: int | None, amp: str | None, *,
                   largest: int = 256) -> tuple[Tensor, torch.device, int, torch.dtype | None]:
    """The checks every metric makes first: x is [B,C,H,W], on the model's device; a valid
    batch size (None: `chunk_size(x, largest)`) and autocast dtype."""
    if x.dim() != 4:
        raise ValueError(f"x must be a batch of preprocessed images [B,C,H,W]; got {tuple(x.shape)}")
    x = x.to(model_device(model, x.device))
    size = chunk_size(x, largest) if batch_size is None else check_positive(batch_size, "batch_size")
    return x, x.device, size, check_amp(amp)


def chunk_size(x: Tensor, largest: int) -> int:
    """How many inputs like x's to run at once when the caller leaves it open, or gives only an upper
    bound: `largest` on an accelerator, where bigger chunks keep it busy; on a CPU as many as hold
    CPU_CHUNK_VALUES values (at least 1, at most `largest`), where smaller chunks stay in cache."""
    check_positive(largest, "batch_size")
    if x.device.type != "cpu":
        return largest
    return max(1, min(largest, CPU_CHUNK_VALUES // max(1, x.shape[1:].numel())))


def chunks(total: int, batch_size: int) -> Iterator[tuple[int, int]]:
    """(start, stop) of consecutive chunks of at most `batch_size` of `total` jobs: the one place
    that bounds how many perturbed inputs exist at once."""
    for start in range(0, total, batch_size):
        yield start, min(start + batch_size, total)


def seeded_generator(seed: int | None, device: torch.device) -> torch.Generator:
    """A generator on `device`, seeded with `seed`, or from fresh entropy when seed is None."""
    generator = torch.Generator(device=device)
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator


def check_positive(n: int, name: str) -> int:
    """`n` if it is a positive int (a count of samples, a batch size); else a ValueError naming `name`."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"{name} must be a positive integer; got {n!r}")
    return n


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[None]:
    """Eval mode (batch norm on running stats, no dropout) and no autograd; restores the mode after."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        model.train(was_training)


def memory_format_of(x: Tensor) -> torch.memory_format:
    """channels_last when the caller's input is laid out that way, so perturbed copies match it."""
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def autocast(device: torch.device, amp: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Mixed precision on `device` with the dtype of `check_amp`, or nothing for None."""
    return torch.autocast(device.type, dtype=amp) if amp is not None else contextlib.nullcontext()


def logits_of(model: nn.Module, inputs: Tensor, amp: torch.dtype | None) -> Tensor:
    """Logits in float32 (softmax over bf16 logits would lose the small probabilities)."""
    with autocast(inputs.device, amp):
        logits = model(inputs)
    if not isinstance(logits, Tensor) or logits.dim() != 2:
        raise ValueError("the model must return logits of shape [batch, classes]")
    return logits.float()


SCORES = ("softmax", "sigmoid", "logit")


def check_score(score: str) -> str:
    if score not in SCORES:
        raise ValueError(f"score must be one of {', '.join(map(repr, SCORES))}; got {score!r}")
    return score


def class_scores(logits: Tensor, score: str = "softmax") -> Tensor:
    """Every class's score [B,K] from logits [B,K], in float32: "softmax" p_c = exp(y_c) / sum_j exp(y_j)
    (single-label heads, the papers' choice), "sigmoid" 1 / (1 + exp(-y_c)) (multi-label heads, each
    class on its own), or "logit" y_c itself."""
    logits = logits.float()
    if check_score(score) == "softmax":
        return torch.softmax(logits, dim=1)
    return torch.sigmoid(logits) if score == "sigmoid" else logits


def class_score(logits: Tensor, targets: Tensor, score: str = "softmax") -> Tensor:
    """The score of each row's target class (see `class_scores`)."""
    if check_score(score) == "softmax":
        return torch.softmax(logits.float(), dim=1).gather(1, targets[:, None]).squeeze(1)
    return class_scores(logits.gather(1, targets[:, None]), score).squeeze(1)


def target_scores(model: nn.Module, inputs: Tensor, targets: Tensor, amp: torch.dtype | None, score: str) -> Tensor:
    """The model's `score` of each input's target class (one forward pass)."""
    return class_score(logits_of(model, inputs, amp), targets, score)


def explained_targets(model: nn.Module, x: Tensor, targets, batch_size: int) -> Tensor:
    """The classes an explainer-driven metric explains: `targets` checked, or each image's top-1,
    as a normal tensor (not an inference-mode one) that explainers may use under autograd."""
    chosen = check_targets(targets, x.shape[0], x.device)
    with evaluating(model):
        if chosen is None:
            _, chosen = scores_and_targets(model, x, None, batch_size, None)
        else:  # one image tells the number of classes: no forward pass over all of x
            check_target_range(chosen, logits_of(model, x[:1], None).shape[1])
    return chosen.clone()


def check_target_range(targets: Tensor, classes: int) -> Tensor:
    """`targets` unchanged when every class index lies in [0, classes)."""
    if int(targets.min()) < 0 or int(targets.max()) >= classes:
        raise ValueError(f"targets must lie in [0, {classes}); got {targets.tolist()}")
    return targets


def check_targets(targets, batch: int, device: torch.device, *, per_image: bool = False) -> Tensor | None:
    """Class indices as a LongTensor on `device`: [B] (one class per image), or also [B,T] with
    `per_image=True` (several classes per image, as the explainers take them); None stays None
    (meaning: the model's top-1 class). A scalar is broadcast to every image."""
    if targets is None:
        return None
    t = torch.as_tensor(targets, device=device)
    if t.dtype.is_floating_point or t.dtype == torch.bool:
        raise ValueError(f"targets must be class indices (integers); got dtype {t.dtype}")
    if t.dim() == 0:
        t = t.expand(batch)
    if t.dim() not in ((1, 2) if per_image else (1,)) or t.shape[0] != batch:
        shapes = "[B] or [B,T]" if per_image else "[B] (one class per image)"
        raise ValueError(f"targets must have shape {shapes} with B={batch} images; got {tuple(t.shape)}")
    return t.long()


def scores_and_targets(
    model: nn.Module, x: Tensor, targets: Tensor | None, batch_size: int, amp: torch.dtype | None,
    score: str = "softmax",
) -> tuple[Tensor, Tensor]:
    """The target's score on the unperturbed images, and the targets (top-1 where None)."""
    probs, chosen = [], []
    fmt = memory_format_of(x)
    for start, stop in chunks(x.shape[0], batch_size):
        logits = logits_of(model, x[start:stop].contiguous(memory_format=fmt), amp)
        if targets is None:
            t = logits.argmax(dim=1)
        else:
            t = check_target_range(targets[start:stop], logits.shape[1])
        chosen.append(t)
        probs.append(class_score(logits, t, score))
    return torch.cat(probs), torch.cat(chosen)
