"""Stale Snakemake locks: a workflow killed with SIGKILL (or a lost login node) leaves
`.snakemake/locks/` behind, and the next `snakemake` refuses to start until `--unlock`.

The main Snakemake process of a cotlab workflow records who holds the lock (host and pid) in
`.snakemake/cotlab-lock-owner.json` when it is about to take it. At the next start, locks whose
recorded owner ran on this host and is no longer alive are removed, with a warning; locks of a
live process, of another host, or with no record are left alone, so Snakemake still refuses a
second concurrent run and names `--unlock` as the way out.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from cotlab.atomic import pid_alive, write_atomic

OWNER_FILE = "cotlab-lock-owner.json"


def clear_stale_locks(workdir: str | Path, will_lock: bool) -> str | None:
    """Remove the locks of a dead run on this host; when `will_lock`, record this process as the
    owner of the lock Snakemake is about to take. Returns a warning when locks were removed."""
    state = Path(workdir) / ".snakemake"
    locks = sorted((state / "locks").glob("*.lock"))
    warning = None
    if locks:
        try:
            owner = json.loads((state / OWNER_FILE).read_text())
        except (OSError, ValueError):
            owner = {}
        if owner.get("host") == socket.gethostname() and isinstance(owner.get("pid"), int) \
                and not pid_alive(owner["pid"]):
            for lock in locks:
                lock.unlink(missing_ok=True)
            warning = (f"removed stale locks of snakemake pid {owner['pid']} on this host, which is no longer "
                       "running (killed?); the workflow resumes where it stopped")
            locks = []
    if will_lock and not locks:
        text = json.dumps({"host": socket.gethostname(), "pid": os.getpid()})
        write_atomic(state / OWNER_FILE, lambda tmp: Path(tmp).write_text(text))
    return warning
