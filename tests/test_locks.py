"""Stale Snakemake locks are cleared only when their recorded owner is a dead process on this host."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from cotlab.locks import OWNER_FILE, clear_stale_locks


def dead_pid() -> int:
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)


def locked(root: Path, owner: dict | None) -> Path:
    (root / ".snakemake" / "locks").mkdir(parents=True)
    for name in ("0.input.lock", "0.output.lock"):
        (root / ".snakemake" / "locks" / name).write_text("results/x\n")
    if owner is not None:
        (root / ".snakemake" / OWNER_FILE).write_text(json.dumps(owner))
    return root


def test_locks_of_a_dead_run_on_this_host_are_removed_and_the_new_owner_recorded(tmp_path: Path) -> None:
    root = locked(tmp_path, {"host": socket.gethostname(), "pid": dead_pid()})
    assert "no longer running" in clear_stale_locks(root, will_lock=True)
    assert not list((root / ".snakemake" / "locks").iterdir())
    assert json.loads((root / ".snakemake" / OWNER_FILE).read_text())["pid"] == os.getpid()


@pytest.mark.parametrize("owner", [{"host": socket.gethostname(), "pid": os.getpid()},  # alive: a concurrent run
                                   {"host": "another-node", "pid": 1},  # another host: cannot tell
                                   None])  # no record: taken by something else
def test_other_locks_are_left_for_snakemake_to_refuse(tmp_path: Path, owner: dict | None) -> None:
    root = locked(tmp_path, owner)
    before = (root / ".snakemake" / OWNER_FILE).read_text() if owner else None
    assert clear_stale_locks(root, will_lock=True) is None
    assert len(list((root / ".snakemake" / "locks").iterdir())) == 2
    assert (root / ".snakemake" / OWNER_FILE).read_text() == before if owner else not (root / ".snakemake" / OWNER_FILE).exists()
