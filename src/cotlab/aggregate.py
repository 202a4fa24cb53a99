"""`cotlab aggregate`: join an experiment's runs into results/tables/<id>.csv and draw its figure.

    cotlab aggregate EXPERIMENT [--scale S] [--config-dir config] [--results results]
    cotlab aggregate claims [--scale S] [--config-dir config] [--results results]

For a training card (kind `runs`) the runs come from `cotlab.experiments.run_table`; the aggregate
reads each run's learning curve (results/runs/<run_id>/metrics.parquet) and final evaluation
(results/eval/<run_id>.parquet, plus .analysis.parquet and .attention.npz beside it when present)
and writes one row per run x eval step: the run's identity (run_id, model, size, format, seed),
every swept value and every data field as columns, the curve's metrics, the per-run summary of
experiments.md §3 (acc_final, acc_max, acc_auc, lift, tau_25, tau_50; analysis.tables) and the
final evaluation with and without CoT (`with_cot_*`, `without_cot_*` columns; `final_*` for the
analyses). The figure is drawn as the card's plot spec says (cotlab.figures).

Other kinds: `coverage` (fig_token_coverage) reads results/coverage/<data_id>.parquet of each grid
point; `data` (fig_teaser) reads the generated train splits; `static` cards are tables computed
from the configs (tab_models: parameter counts on the meta device; tab_hparams: every card's
resolved settings at the scale).

`claims` is a pseudo-experiment: it reads the card tables that exist under results/tables and
writes results/tables/claims.csv (analysis.claims), one row per claim with its verdict.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cotlab.analysis.attention import parent_chance
from cotlab.analysis.claims import CLAIMS, evaluate_claims
from cotlab.analysis.tables import model_order, model_table, summarise_runs
from cotlab.atomic import write_atomic
from cotlab.config import ConfigError, fail, read_yaml
from cotlab.formats import FORMATS

IDENTITY_COLUMNS = ("run_id", "data_id", "experiment", "source", "model", "size", "format", "seed")
DATA_FIELDS = ("vocab_size", "n_dims", "n_inputs", "n_parents", "chain_length", "n_examples", "activation",
               "h_num_layers", "fixed_dag", "fixed_h", "num_unique_h", "special_tokens")
TRAIN_FIELDS = ("n_train", "batch_size", "lr")
FINAL_KEYS = ("run_id", "trained_format", "format", "force", "drop_k", "drop_strategy", "with_cot")
ANALYSIS_COLUMNS = ("embed_sim", "parent_prec", "parent_mass", "parent_chance")


# ----------------------------------------------------------------------------- the pure core

def flatten_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The run table with its `data`/`train` dicts lifted into scalar columns.

    Swept keys stay as they are; a data field missing from a run's swept values (a reusing card
    mixes grids, e.g. fig_attention's n_parents) is filled from the run's resolved data config.
    """
    out = runs.drop(columns=[c for c in ("data", "train") if c in runs]).copy()
    for source, fields in (("data", DATA_FIELDS), ("train", TRAIN_FIELDS)):
        if source not in runs:
            continue
        for name in fields:
            values = runs[source].map(lambda d, name=name: d.get(name) if isinstance(d, dict) else None)
            out[name] = out[name].where(out[name].notna(), values) if name in out else values
            out[name] = out[name] if name == "lr" else _tidy(out[name])
    return out


def _tidy(column: pd.Series) -> pd.Series:
    """Whole numbers that went through a NaN-filled float column become int64 again."""
    values = column.dropna()
    numeric = all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))
                  for v in values)
    if len(values) == len(column) and len(values) and numeric and all(float(v).is_integer() for v in values):
        return column.astype(np.int64)
    return column


def chance_columns(table: pd.DataFrame) -> pd.DataFrame:
    """Reference levels per row: embed_sim_chance = d / V and parent_prec_chance (cot runs only)."""
    table = table.copy()
    if {"n_dims", "vocab_size"} <= set(table):
        table["embed_sim_chance"] = table["n_dims"] / table["vocab_size"]
    if {"n_inputs", "n_parents", "chain_length", "format"} <= set(table):
        table["parent_prec_chance"] = [
            parent_chance(int(n), int(m), int(c)) if FORMATS[fmt].parent_attention else np.nan
            for n, m, c, fmt in zip(table["n_inputs"], table["n_parents"], table["chain_length"], table["format"])]
    return table


