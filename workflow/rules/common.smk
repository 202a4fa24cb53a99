"""Validated config and the job table: what every rule reads (docs/architecture.md).

Each rule passes its job's resolved point as `params`, so Snakemake's params trigger reruns exactly
the jobs whose point changed, and everything downstream of them: data values for generate, training
values for train, the card's plan for aggregate. Values a stage does not read are kept out of its
params (the prompt format is no data param; plot settings are no training param). Every path comes
from `cotlab.layout` through `JOBS.layout`.
"""

import json
import os
import shlex
import sys
from pathlib import Path

import pandas as pd
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from cotlab.analysis.claims import CLAIMS
from cotlab.cards import load_card
from cotlab.config import ConfigError
from cotlab.yamlio import set_items
from cotlab.jobs import coverage_sizes, workflow_config, workflow_jobs
from cotlab.locks import clear_stale_locks
from cotlab.plan import train_seconds

CONFIG_DIR = "config"
RESULTS = "results"


def _validate_file(path, schema):
    validate(yaml.safe_load(Path(path).read_text()) or {}, schema, set_default=False)


# Schema checks first, so that a bad value fails naming its field before any job is planned; then
# every run's full config (TrainConfig and the prompt format against its data point), naming the card.
validate(config, "../schemas/config.schema.yaml")
_validate_file(f"{CONFIG_DIR}/scales.yaml", "../schemas/scales.schema.yaml")
try:
    WORKFLOW = workflow_config(config, CONFIG_DIR)  # names every card that has no file
    for _exp in WORKFLOW.experiments:
        _validate_file(
            f"{CONFIG_DIR}/experiments/{_exp}.yaml", "../schemas/card.schema.yaml"
        )
        for _source in load_card(_exp, CONFIG_DIR).reuse:
            _validate_file(
                f"{CONFIG_DIR}/experiments/{_source}.yaml",
                "../schemas/card.schema.yaml",
            )
    JOBS = workflow_jobs(
        WORKFLOW.experiments, WORKFLOW.scale, CONFIG_DIR, RESULTS, WORKFLOW.seeds
    )
except ConfigError as exc:
    raise WorkflowError(f"invalid configuration: {exc}") from None

# A run killed with SIGKILL leaves its locks: clear them if it is gone.
if workflow.is_main_process:
    _stale = clear_stale_locks(Path.cwd(), will_lock=not workflow.dryrun)
    if _stale:
        print(f"cotlab: {_stale}", file=sys.stderr)

LAYOUT = JOBS.layout
RES = JOBS.resources
PLANS = {exp: JOBS.plan(exp) for exp in WORKFLOW.experiments}
# The requested cards that some paper claim compares; claims.csv is built when there is one.
CLAIM_CARDS = sorted({claim.card for claim in CLAIMS} & set(WORKFLOW.experiments))
TRAIN_GPUS = RES["train"].gpus if WORKFLOW.train_gpus is None else WORKFLOW.train_gpus


wildcard_constraints:
    data_id=r"[^/.]+__[0-9a-f]{8}",  # ids have no dots: <run_id>.analysis.parquet is unambiguous
    run_id=r"[^/.]+__[0-9a-f]{8}",
    probe_key=r"[A-Za-z0-9_-]+__[0-9a-f]{8}",
    split="train|eval",
    n_rows=r"\d+",


def cli_sets(values):
    """`--set KEY=VALUE` arguments of a resolved point, shell-quoted (a stable params string)."""
    return " ".join(f"--set {shlex.quote(item)}" for item in set_items(values))


def run_of(wildcards):
    return JOBS.runs[wildcards.run_id]


def probe_of(wildcards):
    return JOBS.probes[wildcards.run_id, wildcards.probe_key]


def split_config(wildcards):
    return {**JOBS.data[wildcards.data_id], "n_sequences": int(wildcards.n_rows)}


def train_runtime(wildcards):
    """SLURM time limit (minutes): twice the estimate (a CPU scale's measured throughput, else the
    GPU throughput model), at least the scale's floor."""
    estimate = train_seconds(run_of(wildcards), TRAIN_GPUS, JOBS.cpu_throughput) / 60
    return max(RES["train"].runtime, int(2 * estimate) + 1)


# What each table of a card is called in the report, and its caption (a table card's one table
# takes the card's caption).
REPORT_TABLES = {
    "summary": ("summary table", "../report/summary.rst"),
    "curves": ("curves table", "../report/curves.rst"),
    "probes": ("probes table", "../report/probes.rst"),
}


def literal(text):
    """A params value Snakemake passes as it is: a function, so that text such as a card title's
    "C in {2, 3, 4}" is not read as a wildcard (strings in params are)."""
    return lambda wildcards: text


def aggregate_outputs(exp_id):
    """The card's tables (curves + summary for a training card), and its figure (png, pdf) unless
    the card is a table. In the report the card is a category and its scale the subcategory: the
    figure (png) and every table. Captions: workflow/report/<id>.rst, or the generic card.rst for
    a new card; a training card's tables have the generic summary.rst and curves.rst.
    """
    own = Path(workflow.basedir) / "report" / f"{exp_id}.rst"
    caption = f"../report/{exp_id if own.is_file() else 'card'}.rst"

    def in_report(path, label, caption):
        return report(
            path,
            caption=caption,
            category=exp_id,
            subcategory=WORKFLOW.scale,
            labels={"file": label},
        )

    out = {
        kind: in_report(path, *REPORT_TABLES.get(kind, ("table", caption)))
        for kind, path in JOBS.tables_of(exp_id).items()
    }
    if JOBS.cards[exp_id].figure:
        out["png"] = in_report(LAYOUT.figure(exp_id, "png"), "figure", caption)
        out["pdf"] = LAYOUT.figure(exp_id, "pdf")
    return out


def claims_inputs():
    """The curves and summary tables of every requested card that a claim compares."""
    return {
        f"{card}_{kind}": path
        for card in CLAIM_CARDS
        for kind, path in JOBS.tables_of(card).items()
    }


def final_outputs():
    outputs = [
        str(f)
        for exp_id in WORKFLOW.experiments
        for f in aggregate_outputs(exp_id).values()
    ]
    return outputs + ([LAYOUT.claims()] if CLAIM_CARDS else [])


def success_summary():
    """What a finished run prints last: the claims' verdicts and where the tables and figures are."""
    lines = [
        f"cotlab: {', '.join(WORKFLOW.experiments)} at scale {WORKFLOW.scale} are done."
    ]
    if CLAIM_CARDS and Path(LAYOUT.claims()).is_file():
        claims = pd.read_csv(LAYOUT.claims())
        claims = claims[claims["card"].isin(CLAIM_CARDS)]
        lines += ["claims:"] + [
            f"  {c:<28} {v}" for c, v in zip(claims["claim"], claims["verdict"])
        ]
    lines.append(
        f"tables: {Path(LAYOUT.claims()).parent}/   figures: {Path(LAYOUT.figure('x')).parent}/"
    )
    lines.append(
        "report: snakemake --report results/report.html (with the same --config)"
    )
    return "\n".join(lines)
