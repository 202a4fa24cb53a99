"""Atomic file writes: a killed process never leaves a file that looks complete (targets.md)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def write_atomic(path: str | Path, write: Callable[[str], object]) -> None:
    """Call ``write(tmp_path)`` on a temp name in `path`'s directory, then rename it to `path`.

    The temp name is ``.<name>.<random>.tmp<suffix>``: hidden, recognisable as a leftover, and
    ending in the real suffix (writers such as matplotlib pick the format from it). It is removed
    if `write` fails.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}",
                               dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; results are for everyone on a shared cluster
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
