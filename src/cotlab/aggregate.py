"""`cotlab aggregate`: join a card's runs into its table and draw its figure.

    cotlab aggregate EXPERIMENT [--scale S] [--config-dir config] [--results results]
    cotlab aggregate claims [--scale S] [--config-dir config] [--results results]

In the workflow each aggregate job is handed its card's plan (`cotlab.jobs.Jobs.plan`): the card at
the scale and, per run or grid point, the exact files to read, which are the job's inputs. By hand,
`cotlab aggregate EXPERIMENT` makes the same plan from the cards and calls the same function.

For a training card (kind `runs`) the aggregate reads each run's learning curve (metrics.parquet),
final evaluation (scores, analysis, attention maps) and the TokenCoverage of its train split, and
writes one row per run x eval step: the run's identity (run_id, model, size, format, seed), every
swept value and every data field as columns, the curve's metrics, the per-run summary
(acc_final, acc_max, acc_auc, lift, tau_25, tau_50; analysis.tables) and the final evaluation with
and without CoT (`with_cot_*`, `without_cot_*` columns; `final_*` for the analyses). A card with
`probes` (paper 2) also writes `<card>_probes.csv`: every probe's scores per run (`probes_table`);
its figure draws that table when `plot.kind` is `probes`.

Other kinds: `coverage` (fig_token_coverage) reads the coverage stage's reports of each grid point;
`data` (fig_teaser) reads a generated train split; `models` (tab_models) counts parameters from
the model configs; `hparams` (tab_hparams) lists every card's settings resolved at planning time.

`claims` reads the card tables it is given and writes claims.csv (analysis.claims), one row per
claim with its verdict. Tables, figures and claims live under the scale (`cotlab.layout`).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cotlab.analysis.attention import parent_chance
from cotlab.analysis.claims import CLAIMS, evaluate_claims, headline_table
from cotlab.analysis.tables import model_order, model_table, summarise_runs, wilson_interval
from cotlab.atomic import write_atomic
from cotlab.card_schema import SHAPE_FIELDS
from cotlab.config import ConfigError, DataConfig, fail
from cotlab.data.coverage import token_coverage
from cotlab.data.store import open_dataset
from cotlab.figures import attention, coverage, curves, positions, recipe, sequence, teaser
from cotlab.figures.coverage import coverage_table
from cotlab.figures.teaser import teaser_table
from cotlab.formats import FORMATS
from cotlab.jobs import workflow_jobs
from cotlab.layout import Layout
from cotlab.yamlio import read_yaml

IDENTITY_COLUMNS = ("run_id", "data_id", "card", "source", "scale", "model", "size", "format", "seed")
CURVE_IDENTITY = ("run_id", "card", "scale", "model", "size", "format", "seed")
DATA_FIELDS = ("vocab_size", "n_dims", "n_inputs", "n_parents", "chain_length", "n_examples", "activation",
               "h_num_layers", "fixed_dag", "fixed_h", "num_unique_h", "special_tokens")
TRAIN_FIELDS = ("n_train", "batch_size", "lr", "n_eval")
ANALYSIS_COLUMNS = ("embed_sim", "parent_prec", "parent_mass", "n_attn")
FINAL_METRICS = re.compile(r"^(answer_acc|chain_acc_\d+)(_lo|_hi)?$")  # evaluation columns the summary keeps


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
    table["embed_sim_chance"] = table["n_dims"] / table["vocab_size"]
    table["parent_prec_chance"] = [
        parent_chance(int(n), int(m), int(c)) if FORMATS[fmt].parent_attention else np.nan
        for n, m, c, fmt in zip(table["n_inputs"], table["n_parents"], table["chain_length"], table["format"])]
    return table


def widen_finals(finals: pd.DataFrame) -> pd.DataFrame:
    """One row per run from its evaluation rows: `with_cot_<m>` / `without_cot_<m>` for the answer and
    chain accuracies with their intervals (the first row of each kind), and `<analysis>_final`."""
    parts = []
    for prefix, with_cot in (("with_cot_", True), ("without_cot_", False)):
        rows = finals[finals["with_cot"] == with_cot].drop_duplicates("run_id")
        kept = [c for c in rows if FINAL_METRICS.match(c)]
        parts.append(rows[kept].set_index(rows["run_id"]).add_prefix(prefix))
    first = finals.drop_duplicates("run_id")
    analysis = [c for c in ANALYSIS_COLUMNS if c in first]
    parts.append(first[analysis].set_index(first["run_id"]).rename(
        columns={c: c if c == "n_attn" else f"{c}_final" for c in analysis}))
    return pd.concat(parts, axis=1).rename_axis("run_id").reset_index()


def without_empty_columns(table: pd.DataFrame) -> pd.DataFrame:
    return table.dropna(axis=1, how="all")


def aggregate_runs(runs: pd.DataFrame, curves: pd.DataFrame, finals: pd.DataFrame, plot: dict[str, Any]
                   ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(curves table, summary table, plot frame) of a training card (docs/tables.md).

    runs: one row per run (`run_frame`, with `scale` and `coverage`); curves: metrics.parquet rows
    with a run_id column; finals: evaluation rows (analysis columns merged in) with a run_id column.
    The plot frame is the curves joined with the summary, what the figure modules draw from; every
    column the plot spec names must exist in it, else a ConfigError names it.
    """
    ident = flatten_runs(runs)
    swept = [c for c in runs.columns if c not in (*IDENTITY_COLUMNS, "data", "train", "coverage")]
    rank = {m: i for i, m in enumerate(model_order(ident["model"]))}  # tf4 < tf8 < tf12, not alphabetical
    order = [*swept, "_model_rank", "format", "seed"]

    def tidy(table: pd.DataFrame, by: list[str]) -> pd.DataFrame:
        table = table.assign(_model_rank=table["model"].map(rank))
        table = table.sort_values([c for c in by if c in table], kind="stable", na_position="last")
        return without_empty_columns(table.drop(columns="_model_rank")).reset_index(drop=True)

    metrics = curves.drop(columns=["lr", "parent_chance"], errors="ignore")
    lo, hi = zip(*(wilson_interval(a * n, int(n)) for a, n in zip(metrics["answer_acc"], metrics["n_eval"])))
    metrics = metrics.assign(answer_acc_lo=lo, answer_acc_hi=hi)
    curve_table = ident[[*CURVE_IDENTITY, *swept]].merge(metrics, on="run_id", how="inner")
    summary = chance_columns(ident).merge(summarise_runs(curves), on="run_id", how="left")
    summary = summary.merge(widen_finals(finals), on="run_id", how="left")
    curve_table, summary = tidy(curve_table, [*order, "step"]), tidy(summary, order)
    frame = curve_table.merge(summary.drop(columns=[c for c in summary if c in curve_table and c != "run_id"]),
                              on="run_id", how="left")
    check_plot_columns(frame, plot)
    return curve_table, summary, frame


