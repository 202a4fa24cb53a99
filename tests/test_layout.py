"""The results layout: one module knows every path, and each scale keeps to its own directory."""

from __future__ import annotations

import re
from pathlib import Path

from cotlab.layout import Layout, eval_companions

REPO = Path(__file__).resolve().parents[1]


def test_every_output_of_a_scale_lives_under_its_directory() -> None:
    smoke, mini = Layout("smoke"), Layout("mini")
    assert smoke.table("fig_vocab") == "results/smoke/tables/fig_vocab.csv"
    assert mini.figure("fig_vocab", "pdf") == "results/mini/figures/fig_vocab.pdf"
    assert smoke.claims() == "results/smoke/tables/claims.csv" != mini.claims()
    assert smoke.run("r__0000000a") == "results/smoke/runs/r__0000000a" != mini.run("r__0000000a")
    assert smoke.data("d__0000000b", "train", 64) == "results/smoke/data/d__0000000b/train-64"
    assert smoke.coverage("d__0000000b", 64) == "results/smoke/coverage/d__0000000b-64"
    assert smoke.log("train", "r") == "results/smoke/logs/train/r.log"
    assert Layout("paper", root="/scratch/out").metrics("r") == "/scratch/out/paper/runs/r/metrics.parquet"


def test_eval_companions_sit_beside_the_scores() -> None:
    files = eval_companions("x/eval/run__1.parquet")
    assert {k: str(v) for k, v in files.items()} == {
        "scores": "x/eval/run__1.parquet", "analysis": "x/eval/run__1.analysis.parquet",
        "attention": "x/eval/run__1.attention.npz"}
    assert Layout("s").evaluation("run__1") == {k: f"results/s/eval/run__1{s}" for k, s in
                                               (("scores", ".parquet"), ("analysis", ".analysis.parquet"),
                                                ("attention", ".attention.npz"))}


def test_no_module_or_rule_but_the_layout_spells_a_results_path() -> None:
    pattern = re.compile(r"""["'/]results/|/runs/|/eval/|/tables/|/figures/""")
    offenders = []
    for path in [*(REPO / "src" / "cotlab").rglob("*.py"), *(REPO / "workflow").rglob("*.smk"),
                 *(REPO / "workflow" / "scripts").glob("*.py")]:
        if path.name == "layout.py":
            continue
        code = re.sub(r'"""(?:.|\n)*?"""', "", path.read_text())  # docstrings may describe the layout
        code = "\n".join(line.split("#", 1)[0] for line in code.splitlines())
        offenders += [f"{path.relative_to(REPO)}: {m.group(0)}" for m in pattern.finditer(code)]
    assert offenders == []