def widen_finals(finals: pd.DataFrame) -> pd.DataFrame:
    """One row per run from the evaluation rows: `with_cot_<metric>` and `without_cot_<metric>`
    (the first row of each kind), and `final_<analysis>` columns when present."""
    if finals is None or finals.empty:
        return pd.DataFrame(columns=["run_id"])
    parts = []
    for prefix, with_cot in (("with_cot_", True), ("without_cot_", False)):
        rows = finals[finals["with_cot"] == with_cot].drop_duplicates("run_id")
        metrics = rows.drop(columns=[c for c in (*FINAL_KEYS, *ANALYSIS_COLUMNS, "embed_sim_chance") if c in rows])
        parts.append(metrics.set_index(rows["run_id"]).add_prefix(prefix))
    analysis = [c for c in ANALYSIS_COLUMNS if c in finals]
    if analysis:
        first = finals.drop_duplicates("run_id")
        parts.append(first[analysis].set_index(first["run_id"]).add_prefix("final_"))
    return pd.concat(parts, axis=1).rename_axis("run_id").reset_index()


def aggregate_runs(runs: pd.DataFrame, curves: pd.DataFrame, finals: pd.DataFrame,
                   plot: dict[str, Any]) -> pd.DataFrame:
    """The card table: one row per run x eval step (one per run when there are no curves).

    runs: `experiments.run_table` rows; curves: metrics.parquet rows with a run_id column;
    finals: evaluation rows (evaluate's parquet, analysis columns merged in) with a run_id column.
    Every column the plot spec names must exist, else a ConfigError names it.
    """
    table = flatten_runs(runs)
    if curves is not None and not curves.empty:
        summary = summarise_runs(curves)
        table = table.merge(curves, on="run_id", how="inner").merge(summary, on="run_id", how="left")
    table = table.merge(widen_finals(finals), on="run_id", how="left")
    if "parent_chance" in table:  # metrics.parquet's name for the chance of parent_prec
        table = table.drop(columns=["parent_chance"])
    table = chance_columns(table)
    swept = [c for c in runs.columns if c not in (*IDENTITY_COLUMNS, "data", "train")]
    rank = {m: i for i, m in enumerate(model_order(table["model"]))}  # tf4 < tf8 < tf12, not alphabetical
    table = table.assign(_model_rank=table["model"].map(rank))
    keys = [c for c in (*swept, "_model_rank", "format", "seed", "step") if c in table]
    table = table.sort_values(keys, kind="stable", na_position="last").drop(columns="_model_rank")
    check_plot_columns(table, plot)
    return table.reset_index(drop=True)


def check_plot_columns(table: pd.DataFrame, plot: dict[str, Any]) -> None:
    """Fail with the plot field's name when the spec names a column the table lacks."""
    if plot.get("kind") in ("table", "map", "points") or table.empty:
        return  # these figure modules read their own columns (positions, maps, coverage)
    ys = plot.get("y") if isinstance(plot.get("y"), list) else [plot.get("y")]
    for field in ("x", "hue", "style", "col", "row"):
        column = plot.get(field)
        if column and column not in table:
            fail(f"plot.{field}", column, f"must be a column of the table ({', '.join(map(str, table.columns))})")
    for column in ys:
        if column and column not in table:
            fail("plot.y", column, f"must be a column of the table ({', '.join(map(str, table.columns))})")


