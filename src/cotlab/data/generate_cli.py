"""`cotlab generate`: write one split of a data point as Parquet shards + manifest (docs/data.md ("Storage")).

    cotlab generate --out results/data/<data_id>/train --split train --set n_sequences=3200000
    cotlab generate --out results/data/<data_id>/eval --split eval --config point.yaml --workers 2

The config is DataConfig (defaults < --config YAML < --set KEY=VALUE); n_sequences is the number
of rows of this split. Everything is checked before any work, the job's memory and disk estimates
included. A directory that already holds this exact dataset (same data_id, split and rows,
verified) is left alone unless --force; one of another data point or split is replaced only with
--force.
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

# Before numpy loads: one BLAS thread per process. Threaded OpenBLAS on the generator's small
# matmuls was measured 5x slower on 2 cores; --workers processes are the parallelism.
for _name in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

from tqdm import tqdm  # noqa: E402

from cotlab.config import DataConfig  # noqa: E402
from cotlab.data.generate import check_run_options  # noqa: E402
from cotlab.data.preflight import check_fits, check_replaces_only_itself  # noqa: E402
from cotlab.data.store import check_out_dir, data_id, is_up_to_date, write_dataset  # noqa: E402
from cotlab.yamlio import load  # noqa: E402


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = __doc__.split("\n\n", 1)[1]
    parser.add_argument("--out", required=True, type=Path, metavar="DIR",
                        help="split directory to write (created atomically via DIR.tmp-<pid>)")
    parser.add_argument("--split", required=True, choices=["train", "eval"],
                        help="train uses `seed`, eval uses `eval_seed` (default seed + 1000); both share E")
    parser.add_argument("--config", type=Path, metavar="FILE.yaml",
                        help="YAML mapping of DataConfig keys (vocab_size, n_dims, n_inputs, ...)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="override one DataConfig key, value parsed as YAML; repeatable "
                             "(e.g. --set n_sequences=20000 --set activation=relu)")
    parser.add_argument("--workers", type=int, default=1, metavar="N",
                        help="worker processes (default 1); the output is identical for any N")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                        help="where chain tokens are computed (float64 on both; default cpu)")
    parser.add_argument("--chunk-size", type=int, default=1024, metavar="N",
                        help="rows per task, at most one 1,024-row block (default 1024); bounds "
                             "memory, never changes the output")
    parser.add_argument("--force", action="store_true",
                        help="regenerate even if DIR already holds this exact dataset, and replace a "
                             "dataset of another data point or split there (refused without it)")
    parser.add_argument("--max-memory", type=positive_float, default=None, metavar="GiB",
                        help="refuse a job whose estimated memory exceeds this (default: this "
                             "machine's RAM); its disk must fit the free space at DIR in any case")


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
    return value


def main(args: argparse.Namespace) -> int:
    cfg = load(DataConfig, args.config, args.sets)
    check_run_options(args.chunk_size, args.device, args.workers)
    check_out_dir(args.out)
    if not args.force and is_up_to_date(args.out, cfg, args.split):
        print(f"{args.out}: already holds {data_id(cfg)} {args.split} ({cfg.n_sequences} rows); "
              "nothing to do (--force regenerates)")
        return 0
    if not args.force:
        check_replaces_only_itself(args.out, cfg, args.split)
    check_fits(args.out, cfg, args.chunk_size, args.workers, args.max_memory, args.device)
    with tqdm(total=cfg.n_sequences, unit="seq", unit_scale=True, disable=None,
              desc=f"generate {args.split}") as bar:
        manifest = write_dataset(args.out, cfg, args.split, chunk_size=args.chunk_size,
                                 device=args.device, workers=args.workers, progress=bar.update)
    print(f"{args.out}: {manifest['n_rows']} rows in {len(manifest['shards'])} shard(s), "
          f"data_id {manifest['data_id']}, content_sha256 {manifest['content_sha256'][:16]}")
    return 0
