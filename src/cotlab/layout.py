"""Where every file of the workflow lives: the only module that knows a results path (docs/architecture.md).

    results/<scale>/
      data/<data_id>/<split>-<n_rows>/   one split of a data point (manifest.json, part-*.parquet)
      coverage/<data_id>-<n_rows>/       TokenCoverage of that train split, n<N>.json per prefix N
      runs/<run_id>/                     config.json, metrics.parquet, checkpoints/, final/
      eval/<run_id>.parquet              final scores (+ .analysis.parquet, .attention.npz)
      probes/<run_id>/<probe>.parquet    a card's offline evaluations of a run (same companions)
      tables/<card>.csv                  one table per card, and claims.csv
      figures/<card>.{png,pdf}           one figure per card
      logs/<rule>/<job>.log

Everything a scale makes lives under its own directory: a `mini` run never overwrites the `smoke`
figures, claims read one scale's tables, and `rm -r results/smoke` forgets one scale. Within a
scale, datasets, runs and evaluations are named by ids that hash everything that defines them, so a
job shared by two cards runs once. Every method takes plain strings, so the rules pass Snakemake
wildcards (`"{run_id}"`) through the same functions.
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
    """The results tree of one scale: `<root>/<scale>/`."""

    scale: str
    root: str = "results"

    @property
    def base(self) -> str:
        return f"{self.root}/{self.scale}"

    def data(self, data_id: str, split: str, n_rows: int | str) -> str:
        return f"{self.base}/data/{data_id}/{split}-{n_rows}"

    def coverage(self, data_id: str, n_rows: int | str) -> str:
        """Directory of `cotlab coverage --n N` reports (n<N>.json) of a train split of n_rows."""
        return f"{self.base}/coverage/{data_id}-{n_rows}"

    def run(self, run_id: str) -> str:
        return f"{self.base}/runs/{run_id}"

    def final(self, run_id: str) -> str:
        return f"{self.run(run_id)}/final"

    def metrics(self, run_id: str) -> str:
        return f"{self.run(run_id)}/metrics.parquet"

    def evaluation(self, run_id: str) -> dict[str, str]:
        """scores / analysis / attention files that `cotlab evaluate` writes for a run."""
        return {kind: str(path) for kind, path in eval_companions(f"{self.base}/eval/{run_id}.parquet").items()}

    def probe(self, run_id: str, key: str) -> dict[str, str]:
        """The files of one probe of a run (`cotlab.cards.ProbeJob`), as `evaluation` has them."""
        return {kind: str(path) for kind, path in eval_companions(f"{self.base}/probes/{run_id}/{key}.parquet").items()}

    def log(self, rule: str, job: str) -> str:
        return f"{self.base}/logs/{rule}/{job}.log"

    def table(self, card: str) -> str:
        return f"{self.base}/tables/{card}.csv"

    def card_tables(self, card: str, trains: bool, probes: bool = False) -> dict[str, str]:
        """A training card's two tidy tables ({"curves", "summary"}, and "probes" when it probes its
        runs), another card's one ({"table"})."""
        if trains:
            kinds = ("curves", "summary", "probes") if probes else ("curves", "summary")
            return {kind: self.table(f"{card}_{kind}") for kind in kinds}
        return {"table": self.table(card)}

    def figure(self, card: str, suffix: str = "png") -> str:
        return f"{self.base}/figures/{card}.{suffix}"

    def claims(self) -> str:
        return self.table("claims")
