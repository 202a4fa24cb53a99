"""Where every file of the workflow lives: the only module that knows a results path (docs/architecture.md).

    results/
      data/<data_id>/<split>-<n_rows>/   one split of a data point (manifest.json, part-*.parquet)
      coverage/<data_id>-<n_rows>/       TokenCoverage of that train split, n<N>.json per prefix N
      runs/<run_id>/                     config.json, metrics.parquet, checkpoints/, final/
      eval/<run_id>.parquet              final scores (+ .analysis.parquet, .attention.npz)
      <scale>/tables/<card>.csv          one table per card, and claims.csv
      <scale>/figures/<card>.{png,pdf}   one figure per card
      logs/<rule>/<job>.log

Datasets, runs and evaluations are named by ids that hash everything that defines them, so the
same job at two scales is one job and shared; tables, figures and claims summarise one scale and
live under it, so a `mini` run never overwrites the `smoke` figures. Every method takes plain
strings, so the rules pass Snakemake wildcards (`"{run_id}"`) through the same functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

EVAL_SUFFIXES = {"scores": ".parquet", "analysis": ".analysis.parquet", "attention": ".attention.npz"}


def eval_companions(scores: str | Path) -> dict[str, Path]:
    """The three files of one evaluation, from the path of its scores (FILE.parquet):
    {"scores": FILE.parquet, "analysis": FILE.analysis.parquet, "attention": FILE.attention.npz}."""
    scores = Path(scores)
    stem = scores.name.removesuffix(".parquet")
    return {kind: scores.with_name(stem + suffix) for kind, suffix in EVAL_SUFFIXES.items()}


@dataclass(frozen=True)
class Layout:
    """The results tree of one scale under `root`."""

    scale: str
    root: str = "results"

    # ---- shared between scales: named by content ids
    def data(self, data_id: str, split: str, n_rows: int | str) -> str:
        return f"{self.root}/data/{data_id}/{split}-{n_rows}"

    def coverage(self, data_id: str, n_rows: int | str) -> str:
        """Directory of `cotlab coverage --n N` reports (n<N>.json) of a train split of n_rows."""
        return f"{self.root}/coverage/{data_id}-{n_rows}"

    def run(self, run_id: str) -> str:
        return f"{self.root}/runs/{run_id}"

    def final(self, run_id: str) -> str:
        return f"{self.run(run_id)}/final"

    def metrics(self, run_id: str) -> str:
        return f"{self.run(run_id)}/metrics.parquet"

    def evaluation(self, run_id: str) -> dict[str, str]:
        """scores / analysis / attention files that `cotlab evaluate` writes for a run."""
        return {kind: str(path) for kind, path in eval_companions(f"{self.root}/eval/{run_id}.parquet").items()}

    def log(self, rule: str, job: str) -> str:
        return f"{self.root}/logs/{rule}/{job}.log"

    # ---- one scale
    def table(self, card: str) -> str:
        return f"{self.root}/{self.scale}/tables/{card}.csv"

    def figure(self, card: str, suffix: str = "png") -> str:
        return f"{self.root}/{self.scale}/figures/{card}.{suffix}"

    def claims(self) -> str:
        return self.table("claims")

    def scale_log(self, rule: str, job: str) -> str:
        return f"{self.root}/{self.scale}/logs/{rule}/{job}.log"
