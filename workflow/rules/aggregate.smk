"""One table and figure per experiment card (experiments.md §7), captioned for `snakemake --report`
from workflow/report/<id>.rst. One rule per card, so that each figure gets its own caption file."""

for _exp in WORKFLOW.experiments:

    rule:
        name:
            f"aggregate_{_exp}"
        input:
            JOBS.inputs_of(_exp, RESULTS),
        output:
            **aggregate_outputs(_exp),
        params:
            card=aggregate_params(_exp),
            experiment=_exp,
            scale=WORKFLOW.scale,
        log:
            f"{RESULTS}/logs/aggregate/{_exp}.log",
        threads: RES["aggregate"].threads
        resources:
            mem_mb=RES["aggregate"].mem_mb,
            runtime=RES["aggregate"].runtime,
        shell:
            "cotlab aggregate {params.experiment} --scale {params.scale} --config-dir " + CONFIG_DIR +
            " --results " + RESULTS + " > {log} 2>&1"


rule claims:
    """Each paper claim against the tables of the cards it compares (results/tables/claims.csv)."""
    input:
        [f"{RESULTS}/tables/{exp}.csv" for exp in CLAIM_CARDS],
    output:
        report(f"{RESULTS}/tables/claims.csv", caption="../report/claims.rst", category="Tables"),
    params:
        scale=WORKFLOW.scale,
    log:
        f"{RESULTS}/logs/aggregate/claims.log",
    threads: RES["aggregate"].threads
    resources:
        mem_mb=RES["aggregate"].mem_mb,
        runtime=RES["aggregate"].runtime,
    shell:
        "cotlab aggregate claims --scale {params.scale} --config-dir " + CONFIG_DIR +
        " --results " + RESULTS + " > {log} 2>&1"
