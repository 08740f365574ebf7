"""Training an Attention Branch Network the way Fukui et al. (CVPR 2019) do.

The loss is the sum of the two branches' cross-entropies (eq. 3):

    L(x_i) = L_att(x_i) + L_per(x_i),   L_att = CE(GAP(class maps)), L_per = CE(perception(( 1 + M) * g))

minimised by SGD with momentum and weight decay on every parameter, the learning rate divided by 10 at
50% and 75% of the epochs (the paper's ImageNet/CIFAR schedule, scaled to any number of epochs).
Each epoch draws its batch order and any dropout from a generator seeded by (seed, epoch), so the same
seed gives the same weights bit for bit, and resuming from a checkpoint after epoch e gives exactly what
the uninterrupted run has after epoch e.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from study.images.pixels import normalised, resized_pixels
from study.images.sets import labelled_refs
from study.models.abn import CHECKPOINT_FORMAT, AttentionBranchNetwork, load_trained, read_checkpoint

__all__ = ["LabelledImages", "SHORTCUT_ABN", "labelled_dataset", "learning_rate", "train_abn"]


class LabelledImages(Dataset):
    """(input Tensor[3,size,size], class) per entry of a labelled set, prepared by the classifiers' own path
    (`study.images.pixels`: squashed to size x size, scaled, normalised with `mean` and `std`), so a model
    trained here sees the inputs `load_model` will give it. A photo is decoded when its item is asked for."""

    def __init__(self, entries, size: int, mean, std):
        self.entries, self.size = list(entries), (size, size)
        self.mean, self.std = torch.tensor(mean, dtype=torch.float32), torch.tensor(std, dtype=torch.float32)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        entry = self.entries[index]
        pixels = resized_pixels(entry.load().image, self.size)[None]
        return normalised(pixels, self.mean, self.std)[0], entry.labels[0]


def labelled_dataset(spec: str, size: int, mean, std, root=None) -> tuple[LabelledImages, list[str]]:
    """(Dataset of (Tensor[3,size,size], class), class names) of a labelled set (`study.images.sets.labelled_refs`:
    the digits, or a folder of class folders)."""
    entries, classes = labelled_refs(str(spec), root)
    return LabelledImages(entries, size, mean, std), classes


def learning_rate(base: float, epoch: int, epochs: int) -> float:
    """`base`, divided by 10 from 50% of the epochs on and by 100 from 75% on (epoch counts from 0)."""
    return base * 0.1 ** ((epoch >= 0.5 * epochs) + (epoch >= 0.75 * epochs))


def train_abn(
    net: AttentionBranchNetwork,
    dataset: Dataset,
    *,
    epochs: int,
    batch_size: int = 64,
    lr: float = 0.1,
    momentum: float = 0.9,
    weight_decay: float = 1e-4,
    device: str | torch.device | None = None,
    seed: int = 0,
    checkpoint: str | Path | None = None,
    resume: str | Path | None = None,
    meta: dict | None = None,
    num_workers: int = 0,
    progress: bool = True,
) -> list[dict]:
    """Train `net` in place on `dataset` (items `(Tensor[3,H,W], int)`) and return one dict per epoch run.

    `checkpoint`: written after every epoch (model, optimizer, epochs done, seed, `meta`), readable with
    `torch.load(..., weights_only=True)`. `resume`: a checkpoint to continue from; call with the same
    arguments as the interrupted run. `meta` is stored for `load_model("abn")` (categories, input_size,
    mean, std; backbone and num_classes default to the net's). `device=None` picks CUDA when available.
    """
    if not isinstance(net, AttentionBranchNetwork):
        raise ValueError(f"train_abn trains an AttentionBranchNetwork, got {type(net).__name__}")
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be at least 1, got {epochs} and {batch_size}")
    if len(dataset) == 0:
        raise ValueError("the training dataset is empty")
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    net.to(device)
    optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    start = 0
    if resume is not None:
        state = read_checkpoint(resume)
        load_trained(net, state, resume)
        optimizer.load_state_dict(state["optimizer"])
        start = int(state["epoch"])
    meta = {"backbone": net.backbone, "num_classes": net.num_classes, **(meta or {})}
    history = []
    for epoch in range(start, epochs):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(lr, epoch, epochs)
        history.append(_epoch(net, optimizer, dataset, epoch, epochs, batch_size, seed, device, num_workers, progress))
        if checkpoint is not None:
            _save({"format": CHECKPOINT_FORMAT, "model": net.state_dict(), "optimizer": optimizer.state_dict(),
                   "epoch": epoch + 1, "seed": seed, "meta": meta}, Path(checkpoint))
    net.eval()
    return history


def _epoch(net, optimizer, dataset, epoch, epochs, batch_size, seed, device, num_workers, progress) -> dict:
    """One pass over the data in an order (and with dropout) fixed by (seed, epoch)."""
    net.train()
    order = torch.Generator().manual_seed(seed * 100_003 + epoch)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=order, num_workers=num_workers)
    forked = [device] if device.type == "cuda" else []
    totals = torch.zeros(4, device=device)  # loss sum, attention correct, perception correct, images
    with torch.random.fork_rng(devices=forked):
        torch.manual_seed(seed * 100_003 + epoch)
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{epochs}", disable=not progress, leave=False)
        for x, y in bar:
            if int(y.min()) < 0 or int(y.max()) >= net.num_classes:
                raise ValueError(f"labels must be 0..{net.num_classes - 1}, got {int(y.min())}..{int(y.max())}")
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            att_logits, per_logits, _ = net.forward_all(x)
            loss = F.cross_entropy(att_logits, y) + F.cross_entropy(per_logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                totals += torch.stack([loss.detach() * len(y), (att_logits.argmax(1) == y).sum(),
                                       (per_logits.argmax(1) == y).sum(), torch.tensor(len(y), device=device)])
    loss_sum, att_ok, per_ok, n = totals.tolist()
    return {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"], "loss": loss_sum / n,
            "attention_accuracy": att_ok / n, "perception_accuracy": per_ok / n}


def _save(state: dict, path: Path) -> None:
    """Write atomically, so an interrupted run never leaves a half-written checkpoint behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


SHORTCUT_ABN = {"backbone": "tiny", "size": 32, "epochs": 32, "batch_size": 64, "lr": 0.1, "weight_decay": 1e-4}
"""How to train an ABN that follows the mark of the shortcut set (`study.images.shortcut`; tests/test_shortcut.py
checks it on several seeds, docs/METHODS.md gives the rates and time): `train_abn` on
`labelled_dataset("shortcut:train", 32, IMAGENET_MEAN, IMAGENET_STD)` with these settings. 32 pixels, not the
set's 64: at 64 the tiny backbone's receptive field (11 px) sees less of a digit, and it was 91% right where mark
and digit agree (seeds 0-1), against 100% at 32. 32 epochs: at 16 one seed of four read only 91% of the agreeing
test images, at 32 every seed 97.5-100% (and followed the mark on 96.7-100% of the disagreeing ones)."""
