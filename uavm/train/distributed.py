"""torch.distributed for the same commands under torchrun (one node or many).

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK and the rendezvous address. A plain
``python -m uavm`` never joins a process group, and every helper
here then answers as for one process, so callers need no second code path.
"""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from datetime import timedelta

import torch
import torch.distributed as dist

from ..errors import UAVMError
from ..settings import settings


def timeout() -> timedelta:
    """$UAVM_DIST_TIMEOUT (default 6 h). A rank may wait at a barrier for the slowest rank's
    remaining work: a rerun after a crash can find one shard finished and another barely
    started. torchrun stops the whole group when a worker dies, so a long timeout only
    delays the report of a worker that hangs."""
    return timedelta(seconds=settings().dist_timeout)


def launched() -> bool:
    """Started by torchrun (with any number of processes: one process joins a group of one,
    so the collective path runs, e.g. nccl on a one-GPU machine), or by another launcher
    that sets a WORLD_SIZE over 1."""
    return "TORCHELASTIC_RUN_ID" in os.environ or int(os.environ.get("WORLD_SIZE", "1")) > 1


@contextmanager
def joined(device: torch.device, backend: str | None = None):
    """Join the torchrun group for the duration (nccl on CUDA, gloo on the CPU unless
    ``backend`` says otherwise); yields this rank's device (cuda:LOCAL_RANK on a GPU node)."""
    if not launched():
        yield device
        return
    if device.type == "cuda":  # one GPU per process
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if local >= torch.cuda.device_count():
            raise UAVMError(f"local rank {local} has no GPU of its own ({torch.cuda.device_count()} on this node): "
                               "start at most that many processes per node, or use --device cpu")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    store, me, size = next(dist.rendezvous("env://", timeout=timeout()))
    # torchrun keeps one store across restarts, still holding the last attempt's addresses, which a
    # restarted rank would read and fail to connect to: each attempt gets keys of its own
    store = dist.PrefixStore(f"attempt_{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}", store)
    backend = backend or ("nccl" if device.type == "cuda" else "gloo")
    dist.init_process_group(backend, store=store, rank=me, world_size=size, timeout=timeout())
    if me == 0:
        print(f"torchrun: a group of {size} process{'es' if size > 1 else ''} ({backend}, {device.type})",
              file=sys.stderr, flush=True)
    try:
        yield device
    finally:
        dist.destroy_process_group()


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    """Rank 0: the one process that logs and writes checkpoints, bundles and reports."""
    return rank() == 0


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def shard(n: int) -> range:
    """This rank's items of n: item i goes to rank i % world, so every item to exactly one."""
    return range(rank(), n, world())


def all_gather(obj) -> list:
    """Every rank's ``obj`` (picklable), in rank order, on every rank."""
    if not dist.is_initialized():
        return [obj]
    out = [None] * world()
    dist.all_gather_object(out, obj)
    return out


def mean(x: float, device) -> float:
    """The mean of x over the ranks."""
    if not dist.is_initialized():
        return x
    t = torch.tensor([x], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item()) / world()
