"""Small helpers for running :func:`cdpkd.train.fit` under ``torchrun`` (DDP).

Outside ``torchrun`` (no ``WORLD_SIZE`` > 1 in the environment and no process
group initialised) every helper degrades to the single-process answer, so the
training loop has one code path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0 writes logs and checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def env_world_size() -> int:
    """``WORLD_SIZE`` as set by ``torchrun`` (1 when absent)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_distributed() -> bool:
    """True when a process group with more than one process is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    """Global rank (0 outside DDP)."""
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    """Number of processes (1 outside DDP)."""
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    """True on rank 0 and in single-process runs."""
    return get_rank() == 0


def init_distributed() -> DistInfo:
    """Initialise the default process group if launched by ``torchrun`` with WORLD_SIZE > 1.

    Backend: NCCL when CUDA is available, else gloo. An already initialised
    group (e.g. created by the caller or a test) is used as it is. On CUDA the
    current device is set to ``LOCAL_RANK`` so every rank owns one GPU.
    """
    if dist.is_available() and dist.is_initialized():
        info = DistInfo(
            dist.get_rank(), int(os.environ.get("LOCAL_RANK", dist.get_rank())), dist.get_world_size()
        )
    elif env_world_size() > 1:
        if not dist.is_available():
            raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed support")
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
        info = DistInfo(dist.get_rank(), int(os.environ.get("LOCAL_RANK", "0")), dist.get_world_size())
    else:
        return DistInfo()
    if torch.cuda.is_available() and dist.get_backend() == "nccl":
        torch.cuda.set_device(info.local_rank)
    return info


def cleanup() -> None:
    """Destroy the default process group (call once at the end of a torchrun script)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if is_distributed():
        dist.barrier()


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside a DistributedDataParallel (or torch.compile) wrapper."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model


def _reduce_device() -> torch.device:
    # NCCL only reduces CUDA tensors; gloo reduces CPU tensors
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_mean(values: list[float]) -> list[float]:
    """Average a list of floats over ranks (identity in a single process)."""
    if not is_distributed() or not values:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=_reduce_device())
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return (t / dist.get_world_size()).tolist()


def any_rank(flag: bool) -> bool:
    """True if ``flag`` is true on any rank, so every rank takes the same branch."""
    if not is_distributed():
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=_reduce_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def all_reduce_grads(parameters: list[nn.Parameter]) -> None:
    """Average gradients over ranks for parameters that DDP does not manage
    (e.g. trainable adapters living in a distillation loss module)."""
    if not is_distributed():
        return
    world = dist.get_world_size()
    for p in parameters:
        if p.grad is not None:
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad.div_(world)


def gather_objects(obj: Any) -> list[Any]:
    """One small object from every rank, in rank order (``[obj]`` in a single process).

    Used for per-rank RNG states only; the objects travel between our own
    processes in memory, nothing pickled is ever written to or read from disk.
    """
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out
