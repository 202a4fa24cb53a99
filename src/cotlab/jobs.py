"""The workflow's job table at one scale, and the plan each aggregate job is given (docs/architecture.md).

`workflow/rules/common.smk` and `cotlab plan` build `Jobs` here; every path comes from
`cotlab.layout`. An aggregate job receives its card's plan as a Snakemake param: the card at the
scale, its runs or grid points and, for each, the exact files it reads; those files are the job's
inputs. So `cotlab aggregate` reads what Snakemake tracked, and a changed plan (a plot setting, a
run id) reruns exactly that aggregate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cotlab.card_schema import RULES, Card, CpuThroughput, RuleResources, WorkflowConfig
from cotlab.cards import (DataPoint, Point, ProbeJob, Run, card_ids, card_probes, check_runs, expand, load_card,
                          load_scale, load_scales, points, probe_jobs, resolve_card)
from cotlab.config import ConfigError, build
from cotlab.layout import Layout


def coverage_sizes(n_rows: int) -> list[int]:
    """Prefix sizes at which coverage is measured: 100, 1,000, 10,000, ... below n_rows, and n_rows
    (TC grows slowly with n, so a log grid draws the TC-vs-n panel)."""
    return sorted({10 ** k for k in range(2, 19) if 10 ** k < n_rows} | {n_rows})


@dataclass
class Jobs:
    """Everything the workflow builds for some cards at one scale, deduplicated by id."""

    layout: Layout
    resources: dict[str, RuleResources]
    config_dir: str
    seeds: int | None = None
    """Replicates of every run when the workflow config sets them (else each card's or scale's)."""
    cpu_throughput: CpuThroughput | None = None
    """The scale's measured CPU job speeds, if it is a CPU scale (`cotlab plan`)."""
    cards: dict[str, Card] = field(default_factory=dict)
    runs: dict[str, Run] = field(default_factory=dict)
    data: dict[str, dict[str, Any]] = field(default_factory=dict)
    """data_id -> resolved DataConfig values without n_sequences."""
    splits: set[tuple[str, str, int]] = field(default_factory=set)
    """(data_id, split, n_rows) to generate."""
    coverage: set[tuple[str, int]] = field(default_factory=set)
    """(data_id, n_rows of the train split) to run `cotlab coverage` on."""
    runs_of: dict[str, list[str]] = field(default_factory=dict)
    probes: dict[tuple[str, str], ProbeJob] = field(default_factory=dict)
    """(run_id, probe key) -> the probe; two cards that probe a run alike share it."""
    probes_of: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    points_of: dict[str, list[Point]] = field(default_factory=dict)

    @property
    def scale(self) -> str:
        return self.layout.scale

    def split_path(self, point: DataPoint, split: str) -> str:
        return self.layout.data(point.data_id, split, point.n_rows(split))

    def _add_split(self, point: DataPoint, split: str) -> None:
        self.data.setdefault(point.data_id, point.data)
        self.splits.add((point.data_id, split, point.n_rows(split)))

    def add_card(self, exp_id: str) -> None:
        card = self.cards[exp_id] = load_card(exp_id, self.config_dir)
        runs = expand(exp_id, self.scale, self.config_dir, self.seeds)
        self.runs_of[exp_id] = [r.run_id for r in runs]
        probes = card_probes(exp_id, self.scale, self.config_dir)
        self.probes_of[exp_id] = []
        for run in runs:
            self.runs.setdefault(run.run_id, run)
            self._add_split(run.data, "train")
            self._add_split(run.data, "eval")
            try:
                jobs = probe_jobs(run, probes)
            except ConfigError as exc:
                raise ConfigError(f"{exp_id} at scale {self.scale}: {exc}") from None
            for job in jobs:
                self.probes.setdefault((run.run_id, job.key), job)
                self.probes_of[exp_id].append((run.run_id, job.key))
                self._add_split(job.data, "eval")
        self.points_of[exp_id] = pts = points(exp_id, self.scale, self.config_dir, self.seeds)
        for p in pts:
            if card.kind in ("coverage", "data"):
                self._add_split(p.data, "train")
            if card.kind == "coverage":
                self.coverage.add((p.data.data_id, p.data.n_train))

    # ---- the plan of one aggregate job
    def run_files(self, run: Run) -> dict[str, str]:
        return {"metrics": self.layout.metrics(run.run_id), **self.layout.evaluation(run.run_id),
                "train_data": self.split_path(run.data, "train")}

    def point_files(self, exp_id: str, point: Point) -> dict[str, str]:
        if self.cards[exp_id].kind == "coverage":
            return {"coverage": self.layout.coverage(point.data.data_id, point.data.n_train)}
        return {"train_data": self.split_path(point.data, "train")}

    def plan(self, exp_id: str) -> dict[str, Any]:
        """What the aggregate of `exp_id` draws and reads (JSON-able): the card at the scale, then
        `runs` (runs cards), `points` (coverage and data cards) or `rows` (hparams)."""
        card = self.cards[exp_id]
        out: dict[str, Any] = {"card": resolve_card(exp_id, self.scale, self.config_dir, self.seeds)}
        if card.kind == "runs":
            out["runs"] = [{**run.identity(), "files": self.run_files(run)}
                           for run in (self.runs[r] for r in self.runs_of[exp_id])]
            if self.probes_of[exp_id]:
                out["probes"] = [{**job.identity(), "files": self.layout.probe(job.run_id, job.key)}
                                 for job in (self.probes[k] for k in self.probes_of[exp_id])]
        elif card.kind in ("coverage", "data"):
            out["points"] = [{"data_id": p.data.data_id, "values": p.values, "seed": p.seed, "data": p.data.data,
                              "train": p.train, "files": self.point_files(exp_id, p)}
                             for p in self.points_of[exp_id]]
        elif card.kind == "hparams":
            out["rows"] = hparams_rows(self.scale, self.config_dir, self.seeds)
        return out

    def tables_of(self, exp_id: str) -> dict[str, str]:
        """The tables the aggregate of `exp_id` writes (`Layout.card_tables`)."""
        card = self.cards[exp_id]
        tables = self.layout.card_tables(exp_id, card.kind == "runs", bool(self.probes_of.get(exp_id)))
        if card.plot.kind == "headline":  # a table computed from the probes (p2_tab_headline)
            tables["table"] = self.layout.table(exp_id)
        return tables

    def inputs_of(self, plan: dict[str, Any]) -> list[str]:
        """The files an aggregate plan reads (the aggregate job's inputs)."""
        items = plan.get("runs", []) + plan.get("points", []) + plan.get("probes", [])
        return sorted({path for item in items for path in item["files"].values()})


