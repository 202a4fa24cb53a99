"""One table and figure per experiment card, captioned for `snakemake --report`
from workflow/report/<id>.rst. One rule per card, so that each figure gets its own caption file.
In the report each card is a category (its scale the subcategory) holding its figure and tables,
and claims.csv has a category of its own (see `aggregate_outputs` and workflow/report/workflow.rst).
"""

for _exp in WORKFLOW.experiments:

    rule:
        name:
            f"aggregate_{_exp}"
        input:
            JOBS.inputs_of(PLANS[_exp]),
        output:
            **aggregate_outputs(_exp),
        log:
            LAYOUT.log("aggregate", _exp),
        conda:
            "../envs/cotlab.yaml"
        threads: RES["aggregate"].threads
        resources:
            mem_mb=RES["aggregate"].mem_mb,
            runtime=RES["aggregate"].runtime,
        params:
            plan=literal(json.dumps(PLANS[_exp], sort_keys=True)),
            # the card's note at this scale (what it cannot show), for the report caption
            note=literal(PLANS[_exp]["card"]["note"] or ""),
        script:
            "../scripts/aggregate.py"


rule claims:
    """Each paper claim against the tables of the cards it compares."""
    input:
        **claims_inputs(),
    output:
        report(
            LAYOUT.claims(),
            caption="../report/claims.rst",
            category="claims",
            subcategory=WORKFLOW.scale,
            labels={"file": "claims table"},
        ),
    log:
        LAYOUT.log("aggregate", "claims"),
    conda:
        "../envs/cotlab.yaml"
    threads: RES["aggregate"].threads
    resources:
        mem_mb=RES["aggregate"].mem_mb,
        runtime=RES["aggregate"].runtime,
    params:
        cards=CLAIM_CARDS,
    script:
        "../scripts/aggregate.py"