def check_plot_columns(table: pd.DataFrame, plot: dict[str, Any]) -> None:
    """Fail with the plot field's name when the spec names a column the table lacks."""
    if plot.get("kind") in ("table", "map", "points", "probes", "headline", "recipe", "sequence") or table.empty:
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
    kind = plot.get("kind", "curves")
    if kind in ("curves", "probes"):
        return curves.draw(table, plot, str(out_png))
    if kind == "points" and plot.get("x") == "position":
        return positions.draw(table, plot, str(out_png))
    if kind == "points":
        return coverage.draw(table, plot, str(out_png))
    if kind == "recipe":
        return recipe.draw(table, plot, str(out_png))
    if kind == "sequence":
        return sequence.draw(table, plot, str(out_png))
    if kind == "map" and "maps" in extra:
        return attention.draw(table, plot, str(out_png), extra["maps"])
    if kind == "map":
        return teaser.draw(table, plot, str(out_png), **extra)
    raise ConfigError(f"plot.kind={kind!r}: no figure module draws it (curves, probes, points, map, recipe, "
                      "sequence; tables set figure: false)")


# ----------------------------------------------------------------------------- reading results

def write_csv(table: pd.DataFrame, path: str | Path) -> None:
    write_atomic(path, lambda tmp: table.to_csv(tmp, index=False))