def workflow_jobs(experiments: list[str], scale: str, config_dir: str | Path = "config",
                  results: str = "results", seeds: int | None = None) -> Jobs:
    """The job table of `experiments` at `scale`; every run's TrainConfig is validated here."""
    sc = load_scale(scale, config_dir)
    jobs = Jobs(Layout(scale, results), {k: sc.resources.get(k, RuleResources()) for k in RULES}, str(config_dir),
                seeds, sc.cpu_throughput)
    for exp_id in experiments:
        jobs.add_card(exp_id)
    check_runs(list(jobs.runs.values()))
    return jobs


def hparams_rows(scale: str, config_dir: str | Path, seeds: int | None = None) -> list[dict[str, Any]]:
    """tab_hparams: per training card at the scale, its data point, grid and training settings."""
    rows = []
    for exp_id in card_ids(config_dir):
        card = load_card(exp_id, config_dir)
        if card.kind != "runs":
            continue
        resolved = resolve_card(exp_id, scale, config_dir, seeds)
        runs = expand(exp_id, scale, config_dir, seeds)
        train = runs[0].train if runs else resolved["train"]
        grid = "; ".join(f"{k}: {', '.join(map(str, v if isinstance(v, list) else list(v)))}"
                         for k, v in resolved["sweep"].items())
        rows.append({
            "card": exp_id, "scale": scale, "reuses": ", ".join(card.reuse),
            "data": ", ".join(f"{k}={v}" for k, v in sorted(resolved["data"].items())), "grid": grid,
            "models": ", ".join(resolved["model_sizes"].get(m, m) for m in resolved["models"]),
            "formats": ", ".join(resolved["formats"]), "runs": len(runs),
            "n_train": train["n_train"], "batch_size": train["batch_size"],
            "steps": train["n_train"] // train["batch_size"],
            "eval_every_seqs": resolved["eval_every_seqs"], "eval_every_steps": train.get("eval_every"),
            "n_eval": train["n_eval"], "lr": train.get("lr"), "seeds": resolved["seeds"],
            "precision": train.get("precision")})
    return rows


def workflow_config(values: dict[str, Any], config_dir: str | Path = "config") -> WorkflowConfig:
    """Validate a workflow config: known cards (`all` = every card), a scale of config/scales.yaml,
    train_gpus >= 0; `experiments` comes back as a list."""
    cfg = build(WorkflowConfig, values)
    known = card_ids(config_dir)
    if not known:
        raise ConfigError(f"config-dir={str(config_dir)!r}: holds no cards (experiments/<id>.yaml); "
                          "run from the repository root or pass --config-dir")
    if isinstance(cfg.experiments, str):  # `experiments=all` or a bare card id on the command line
        cfg = cfg.model_copy(update={"experiments": known if cfg.experiments == "all" else [cfg.experiments]})
    for exp_id in cfg.experiments:
        if exp_id not in known:
            raise ConfigError(f"experiments={cfg.experiments!r}: {exp_id!r} is not a card; known: {', '.join(known)}")
    if not cfg.experiments:
        raise ConfigError("experiments=[]: name at least one card")
    scales = load_scales(config_dir)
    if cfg.scale not in scales:
        raise ConfigError(f"scale={cfg.scale!r}: must be one of {', '.join(scales)}")
    if cfg.train_gpus is not None and cfg.train_gpus < 0:
        raise ConfigError(f"train_gpus={cfg.train_gpus!r}: must be >= 0 (null takes the scale's)")
    return cfg
