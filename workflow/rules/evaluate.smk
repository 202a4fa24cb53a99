"""Evaluation of each final model with and without CoT: answer and per-position
accuracy, eval loss and cross-format scores, plus the model analyses (embedding similarity,
attention-to-parent precision and the attention maps of fig_attention)."""


rule evaluate:
    input:
        final=LAYOUT.final("{run_id}"),
        eval=lambda wc: JOBS.split_path(run_of(wc).data, "eval"),
    output:
        **LAYOUT.evaluation("{run_id}"),
    log:
        LAYOUT.log("evaluate", "{run_id}"),
    conda:
        "../envs/cotlab.yaml"
    threads: RES["evaluate"].threads
    resources:
        mem_mb=RES["evaluate"].mem_mb,
        runtime=RES["evaluate"].runtime,
        gpu=RES["evaluate"].gpus,
    params:
        # The run directory (runs/<run_id>/) from the final model's path inside it, not a hard-coded
        # prefix, so that it follows the input wherever Snakemake stages it (`snakemake --lint`).
        run_dir=lambda wc, input: os.path.dirname(input.final),
        n_attn=lambda wc: run_of(wc).train.get("analysis_n", 256),
        data_id=lambda wc: run_of(wc).data_id,  # evaluate refuses a split whose manifest says otherwise
    shell:
        "cotlab evaluate {params.run_dir} --eval-data {input.eval} --out {output.scores}"
        " --n-attn {params.n_attn} --data-id {params.data_id} > {log} 2>&1"


rule probe:
    """A card's offline evaluation of a run (paper 2: drop-k x forcing, other shapes, sampling):
    the run's final model on the probe's eval split, scored at every point of the probe's grid.
    """
    input:
        final=LAYOUT.final("{run_id}"),
        eval=lambda wc: JOBS.split_path(probe_of(wc).data, "eval"),
    output:
        **LAYOUT.probe("{run_id}", "{probe_key}"),
    log:
        LAYOUT.log("probe", "{run_id}.{probe_key}"),
    conda:
        "../envs/cotlab.yaml"
    threads: RES["evaluate"].threads
    resources:
        mem_mb=RES["evaluate"].mem_mb,
        runtime=RES["evaluate"].runtime,
        gpu=RES["evaluate"].gpus,
    params:
        run_dir=lambda wc, input: os.path.dirname(input.final),
        data_id=lambda wc: probe_of(wc).data.data_id,
        options=lambda wc: shlex.join(probe_of(wc).cli_args()),
    shell:
        "cotlab evaluate {params.run_dir} --eval-data {input.eval} --out {output.scores}"
        " --n-attn 0 --data-id {params.data_id} {params.options} > {log} 2>&1"
