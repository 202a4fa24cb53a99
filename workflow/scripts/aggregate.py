"""The aggregate rules' script: hands the job's plan, inputs and outputs to `cotlab.aggregate`.

A script rather than a shell command, so that the aggregate reads exactly the plan and the files
Snakemake planned; errors are one line in the job's log.
"""

import json
import sys
from contextlib import redirect_stderr, redirect_stdout

from cotlab.aggregate import aggregate_card, aggregate_claims
from cotlab.config import ConfigError

with open(snakemake.log[0], "w") as log, redirect_stdout(log), redirect_stderr(log):
    try:
        if snakemake.rule == "claims":
            tables = {card: {kind: snakemake.input[f"{card}_{kind}"] for kind in ("summary", "curves", "probes")
                             if f"{card}_{kind}" in snakemake.input.keys()}
                      for card in snakemake.params.cards}
            aggregate_claims(tables, snakemake.output[0])
        else:
            tables = {kind: snakemake.output[kind] for kind in ("curves", "summary", "probes", "table")
                      if kind in snakemake.output.keys()}
            aggregate_card(json.loads(snakemake.params.plan), tables, snakemake.output.get("png"))
    except ConfigError as exc:
        print(f"cotlab aggregate: error: {exc}")
        sys.exit(1)
