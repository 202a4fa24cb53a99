"""Atomic writes: a target file or directory appears complete or not at all; leftovers of killed runs go."""

import pytest

import os
import subprocess
import sys

from cotlab.atomic import remove_stale_temps, replace_dir, write_atomic


def test_replaces_target_in_one_step(tmp_path):
    target = tmp_path / "sub" / "table.csv"
    write_atomic(target, lambda tmp: open(tmp, "w").write("a,b\n1,2\n"))
    write_atomic(target, lambda tmp: open(tmp, "w").write("a,b\n3,4\n"))
    assert target.read_text() == "a,b\n3,4\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["table.csv"]


def test_failed_write_leaves_old_file_and_no_temp(tmp_path):
    target = tmp_path / "metrics.parquet"
    target.write_text("old")

    def crash(tmp):
        open(tmp, "w").write("half")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        write_atomic(target, crash)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.parquet"]


def test_replace_dir_swaps_in_the_new_directory_and_keeps_nothing_else(tmp_path):
    final, tmp = tmp_path / "final", tmp_path / ".final.tmp"
    final.mkdir()
    (final / "old.txt").write_text("old")
    tmp.mkdir()
    (tmp / "new.txt").write_text("new")
    replace_dir(tmp, final)
    assert [p.name for p in final.iterdir()] == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final"]


def test_stale_temps_of_dead_processes_go_and_live_ones_stay(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    out = tmp_path / "train-64"
    for name in (f"train-64.tmp-{dead}", f"train-64.old-{dead}", f"train-64.tmp-{os.getpid()}", "train-640.tmp-1"):
        (tmp_path / name).mkdir()
    remove_stale_temps(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train-64.tmp-" + str(os.getpid()), "train-640.tmp-1"]
