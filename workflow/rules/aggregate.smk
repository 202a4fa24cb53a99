"""One table and figure per experiment card, captioned for `snakemake --report`
from workflow/report/<id>.rst. One rule per card, so that each figure gets its own caption file."""

for _exp in WORKFLOW.experiments:

    rule:
        name:
            f"aggregate_{_exp}"
        input:
            JOBS.inputs_of(PLANS[_exp]),
        output:
            **aggregate_outputs(_exp),
        params:
            plan=json.dumps(PLANS[_exp], sort_keys=True),
        log:
            LAYOUT.log("aggregate", _exp),
        threads: RES["aggregate"].threads
        resources:
            mem_mb=RES["aggregate"].mem_mb,
            runtime=RES["aggregate"].runtime,
        script:
            "../scripts/aggregate.py"


rule claims:
    """Each paper claim against the tables of the cards it compares."""
    input:
        **claims_inputs(),
    output:
        report(LAYOUT.claims(), caption="../report/claims.rst", category="Tables"),
    params:
        cards=CLAIM_CARDS,
    log:
        LAYOUT.log("aggregate", "claims"),
    threads: RES["aggregate"].threads
    resources:
        mem_mb=RES["aggregate"].mem_mb,
        runtime=RES["aggregate"].runtime,
    script:
        "../scripts/aggregate.py"
