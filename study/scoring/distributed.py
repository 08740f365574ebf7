"""Rank, world size and the few collectives `camstudy score` and `camstudy explain` use under torchrun.

`torchrun --nproc_per_node=N --no-python camstudy score ...` starts N copies of the command with
WORLD_SIZE, RANK and LOCAL_RANK in their environment; `launched()` turns that into a process group
(NCCL with one GPU per process, cuda:LOCAL_RANK, when the command asks for CUDA; gloo on the CPU) and
leaves it on the way out. A plain one-process run never imports torch.distributed.

Sharding is strided over blocks: the canonical order is cut into blocks of `block` images (the batch
size), and rank r of W takes blocks r, r+W, r+2W, ... (with block=1: images r, r+W, ...). Nothing is
padded or repeated (so no image counts twice in a mean), shards differ by at most one block, a set
sorted by class or size is spread evenly, and every batch holds exactly the images it holds in a
one-process run: kernels may round differently for a different batch, so this is what makes the
output byte-identical. The canonical order is then a round robin of blocks over the ranks, which lets
rank 0 merge their records in one streaming pass.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import torch

# Rank 0 waits at the barrier for the slowest rank. On a resumed run one rank may hold all the work that
# is left, so the wait can be long; a real failure still ends the run, because torchrun stops the
# other ranks when one exits.
BARRIER_TIMEOUT = timedelta(hours=24)


@dataclass(frozen=True)
class Ranks:
    """This process's place in the run: rank of world, and its GPU index on its node."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0: the one that writes what there is only one of (tables, plots, grids)."""
        return self.rank == 0

    def shard(self, n: int, block: int = 1) -> list[int]:
        """This rank's indices of n items: blocks rank, rank + world, ... of `block` items (no padding)."""
        return [i for start in range(self.rank * block, n, self.world * block)
                for i in range(start, min(start + block, n))]


def owner(index: int, world: int, block: int = 1) -> int:
    """The rank whose shard (`Ranks.shard`) holds item `index`."""
    return index // block % world


def from_environment() -> Ranks:
    """The ranks torchrun set in the environment (a plain run: rank 0 of 1)."""
    try:
        ranks = Ranks(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                      int(os.environ.get("LOCAL_RANK", 0)))
    except ValueError as err:
        raise ValueError(f"RANK, WORLD_SIZE and LOCAL_RANK must be integers ({err})") from None
    if ranks.world < 1 or not 0 <= ranks.rank < ranks.world:
        raise ValueError(f"RANK {ranks.rank} is not within WORLD_SIZE {ranks.world}")
    return ranks


def current() -> Ranks:
    """The ranks of the process group this process joined, or rank 0 of 1 outside one."""
    if not _joined():
        return Ranks()
    import torch.distributed as dist

    return Ranks(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))


@contextmanager
def launched(device: str) -> Iterator[str]:
    """Join torchrun's process group for the block, if there is one; yield the device this rank uses.

    `device` is what the user asked for: "cuda" (or "cuda:K") becomes cuda:LOCAL_RANK with NCCL, anything
    else stays as it is with gloo. Outside torchrun (or with WORLD_SIZE=1) this yields `device` untouched.
    """
    ranks = from_environment()
    if ranks.world == 1:
        yield device
        return
    import torch.distributed as dist

    if device.startswith("cuda"):
        if ranks.local_rank >= torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK {ranks.local_rank} has no GPU: this node has {torch.cuda.device_count()}")
        device, backend = f"cuda:{ranks.local_rank}", "nccl"
        torch.cuda.set_device(device)
    else:
        backend = "gloo"
    dist.init_process_group(backend, timeout=BARRIER_TIMEOUT)
    try:
        yield device
    finally:
        dist.destroy_process_group()


def barrier() -> None:
    """Wait until every rank gets here (nothing to wait for in a one-process run)."""
    if _joined():
        import torch.distributed as dist

        if dist.get_backend() == "nccl":
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()


def gather(obj) -> list | None:
    """Every rank's `obj` on rank 0, in rank order (None on the others); [obj] in a one-process run."""
    if not _joined():
        return [obj]
    import torch.distributed as dist

    gathered = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(obj, gathered, dst=0)
    return gathered


def _joined() -> bool:
    """Whether this process is in a process group, without importing torch.distributed for a plain run."""
    if "WORLD_SIZE" not in os.environ:
        return False
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()
