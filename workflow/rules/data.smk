"""Datasets: one directory of Parquet shards + manifest.json per (data point, split,
rows); TokenCoverage of a training split for the coverage card."""


rule generate:
    output:
        directory(LAYOUT.data("{data_id}", "{split}", "{n_rows}")),
    log:
        LAYOUT.log("generate", "{data_id}-{split}-{n_rows}"),
    conda:
        "../envs/cotlab.yaml"
    threads: RES["generate"].threads
    resources:
        mem_mb=RES["generate"].mem_mb,
        runtime=RES["generate"].runtime,
        gpu=RES["generate"].gpus,
    params:
        data=lambda wc: cli_sets(split_config(wc)),
        # chain tokens on the GPU where the scale gives generate one; the workers draw on the CPU
        device="cuda" if RES["generate"].gpus else "cpu",
    shell:
        "cotlab generate --out {output} --split {wildcards.split} {params.data} --workers {threads}"
        " --device {params.device} > {log} 2>&1"


rule coverage:
    input:
        LAYOUT.data("{data_id}", "train", "{n_rows}"),
    output:
        directory(LAYOUT.coverage("{data_id}", "{n_rows}")),
    log:
        LAYOUT.log("coverage", "{data_id}-{n_rows}"),
    conda:
        "../envs/cotlab.yaml"
    threads: RES["coverage"].threads
    resources:
        mem_mb=RES["coverage"].mem_mb,
        runtime=RES["coverage"].runtime,
    params:
        sizes=lambda wc: " ".join(map(str, coverage_sizes(int(wc.n_rows)))),
    shell:
        "(mkdir -p {output} && for n in {params.sizes}; do"
        " cotlab coverage {input} --n $n > {output}/n$n.json; done) > {log} 2>&1"