def draw(table: pd.DataFrame, plot: dict[str, Any], out_png: str | Path, **extra: Any) -> list[str]:
    """Draw the card's figure into out_png and the .pdf beside it (figure module by plot kind)."""
    from cotlab.figures import attention, coverage, curves, positions

    kind = plot.get("kind", "curves")
    if kind == "curves":
        return curves.draw(table, plot, str(out_png))
    if kind == "points" and plot.get("x") == "position":
        return positions.draw(table, plot, str(out_png))
    if kind == "points":
        return coverage.draw(table, plot, str(out_png))
    if kind == "map" and "maps" in extra:
        return attention.draw(table, plot, str(out_png), extra["maps"])
    if kind == "map":
        from cotlab.figures import teaser
        return teaser.draw(table, plot, str(out_png), **extra)
    raise ConfigError(f"plot.kind={kind!r}: no figure module draws it (curves, points, map; "
                      "tables set figure: false)")


# ----------------------------------------------------------------------------- reading results

def write_csv(table: pd.DataFrame, path: Path) -> None:
    write_atomic(path, lambda tmp: table.to_csv(tmp, index=False))


def read_results(runs: pd.DataFrame, results: Path) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, dict]]:
    """Curves, evaluation rows and attention arrays of every run; a missing file is a ConfigError."""
    curves, finals, maps = [], [], {}
    for run_id in runs["run_id"]:
        metrics = results / "runs" / run_id / "metrics.parquet"
        evaluation = results / "eval" / f"{run_id}.parquet"
        for path in (metrics, evaluation):
            if not path.is_file():
                raise ConfigError(f"{path}: not found (train and evaluate run {run_id} first)")
        curves.append(pd.read_parquet(metrics).assign(run_id=run_id))
        final = pd.read_parquet(evaluation).assign(run_id=run_id)
        analysis = results / "eval" / f"{run_id}.analysis.parquet"
        if analysis.is_file():
            extra = pd.read_parquet(analysis).drop(columns=["run_id", "trained_format"], errors="ignore")
            final = final.assign(**{c: extra[c].iloc[0] for c in ANALYSIS_COLUMNS if c in extra})
        finals.append(final)
        npz = results / "eval" / f"{run_id}.attention.npz"
        if npz.is_file():
            with np.load(npz) as arrays:
                maps[run_id] = {name: arrays[name] for name in arrays.files}
    return pd.concat(curves, ignore_index=True), pd.concat(finals, ignore_index=True), maps


def train_coverage(runs: pd.DataFrame, results: Path, n: int = 10_000) -> pd.Series:
    """TokenCoverage (cov_chain) of the first n rows of each run's train split, NaN where the split
    is absent; fig_activation puts it in its panel titles (data.md §5 default n = 10,000)."""
    from cotlab.data.coverage import token_coverage
    from cotlab.data.store import open_dataset

    coverage = {}
    for data_id in runs["data_id"].unique():
        path = results / "data" / data_id / "train"
        if (path / "manifest.json").is_file():
            dataset = open_dataset(path, verify=False)  # verified when training read it; only 10k rows here
            rows = dataset.read(0, min(n, dataset.n_rows))
            coverage[data_id] = token_coverage(rows, dataset.config.n_usable)["cov_chain"]
    return runs["data_id"].map(coverage).astype(float)


def hparams_table(config_dir: str, scale: str) -> pd.DataFrame:
    """tab_hparams: per training card at the scale, its data point, grid and training settings."""
    from cotlab.experiments import card_ids, expand, load_card, resolve_card

    rows = []
    for exp_id in card_ids(config_dir):
        card = load_card(exp_id, config_dir)
        if card["kind"] != "runs":
            continue
        resolved = resolve_card(exp_id, scale, config_dir)
        runs = expand(exp_id, scale, config_dir)
        train = runs[0].train if runs else resolved["train"]
        grid = "; ".join(f"{k}: {', '.join(map(str, v if isinstance(v, list) else list(v)))}"
                         for k, v in resolved["sweep"].items())
        rows.append({
            "card": exp_id, "scale": scale, "reuses": ", ".join(card["reuse"]),
            "data": ", ".join(f"{k}={v}" for k, v in sorted(resolved["data"].items())), "grid": grid,
            "models": ", ".join(resolved["model_sizes"].get(m, m) for m in resolved["models"]),
            "formats": ", ".join(resolved["formats"]), "runs": len(runs),
            "n_train": train["n_train"], "batch_size": train["batch_size"],
            "steps": train["n_train"] // train["batch_size"],
            "eval_every_seqs": resolved["eval_every_seqs"], "eval_every_steps": train.get("eval_every"),
            "n_eval": train["n_eval"], "lr": train.get("lr"), "seeds": ", ".join(map(str, resolved["seeds"])),
            "precision": train.get("precision")})
    return pd.DataFrame(rows)


