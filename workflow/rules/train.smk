"""Training: one job per (data point, model, prompt format, seed), DDP over the
job's GPUs (`cotlab train --nproc G` runs torchrun on one node). The final model and metrics.parquet
are the declared outputs; checkpoints live in the undeclared runs/<run_id>/checkpoints/, which
Snakemake leaves alone when a job fails, so a rerun resumes from the newest one.

Multi-node (documented, not tested here): give the rule nodes=N, tasks=N and mpi="srun" in a
profile's set-resources and start one torchrun per node, e.g.
    srun torchrun --nnodes $SLURM_NNODES --nproc-per-node G --rdzv-backend c10d
         --rdzv-endpoint $(scontrol show hostnames $SLURM_JOB_NODELIST | head -n1):29500 -m cotlab.train ...
cotlab.train reads its rank and world size from torchrun's environment either way."""


rule train:
    input:
        train=lambda wc: JOBS.split_path(run_of(wc).data, "train"),
        eval=lambda wc: JOBS.split_path(run_of(wc).data, "eval"),
    output:
        final=directory(LAYOUT.final("{run_id}")),
        metrics=LAYOUT.metrics("{run_id}"),
    log:
        LAYOUT.log("train", "{run_id}"),
    conda:
        "../envs/cotlab.yaml"
    threads: RES["train"].threads
    resources:
        mem_mb=RES["train"].mem_mb,
        runtime=train_runtime,
        gpu=TRAIN_GPUS,  # the SLURM executor asks for --gpus=G (gpu_model in the profile pins a type)
        nproc=max(TRAIN_GPUS, 1),  # DDP ranks; a resource, not a param: it does not change the results
    params:
        train=lambda wc: cli_sets(run_of(wc).train),
        run_dir=LAYOUT.run("{run_id}"),
        data_id=lambda wc: run_of(wc).data_id,  # train refuses splits whose manifest says otherwise
    shell:
        "cotlab train --data {input.train} --eval-data {input.eval} --out {params.run_dir}"
        " --data-id {params.data_id} {params.train} --set threads={threads} --nproc {resources.nproc} > {log} 2>&1"