def run_frame(runs: list[dict[str, Any]], scale: str) -> pd.DataFrame:
    """A plan's runs as one row each: identity columns, every swept key, then `data` and `train` dicts."""
    swept = list(dict.fromkeys(k for run in runs for k in run["values"]))
    rows = [{**{c: run[c] for c in IDENTITY_COLUMNS if c != "scale"}, "scale": scale,
             **{k: run["values"].get(k) for k in swept}, "data": run["data"], "train": run["train"]} for run in runs]
    return pd.DataFrame(rows, columns=[*IDENTITY_COLUMNS, *swept, "data", "train"])


def read_results(runs: list[dict[str, Any]]) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, dict]]:
    """Curves, evaluation rows and attention arrays of a plan's runs; a missing file is a ConfigError."""
    curves, finals, maps = [], [], {}
    for run in runs:
        run_id, files = run["run_id"], run["files"]
        for kind in ("metrics", "scores", "analysis", "attention"):
            if not Path(files[kind]).is_file():
                raise ConfigError(f"{files[kind]}: not found (train and evaluate run {run_id} first)")
        curves.append(pd.read_parquet(files["metrics"]).assign(run_id=run_id))
        final = pd.read_parquet(files["scores"]).assign(run_id=run_id)
        extra = pd.read_parquet(files["analysis"])
        finals.append(final.assign(**{c: extra[c].iloc[0] for c in ANALYSIS_COLUMNS if c in extra}))
        with np.load(files["attention"]) as arrays:
            maps[run_id] = {name: arrays[name] for name in arrays.files}
    return pd.concat(curves, ignore_index=True), pd.concat(finals, ignore_index=True), maps


def probes_table(probes: list[dict[str, Any]], runs: pd.DataFrame, summary: pd.DataFrame) -> pd.DataFrame:
    """One row per run, probe and scored setting (docs/tables.md): the run's identity and swept keys,
    the probe's name and eval shapes (`probe_<field>`), its scores; `format` stays the trained format
    (the scored one is `scored_format`), `force` reads `free` when nothing was forced, `cot_demos`
    counts the demonstrations that keep their CoT (K - 1 - drop_k), `n_eval` the rows scored and
    `lift_max` is the run's (from the summary: did training learn anything, for the claims)."""
    parts = []
    for probe in probes:
        path = probe["files"]["scores"]
        if not Path(path).is_file():
            raise ConfigError(f"{path}: not found (run probe {probe['key']} of {probe['run_id']} first)")
        shapes = {f"probe_{k}": _scalar(probe["data"][k]) for k in SHAPE_FIELDS}
        scores = pd.read_parquet(path).drop(columns=["run_id", "trained_format"], errors="ignore")
        parts.append(scores.rename(columns={"format": "scored_format"}).assign(
            run_id=probe["run_id"], probe=probe["probe"], **shapes))
    table = pd.concat(parts, ignore_index=True)
    table["force"] = table["force"].replace("", "free")
    table["cot_demos"] = table["probe_n_examples"] - 1 - table["drop_k"]
    table["n_eval"] = table["n"]
    swept = [c for c in runs.columns if c not in (*IDENTITY_COLUMNS, "data", "train", "coverage")]
    ident = flatten_runs(runs)[[*CURVE_IDENTITY, *swept]]
    table = ident.merge(table, on="run_id", how="inner").merge(summary[["run_id", "lift_max"]], on="run_id", how="left")
    return without_empty_columns(table)


def _scalar(value: Any) -> Any:
    """A probe's shape as a table cell: a choice list as its text ("[3, 4]"), a number as it is."""
    return str(value) if isinstance(value, list) else value


def train_coverage(runs: list[dict[str, Any]], n: int = 10_000) -> list[float]:
    """TokenCoverage (cov_chain) of the first n rows of each run's train split (docs/data.md,
    default n = 10,000); fig_activation puts it in its panel titles."""
    by_path: dict[str, float] = {}
    for path in dict.fromkeys(run["files"]["train_data"] for run in runs):
        dataset = open_dataset(path, verify=False)  # verified when training read it; only 10k rows here
        by_path[path] = token_coverage(dataset.read(0, min(n, dataset.n_rows)), dataset.config.n_usable)["cov_chain"]
    return [by_path[run["files"]["train_data"]] for run in runs]


def models_table(card: dict[str, Any]) -> pd.DataFrame:
    """tab_models at the card's scale: its models (their sizes at this scale) x its vocabulary sizes."""
    sizes = [card["model_sizes"].get(m, m) for m in card["models"]]
    vocab = card["sweep"].get("vocab_size") or [card["data"].get("vocab_size", DataConfig().vocab_size)]
    return model_table(sizes, [int(v) for v in vocab])


