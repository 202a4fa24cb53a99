"""Atomic writes: a killed process never leaves a file or directory that looks complete (docs/architecture.md).

Files are written under a temporary name and renamed (`write_atomic`); directories are built as a
temporary sibling and moved into place (`replace_dir`), which datasets, checkpoints and model
directories share.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from cotlab.config import ConfigError, short


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


def replace_dir(tmp: Path, final: Path) -> None:
    """Move a finished temporary directory to `final`, replacing an older one if present.

    A directory cannot be renamed over a non-empty one, so an old `final` is first renamed aside
    to `<final>.old-<pid>`; a crash in between leaves no `final` (the work is redone), never a
    partial one, and `remove_stale_temps` clears the leftover.
    """
    old = None
    if final.exists():
        old = final.parent / f"{final.name}.old-{os.getpid()}"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(out: Path) -> None:
    """Delete `<out>.tmp-<pid>` / `<out>.old-<pid>` siblings left by killed runs (pids checked on this
    machine; Snakemake's lock keeps two runs on one directory apart on a shared filesystem)."""
    for path in out.parent.iterdir():
        kind, _, pid = path.name[len(out.name) + 1:].partition("-")
        if (path.name.startswith(out.name + ".") and kind in ("tmp", "old") and pid.isdigit()
                and not pid_alive(int(pid))):
            shutil.rmtree(path, ignore_errors=True)


def existing_parent(path: Path) -> Path:
    """The nearest existing directory above `path` (or file in the way)."""
    return next(p for p in Path(path).absolute().parents if p.exists())


def check_creatable(where: str, path: str | Path) -> None:
    """Before any work: a one-line ConfigError starting with `where` unless `path` can be created,
    tested by making (and removing) a directory in its nearest existing parent; permission bits
    say nothing for root, nor for /proc, /sys or read-only mounts. Nothing is left behind."""
    parent = existing_parent(Path(path))
    if not parent.is_dir():
        raise ConfigError(f"{where}: {short(str(parent))} is not a directory")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".cotlab-probe-", dir=parent))
    except OSError as exc:
        raise ConfigError(f"{where}: cannot create a directory in {short(str(parent))} ({exc.strerror})") from None
