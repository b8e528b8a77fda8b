"""Multi-process training with ``torch.distributed`` (DDP).

``torchrun --nproc_per_node=N -m membra train CONFIG`` starts N processes; each reads its rank
from the environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR/PORT``) and
:func:`setup` joins the process group (gloo on CPU, nccl on CUDA). ``membra train --nproc N``
is a shortcut that runs torchrun for you (:func:`launch`). A single process needs no
environment at all.

Rank 0 alone logs, writes checkpoints and plots; metrics are summed over ranks with
:func:`all_reduce_sum` so every rank reports the same global numbers.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["DistContext", "setup", "teardown", "resolve_device", "all_reduce_sum",
           "broadcast_object", "launch"]


@dataclass(frozen=True)
class DistContext:
    """Where this process runs: ``rank`` of ``world_size`` processes on ``device``."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(device=None, local_rank: int = 0) -> torch.device:
    """``None`` -> CUDA when available, else CPU; ``"cuda"`` without CUDA is an error."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if isinstance(device, str) and device not in ("cpu", "cuda") and \
            not device.startswith("cuda:"):
        raise ValueError(f"device={device!r} is not known; use 'cpu' or 'cuda'")
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device={str(device)!r} was asked for but CUDA is not available "
                             "here; use --device cpu")
        if dev.index is None:
            dev = torch.device("cuda", local_rank)
    return dev


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} must be an integer") from None


def setup(device=None) -> DistContext:
    """Join the process group described by the torchrun environment (if any) and pick the
    device. Without ``WORLD_SIZE > 1`` this is a plain single-process context."""
    world = _env_int("WORLD_SIZE", 1)
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    dev = resolve_device(device, local_rank)
    if world <= 1:
        return DistContext(device=dev)
    owns = False
    if not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
        owns = True
    return DistContext(rank=dist.get_rank(), world_size=dist.get_world_size(),
                       local_rank=local_rank, device=dev, owns_group=owns)


def teardown(ctx: DistContext) -> None:
    """Leave the process group if :func:`setup` created it."""
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(values, ctx: DistContext) -> torch.Tensor:
    """Sum a float64 vector of ``values`` over all ranks (identity for one process)."""
    t = torch.as_tensor(values, dtype=torch.float64)
    if ctx.distributed:
        dev = ctx.device if dist.get_backend() == "nccl" else torch.device("cpu")
        t = t.to(dev)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t = t.cpu()
    return t


def broadcast_object(obj, ctx: DistContext):
    """Rank 0's ``obj`` on every rank."""
    if not ctx.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def launch(args: list[str], nproc: int) -> int:
    """Run ``torchrun --standalone --nproc_per_node=nproc -m membra <args>`` and return its
    exit code (``membra train --nproc N``)."""
    if not isinstance(nproc, int) or nproc < 1:
        raise ValueError(f"--nproc must be a positive integer, got {nproc!r}")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={nproc}", "-m", "membra", *args]
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    return subprocess.call(cmd, env=env)
