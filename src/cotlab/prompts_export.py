"""`cotlab prompts`: a dataset's eval prompts as token ids, to score a model outside cotlab.

    cotlab prompts DATA_DIR --format F --out FILE.parquet [--n N] [--set KEY=VALUE]...

Writes the first N rows of an eval split (all of them by default) as `cotlab evaluate` renders them
for format F (a name of `cotlab.formats.FORMATS` or its slug): the same prompt config (the
format's eval-time forcing, then the `--set` prompt options) and the same rendering call. One row
per sequence (docs/evaluation.md, "Scoring a model elsewhere"):

- `row` (int64): the row's index in the split (its seq_idx);
- `prompt_ids` (list<int64>): exactly the tokens cotlab feeds the model before decoding, the forced
  token included, without padding;
- `target_ids` (list<int64>): what cotlab expects the model to generate (the rest of the query:
  y_C; y_1..y_C; or the special-token ending, forced token excluded);
- `answer` (int64): y_C; `answer_pos` (int64): its index in `target_ids`;
- `answer_suffix` (list<int64>): what a correct generation ends with once cut after its first ⟨eos⟩
  (special-token formats: ⟨as⟩ y_C ⟨ae⟩ ⟨eos⟩, or y_C ⟨ae⟩ ⟨eos⟩ when ⟨as⟩ is forced; plain
  formats: y_C, the last of exactly `max_new_tokens` tokens);
- `max_new_tokens` (int64): cotlab's decoding budget for the format.

The file's metadata key `cotlab` holds JSON: the format, the resolved prompt config, n, the data_id
and the special ids (`bos_token_id`, `eos_token_id`, `pad_token_id`; null without special tokens).
Ids include the prompt offset. The file is written atomically.

`eval_prompt_config` (which prompt config `cotlab evaluate` scores a format with) and `eval_prompts`
(how it renders the eval rows; `cotlab.metrics.score_rows` decodes from it) are the pieces
evaluation shares with this export. Torch-free, the decoding budget
(`cotlab.formats.max_new_tokens`) included.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cotlab.atomic import check_creatable, write_atomic
from cotlab.config import DataConfig, build, fail, short
from cotlab.data.prompts import IGNORE, EvalBatch, render_eval
from cotlab.data.store import open_dataset
from cotlab.formats import FORMATS, PromptConfig, max_new_tokens
from cotlab.yamlio import parse_sets

if TYPE_CHECKING:
    from cotlab.data.generate import Rows

METADATA_KEY = b"cotlab"


def format_name(value: str, option: str = "--format") -> str:
    """A format name or slug (`cot`, `std`, `cotsp`, ...) -> its name in FORMATS; a one-line error otherwise."""
    by_slug = {f.slug: name for name, f in FORMATS.items()}
    name = value if value in FORMATS else by_slug.get(value)
    if name is None:
        fail(option, value, f"must be a format ({', '.join(FORMATS)}) or its slug ({', '.join(by_slug)})")
    return str(name)


def eval_prompt_config(fmt: str, data_cfg: DataConfig, overrides: dict[str, Any]) -> PromptConfig:
    """The prompt config `cotlab evaluate` scores format `fmt` with: the format's eval-time forcing
    (⟨ts⟩ for cot_special_token, ⟨as⟩ for standard_special_token), then `overrides` (prompt options
    such as drop_k, force, offset), checked against the data. One-line ConfigError if invalid."""
    force = FORMATS[fmt].eval_force if fmt in FORMATS else None
    values = {"format": fmt, **({"force": force} if force else {}), **overrides}
    prompt_cfg = build(PromptConfig, values, prefix="prompt.")
    prompt_cfg.check(data_cfg)
    return prompt_cfg


def eval_prompts(rows: Rows, data_cfg: DataConfig, prompt_cfg: PromptConfig, n_rows: int) -> EvalBatch:
    """The eval prompts and targets of `rows`, as evaluation renders them: the rows belong to an eval
    set of `n_rows` rows (the CoT-Recipe's index range) and drop_strategy=random is keyed by the eval
    split's seed. Each row's prompt depends on that row alone, so batching changes nothing but padding."""
    return render_eval(rows, data_cfg, prompt_cfg, n_rows, data_cfg.split_seed("eval"))


def _ragged(values: np.ndarray, keep: np.ndarray) -> pa.ListArray:
    """(B, T) values and (B, T) bool keep-mask -> a list<int64> array of each row's kept entries."""
    offsets = np.concatenate([[0], np.cumsum(keep.sum(axis=1))]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(values[keep], pa.int64()))


def prompt_table(rows: Rows, data_cfg: DataConfig, prompt_cfg: PromptConfig,
                 metadata: dict[str, Any] | None = None) -> pa.Table:
    """One row per sequence (module docstring); `rows` are the whole eval set (n_rows = len(rows))."""
    batch = eval_prompts(rows, data_cfg, prompt_cfg, len(rows.seq_idx))
    B = len(rows.seq_idx)
    target_keep = batch.target != IGNORE  # (B, Tt): right-padded with IGNORE
    answer = batch.target[np.arange(B), batch.answer_pos]  # (B,)
    # ⟨as⟩ precedes y_C in the generation unless it was forced into the prompt (docs/evaluation.md).
    suffix_start = batch.answer_pos - int(prompt_cfg.special and prompt_cfg.force != "answer")  # (B,)
    suffix_keep = target_keep & (np.arange(batch.target.shape[1]) >= suffix_start[:, None])
    special = {name: i + prompt_cfg.offset for name, i in data_cfg.special_ids().items()}
    info = {"format": prompt_cfg.format, "prompt": prompt_cfg.to_dict(), "n": B,
            **{f"{name}_token_id": special.get(name) for name in ("bos", "eos", "pad")}, **(metadata or {})}
    table = pa.table({
        "row": pa.array(rows.seq_idx, pa.int64()),
        "prompt_ids": _ragged(batch.prompt_ids, batch.prompt_mask),
        "target_ids": _ragged(batch.target, target_keep),
        "answer": pa.array(answer, pa.int64()),
        "answer_pos": pa.array(batch.answer_pos, pa.int64()),
        "answer_suffix": _ragged(batch.target, suffix_keep),
        "max_new_tokens": pa.array(np.full(B, max_new_tokens(data_cfg, prompt_cfg)), pa.int64()),
    })
    return table.replace_schema_metadata({METADATA_KEY: json.dumps(info, sort_keys=True).encode()})


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The `cotlab` metadata of a `cotlab prompts` file."""
    return json.loads(pq.read_schema(path).metadata[METADATA_KEY])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data_dir", metavar="DATA_DIR", help="an eval split directory (`cotlab generate --split eval`)")
    parser.add_argument("--format", required=True, metavar="F",
                        help=f"prompt format: {', '.join(FORMATS)}, or its slug "
                             f"({', '.join(f.slug for f in FORMATS.values())})")
    parser.add_argument("--out", required=True, metavar="FILE.parquet", help="the file to write (atomically)")
    parser.add_argument("--n", type=int, default=None, metavar="N",
                        help="export the first N rows, as `cotlab evaluate --n N` scores them (default: all)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="prompt option (drop_k, drop_strategy, force, offset, recipe.alpha, ...); "
                             "force=null gives unforced prompts; offset must be the run's")


def main(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if args.n is not None and args.n < 1:
        fail("--n", args.n, "must be a positive integer (rows to export)")
    if out.suffix != ".parquet":
        fail("--out", str(out), "must end in .parquet")
    fmt = format_name(args.format)
    overrides = parse_sets(args.sets)
    if "format" in overrides:
        fail("--set format", overrides["format"], "set the format with --format")
    check_creatable(f"--out={short(str(out))}", out)
    dataset = open_dataset(args.data_dir)
    if dataset.split != "eval":
        fail("DATA_DIR", args.data_dir, f"must be an eval split (this one is {dataset.split!r}); "
             "cotlab evaluates on eval splits only")
    n = dataset.n_rows if args.n is None else args.n
    if n > dataset.n_rows:
        fail("--n", args.n, f"must be <= {dataset.n_rows} (rows of {args.data_dir})")
    prompt_cfg = eval_prompt_config(fmt, dataset.config, overrides)  # validates every option before work

    table = prompt_table(dataset.read(0, n), dataset.config, prompt_cfg,
                         {"data_id": dataset.manifest.get("data_id")})
    write_atomic(out, lambda tmp: pq.write_table(table, tmp))
    force = f", forced {prompt_cfg.force}" if prompt_cfg.force else ""
    print(f"{out}: {n} {fmt} prompts{force} (max_new_tokens {table['max_new_tokens'][0].as_py()})")
    return 0
