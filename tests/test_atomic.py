"""write_atomic: the target appears complete or not at all, and a failed write leaves nothing."""

import pytest

from cotlab.atomic import write_atomic


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
