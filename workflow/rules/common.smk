"""Validated config and the job table: what every rule reads (pipeline.md §5, style.md "How config flows").

Each rule passes its job's resolved point as `params`, so Snakemake's params trigger reruns exactly
the jobs whose point changed, and everything downstream of them: data values for generate, training
values for train, the card's plot spec for aggregate. Values a stage does not read are kept out of
its params (the prompt format is no data param; plot settings are no training param).
"""

import json
import shlex
from pathlib import Path

import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from cotlab import experiments as cards
from cotlab.analysis.claims import CLAIMS
from cotlab.config import ConfigError, stable_hash
from cotlab.plan import train_seconds

CONFIG_DIR = "config"
RESULTS = "results"


def _validate_file(path, schema):
    validate(yaml.safe_load(Path(path).read_text()) or {}, schema, set_default=False)


# Schema checks first, so that a bad value fails naming its field before any job is planned.
validate(config, "../schemas/config.schema.yaml")
_validate_file(f"{CONFIG_DIR}/scales.yaml", "../schemas/scales.schema.yaml")
for _exp in config["experiments"]:
    _card_file = f"{CONFIG_DIR}/experiments/{_exp}.yaml"
    _validate_file(_card_file, "../schemas/card.schema.yaml")
    for _source in cards.load_card(_exp, CONFIG_DIR)["reuse"]:
        _validate_file(f"{CONFIG_DIR}/experiments/{_source}.yaml", "../schemas/card.schema.yaml")

try:
    WORKFLOW = cards.workflow_config(config, CONFIG_DIR)
    JOBS = cards.workflow_jobs(WORKFLOW.experiments, WORKFLOW.scale, CONFIG_DIR)
except ConfigError as exc:
    raise WorkflowError(f"invalid configuration: {exc}") from None

RES = JOBS.resources
# The requested cards that some paper claim compares; claims.csv is built when there is one.
CLAIM_CARDS = sorted({claim.card for claim in CLAIMS} & set(WORKFLOW.experiments))


onstart:
    # Training values are checked against TrainConfig here, once jobs are about to run: it imports
    # torch, which would slow every plan and no-op.
    try:
        cards.check_runs(list(JOBS.runs.values()))
    except ConfigError as exc:
        raise WorkflowError(f"invalid configuration: {exc}") from None

TRAIN_GPUS = RES["train"].gpus if WORKFLOW.train_gpus is None else WORKFLOW.train_gpus


wildcard_constraints:
    data_id=r"[^/.]+",  # ids have no dots, so results/eval/<run_id>.analysis.parquet is unambiguous
    run_id=r"[^/.]+",
    split="train|eval",


def set_args(values):
    """`--set KEY=VALUE` arguments of a resolved point, shell-quoted, keys sorted (a stable params string)."""
    return " ".join(f"--set {shlex.quote(arg)}" for arg in cards.set_args(values))


def run_of(wildcards):
    return JOBS.runs[wildcards.run_id]


def data_of(wildcards):
    return JOBS.datasets[wildcards.data_id]


def train_runtime(wildcards):
    """SLURM time limit (minutes): twice the throughput-model estimate, at least the scale's floor."""
    estimate = train_seconds(run_of(wildcards), TRAIN_GPUS) / 60
    return max(RES["train"].runtime, int(2 * estimate) + 1)


def aggregate_outputs(exp_id):
    """results/tables/<id>.csv, and results/figures/<id>.{png,pdf} unless the card is a table."""
    caption = f"../report/{exp_id}.rst"
    out = {"table": f"{RESULTS}/tables/{exp_id}.csv"}
    if JOBS.experiments[exp_id].figure:
        out["png"] = report(f"{RESULTS}/figures/{exp_id}.png", caption=caption, category="Figures")
        out["pdf"] = f"{RESULTS}/figures/{exp_id}.pdf"
    else:
        out["table"] = report(out["table"], caption=caption, category="Tables")
    return out


def aggregate_params(exp_id):
    """What the aggregate of `exp_id` reads besides its input files: the card at this scale
    (plot spec and title included) and, for tab_hparams, every card at this scale."""
    card = cards.resolve_card(exp_id, WORKFLOW.scale, CONFIG_DIR)
    if exp_id == "tab_hparams":
        card["cards"] = stable_hash({c: cards.resolve_card(c, WORKFLOW.scale, CONFIG_DIR)
                                     for c in cards.card_ids(CONFIG_DIR)})
    return json.dumps(card, sort_keys=True)


def final_outputs():
    outputs = [str(f) for exp_id in WORKFLOW.experiments for f in aggregate_outputs(exp_id).values()]
    return outputs + ([f"{RESULTS}/tables/claims.csv"] if CLAIM_CARDS else [])
