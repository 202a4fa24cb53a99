"""Evaluation of each final model with and without CoT (experiments.md §3): answer and per-position
accuracy, eval loss and cross-format scores, plus the model analyses (embedding similarity,
attention-to-parent precision and the attention maps of fig_attention)."""


rule evaluate:
    input:
        final=f"{RESULTS}/runs/{{run_id}}/final",
        eval=lambda wc: run_of(wc).data.path("eval", RESULTS),
    output:
        **cards.eval_paths("{run_id}", RESULTS),
    params:
        run_dir=lambda wc: run_of(wc).path(RESULTS),
        n_attn=lambda wc: run_of(wc).train.get("analysis_n", 256),
    log:
        f"{RESULTS}/logs/evaluate/{{run_id}}.log",
    threads: RES["evaluate"].threads
    resources:
        mem_mb=RES["evaluate"].mem_mb,
        runtime=RES["evaluate"].runtime,
        gpu=RES["evaluate"].gpus,
    shell:
        "cotlab evaluate {params.run_dir} --eval-data {input.eval} --out {output.scores}"
        " --n-attn {params.n_attn} > {log} 2>&1"
