"""The documentation explains the project from the repository alone: it builds strictly (no broken
links, every page in the navigation) and nothing points to design notes users do not have."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_docs_site_builds_strictly(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "site" / "index.html").is_file()


def test_nothing_in_the_repository_points_to_design_notes_users_do_not_have() -> None:
    banned = ("shared" + "/spec", "../" + "shared")  # spelled in pieces so that this file passes
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True).stdout.split()
    # a section sign after a page name cites the design notes' numbering (a page name, then the sign and a number); ours has headings
    section = re.compile(r"\b(data|experiments|pipeline|targets|style)\.md §")
    texts = {name: (REPO / name).read_text(errors="ignore") for name in tracked
             if (REPO / name).is_file() and (REPO / name).suffix != ".png"}
    offenders = [name for name, text in texts.items() if any(b in text for b in banned) or section.search(text)]
    assert offenders == []
