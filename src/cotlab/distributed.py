"""Collectives that do nothing on one process, so that training code reads the same at any world size.

`init` starts the process group with a finite collective timeout: a rank that stalls (SIGSTOP, a
hung filesystem, a dead GPU) makes every other rank's next collective fail after that many seconds,
so the job ends instead of waiting out gloo's 30-minute default.
"""

from __future__ import annotations

from datetime import timedelta

import torch
import torch.distributed as dist


def init(timeout_s: float) -> None:
    """Join torchrun's process group: nccl on GPU, gloo on CPU; collectives give up after `timeout_s`."""
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))


def barrier(world_size: int) -> None:
    """Wait for every rank (e.g. until rank 0 has made a directory that all ranks write into)."""
    if world_size > 1:
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor, world_size: int) -> torch.Tensor:
    """Sum `tensor` over the ranks, in place; returns it."""
    return _all_reduce(tensor, world_size, dist.ReduceOp.SUM)


def all_reduce_min(tensor: torch.Tensor, world_size: int) -> torch.Tensor:
    """Elementwise minimum of `tensor` over the ranks, in place; returns it."""
    return _all_reduce(tensor, world_size, dist.ReduceOp.MIN)


def broadcast(tensor: torch.Tensor, world_size: int) -> torch.Tensor:
    """Overwrite `tensor` on every rank with rank 0's, in place (one rank decides, all follow)."""
    if world_size > 1:
        dist.broadcast(tensor, src=0)
    return tensor


def _all_reduce(tensor: torch.Tensor, world_size: int, op: dist.ReduceOp) -> torch.Tensor:
    if world_size > 1:
        dist.all_reduce(tensor, op=op)
    return tensor
