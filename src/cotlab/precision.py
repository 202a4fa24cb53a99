"""Numeric precision of forward passes (TrainConfig.precision), shared by training and evaluation
so that `cotlab evaluate` scores a model in the precision it was trained in."""

from __future__ import annotations

import contextlib

import torch


def set_precision(precision: str) -> contextlib.AbstractContextManager:
    """Set the TF32 switches for `precision` (fp32 | tf32 | bf16) and return the forward pass's
    autocast context (a no-op context except for bf16)."""
    tf32 = precision != "fp32"  # bf16 autocast leaves some matmuls in fp32: let them use TF32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    if precision == "bf16":
        device_type = "cuda" if torch.cuda.is_available() else "cpu"
        return torch.autocast(device_type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
