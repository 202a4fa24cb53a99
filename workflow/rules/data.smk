"""Datasets (data.md §6): one directory of Parquet shards + manifest.json per (data point, split);
TokenCoverage of a training split for the coverage card."""


rule generate:
    output:
        directory(f"{RESULTS}/data/{{data_id}}/{{split}}"),
    params:
        data=lambda wc: set_args(data_of(wc).split_config(wc.split)),
    log:
        f"{RESULTS}/logs/generate/{{data_id}}-{{split}}.log",
    threads: RES["generate"].threads
    resources:
        mem_mb=RES["generate"].mem_mb,
        runtime=RES["generate"].runtime,
    shell:
        "cotlab generate --out {output} --split {wildcards.split} {params.data} --workers {threads}"
        " > {log} 2>&1"


rule coverage:
    input:
        f"{RESULTS}/data/{{data_id}}/train",
    output:
        directory(cards.coverage_path("{data_id}", RESULTS)),
    params:
        sizes=lambda wc: " ".join(map(str, cards.coverage_sizes(data_of(wc).n_train))),
    log:
        f"{RESULTS}/logs/coverage/{{data_id}}.log",
    threads: RES["coverage"].threads
    resources:
        mem_mb=RES["coverage"].mem_mb,
        runtime=RES["coverage"].runtime,
    shell:
        "(mkdir -p {output} && for n in {params.sizes}; do"
        " cotlab coverage {input} --n $n > {output}/n$n.json; done) > {log} 2>&1"