# ----------------------------------------------------------------------------- entry points

def aggregate_card(plan: dict[str, Any], tables: dict[str, str | Path], png_out: str | Path | None = None
                   ) -> list[str]:
    """Write a card's tables (and figure, when `png_out` is given) from its plan (`cotlab.jobs`): the
    card at a scale and the files of its runs or points. `tables`: {"curves", "summary"} paths for a
    training card, {"table"} for the others. Returns the files written."""
    card, kind = plan["card"], plan["card"]["kind"]
    plot = card["plot"]
    extra: dict[str, Any] = {}
    if kind == "runs":
        if not plan["runs"]:
            fail("experiment", card["id"], f"has no runs at scale {card['scale']}")
        curves, finals, maps = read_results(plan["runs"])
        runs = run_frame(plan["runs"], card["scale"]).assign(coverage=train_coverage(plan["runs"]))
        curve_table, summary, table = aggregate_runs(runs, curves, finals, plot)
        written = {"curves": curve_table, "summary": summary}
        extra = {"maps": maps}
        if plan.get("probes"):
            written["probes"] = probes_table(plan["probes"], runs, summary)
            if plot.get("kind") == "probes":  # the figure draws the probes, not the training curves
                table = written["probes"]
                check_plot_columns(table, {**plot, "kind": "curves"})
            elif plot.get("kind") == "headline":
                written["table"] = headline_table(written["probes"])
    else:
        if kind == "coverage":
            table = coverage_table(plan["points"])
        elif kind == "data" and plot.get("kind") == "recipe":
            table = recipe.recipe_table(plan["points"])
        elif kind == "data" and plot.get("kind") == "sequence":
            table = sequence.sequence_table(plan["points"])
        elif kind == "data":
            table, extra = teaser_table(plan["points"])
        elif kind == "models":
            table = models_table(card)
        else:  # hparams: the rows were resolved when the workflow planned
            table = pd.DataFrame(plan["rows"])
        written = {"table": table.assign(scale=card["scale"])}
    for name, frame in written.items():
        write_csv(frame, tables[name])
    out = [str(tables[name]) for name in written]
    if png_out is not None and card["figure"] and plot.get("kind") != "table":
        out += draw(table, {**plot, "note": card.get("note")}, png_out, **extra)
    print(f"{card['id']} at scale {card['scale']} ({card['title']}): " + ", ".join(out))
    return out


def aggregate_claims(tables: dict[str, dict[str, str | Path]], out: str | Path) -> pd.DataFrame:
    """claims.csv from one scale's training-card tables ({card: {"summary": csv, "curves": csv} and
    "probes": csv for a card that probes}); claims of cards not given are "not run"."""
    def read(kind: str) -> dict[str, pd.DataFrame]:
        return {card: pd.read_csv(paths[kind]) for card, paths in tables.items() if kind in paths}

    claims = evaluate_claims(read("summary"), read("curves"), read("probes"))
    write_csv(claims, out)
    print(claims[["claim", "verdict"]].to_string(index=False))
    return claims


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
    """By hand, outside the workflow: plan the card as the workflow would, then aggregate it; or
    recompute the claims from the tables of one scale."""
    scale = args.scale or default_scale(args.config_dir)
    layout = Layout(scale, args.results)
    if args.experiment == "claims":
        tables = {card: {kind: path for kind, path in layout.card_tables(card, trains=True, probes=True).items()
                         if kind != "probes" or Path(path).is_file()}
                  for card in dict.fromkeys(c.card for c in CLAIMS)}
        found = {card: paths for card, paths in tables.items() if all(Path(p).is_file() for p in paths.values())}
        if not found:
            fail("scale", scale, f"has no card tables under {Path(layout.table('x')).parent}; run the "
                 "workflow (or `cotlab aggregate CARD`) at this scale first")
        aggregate_claims(found, layout.claims())
        return 0
    jobs = workflow_jobs([args.experiment], scale, args.config_dir, args.results)
    png = layout.figure(args.experiment) if jobs.cards[args.experiment].figure else None
    aggregate_card(jobs.plan(args.experiment), jobs.tables_of(args.experiment), png)
    return 0