def models_table(config_dir: str, scale: str) -> pd.DataFrame:
    """tab_models at the scale: the card's models (their sizes at this scale) x its vocabulary sizes."""
    from cotlab.experiments import resolve_card

    card = resolve_card("tab_models", scale, config_dir)
    sizes = [card["model_sizes"].get(m, m) for m in card["models"]]
    vocab = card["sweep"].get("vocab_size") or [card["data"].get("vocab_size", 1024)]
    return model_table(sizes, [int(v) for v in vocab])


def read_card_tables(tables_dir: Path) -> dict[str, pd.DataFrame]:
    """The card tables the claims need, those that exist."""
    out = {}
    for card in dict.fromkeys(c.card for c in CLAIMS):
        path = tables_dir / f"{card}.csv"
        if path.is_file():
            out[card] = pd.read_csv(path)
    return out


# ----------------------------------------------------------------------------- CLI

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("experiment", help="a card id under CONFIG_DIR/experiments, or `claims`")
    parser.add_argument("--scale", default=None,
                        help="smoke | mini | reduced | paper (default: the scale in CONFIG_DIR/config.yaml)")
    parser.add_argument("--config-dir", default="config", help="holds config.yaml, scales.yaml and experiments/")
    parser.add_argument("--results", default="results", help="the results directory of the workflow")


def default_scale(config_dir: str) -> str:
    path = Path(config_dir) / "config.yaml"
    return str(read_yaml(path).get("scale", "smoke")) if path.is_file() else "smoke"


def main(args: argparse.Namespace) -> int:
    from cotlab.experiments import load_card, points, run_table

    results = Path(args.results)
    scale = args.scale or default_scale(args.config_dir)
    tables_dir, figures_dir = results / "tables", results / "figures"
    if args.experiment == "claims":
        claims = evaluate_claims(read_card_tables(tables_dir))
        write_csv(claims, tables_dir / "claims.csv")
        print(claims[["claim", "verdict"]].to_string(index=False))
        return 0

    card = load_card(args.experiment, args.config_dir)  # ConfigError naming known cards if unknown
    plot = card["plot"]
    out_csv, out_png = tables_dir / f"{args.experiment}.csv", figures_dir / f"{args.experiment}.png"
    extra: dict[str, Any] = {}
    if args.experiment == "tab_models":
        table = models_table(args.config_dir, scale)
    elif args.experiment == "tab_hparams":
        table = hparams_table(args.config_dir, scale)
    elif card["kind"] == "runs":
        runs = run_table(args.experiment, scale, args.config_dir)
        if runs.empty:
            fail("experiment", args.experiment, f"has no runs at scale {scale}")
        curves, finals, maps = read_results(runs, results)
        runs = runs.assign(coverage=train_coverage(runs, results))
        table = aggregate_runs(runs, curves, finals, plot)
        extra = {"maps": maps}
    elif card["kind"] == "coverage":
        from cotlab.figures.coverage import coverage_table
        table = coverage_table(points(args.experiment, scale, args.config_dir), results)
    elif card["kind"] == "data":
        from cotlab.figures.teaser import teaser_table
        table, extra = teaser_table(points(args.experiment, scale, args.config_dir), results)
    else:
        fail("experiment", args.experiment, f"kind={card['kind']!r} has no aggregate")
    write_csv(table, out_csv)
    written = [str(out_csv)]
    if card.get("figure", True) and plot.get("kind") != "table":
        written += draw(table, plot, out_png, **extra)
    print(f"{args.experiment} at scale {scale} ({card['title']}): " + ", ".join(written))
    return 0
