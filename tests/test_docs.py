"""The documentation explains the project from the repository alone: it builds strictly (no broken
links, every page in the navigation) and nothing points to design notes users do not have."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_docs_site_builds_strictly(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "site" / "index.html").is_file()


def test_docs_pages_cite_no_spec_outside_the_repository() -> None:
    offenders = [str(p.relative_to(REPO)) for p in (REPO / "docs").rglob("*.md")
                 if "shared/spec" in p.read_text() or "../shared" in p.read_text()]
    assert offenders == []
