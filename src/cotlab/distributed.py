"""Collectives that do nothing on one process, so that training code reads the same at any world size."""

from __future__ import annotations

import torch
import torch.distributed as dist


def barrier(world_size: int) -> None:
    """Wait for every rank (e.g. until rank 0 has made a directory that all ranks write into)."""
    if world_size > 1:
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor, world_size: int) -> torch.Tensor:
    """Sum `tensor` over the ranks, in place; returns it."""
    if world_size > 1:
        dist.all_reduce(tensor)
    return tensor
