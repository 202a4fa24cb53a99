"""Attention maps and attention-to-parent precision (fig_attention; analysis.attention).

One column per H/DAG regime of fig_diversity (the CoT runs):
- top rows: the final model's C x (N+C-1) query attention map for the shallowest and the deepest
  model (share of the row predicting y_c on each visible token; averaged over sequences under a
  fixed DAG, sequence 0 otherwise), then the true adjacency, parent cells outlined in every map;
- bottom rows: the plot spec's y metrics vs step (parent_prec with its chance line, answer_acc with
  the majority baseline), colour = model.
An extra right-hand column, when the table has fig_parents' runs: final parent_prec vs M.
"""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.patches import Rectangle

from cotlab.figures import theme
from cotlab.formats import FORMATS
from cotlab.figures.curves import (Encoding, facet_values, reference_handles, reference_lines, select,
                                   size_labels, style_axis)


def heatmap(ax: plt.Axes, values: np.ndarray, adjacency: np.ndarray, n_inputs: int, title: str):
    """A C x S map (NaN = invisible cell) with the true parents outlined; returns the image."""
    C, S = values.shape
    image = ax.imshow(np.ma.masked_invalid(values), cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto")
    for c, s in zip(*np.nonzero(adjacency)):
        ax.add_patch(Rectangle((s - 0.5, c - 0.5), 1, 1, fill=False, edgecolor=theme.PARENT_EDGE, linewidth=1.4))
    ax.set_xticks(range(S), [f"x{j + 1}" if j < n_inputs else f"y{j - n_inputs + 1}" for j in range(S)], fontsize=6)
    ax.set_yticks(range(C), [f"y{c + 1}" for c in range(C)], fontsize=6)
    ax.set_title(title, fontsize=7)
    ax.grid(False)
    return image


def draw(table: pd.DataFrame, plot: dict[str, Any], out_png: str, maps: dict[str, dict[str, np.ndarray]]) -> list[str]:
    theme.apply()
    col = plot.get("col") or "regime"
    ys = plot["y"] if isinstance(plot.get("y"), list) else [plot.get("y") or "parent_prec"]
    refs = list(plot.get("refs") or []) + ["majority_baseline"]
    # runs whose attention maps are defined
    cot = table[table["format"].map(lambda f: FORMATS[f].parent_attention)] if "format" in table else table
    regimes = cot[cot[col].notna()] if col in cot else cot.iloc[0:0]
    col_values = facet_values(regimes, col) if len(regimes) else []
    by_m = cot[cot[col].isna()] if col in cot else cot
    models = facet_values(regimes if len(regimes) else cot, "model")
    shown = [models[0], models[-1]] if len(models) > 1 else models[:1]
    labels = size_labels(cot)
    n_cols = max(1, len(col_values)) + (1 if len(by_m) else 0)
    n_rows = len(shown) + 1 + len(ys)
    height = 1.45 * (len(shown) + 1) + theme.ROW_HEIGHT_IN * len(ys)  # map rows are shorter
    fig, axes = plt.subplots(n_rows, n_cols, squeeze=False, layout="constrained",
                             figsize=(theme.COLUMN_WIDTH_IN * n_cols + 1.4, height))
    enc = Encoding.of(cot, {"hue": "model"})
    image = None
    for j, value in enumerate(col_values):
        runs = select(regimes, **{col: value})
        for i, model in enumerate(shown):
            ax = axes[i, j]
            run_ids = select(runs, model=model)["run_id"].unique()
            arrays = maps.get(run_ids[0]) if len(run_ids) else None
            if arrays is None or np.isnan(arrays["map"]).all():
                ax.set_axis_off()
                continue
            n_inputs = int(select(runs, model=model)["n_inputs"].iloc[0])
            title = theme.value_label("model", labels.get(model, model))
            if i == 0:
                title = f"{theme.facet_title(col, value)}\n{title}"
            image = heatmap(ax, arrays["map"], arrays["adjacency"], n_inputs, title)
        ax = axes[len(shown), j]
        first = next((maps[r] for r in runs["run_id"].unique() if r in maps), None)
        if first is None:
            ax.set_axis_off()
        else:
            truth = np.where(first["adjacency"], 1.0, 0.0)
            truth[np.isnan(first["map"])] = np.nan
            heatmap(ax, truth, first["adjacency"], int(runs["n_inputs"].iloc[0]), "true parents")
        for i, y in enumerate(ys, start=len(shown) + 1):
            ax = axes[i, j]
            enc.lines(ax, runs, "step", y)
            reference_lines(ax, runs, y, refs)
            ax.set_xlabel(theme.label("step") if i == n_rows - 1 else "")
            ax.set_ylabel(theme.label(y) if j == 0 else "")
            style_axis(ax, y, x="step")
    if len(by_m):
        draw_precision_vs_parents(axes[:, -1], by_m, enc, len(shown) + 1)
    if image is not None:  # in the empty top cell of the M column when there is one
        where = {"cax": axes[0, -1].inset_axes([0.05, -0.6, 0.06, 1.5])} if len(by_m) \
            else {"ax": axes[: len(shown) + 1, :].ravel().tolist(), "shrink": 0.8}
        fig.colorbar(image, label="attention share\n(renormalised)", **where)
    handles = enc.handles(labels) + reference_handles(refs, ys, cot)
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.3), frameon=False)
    return theme.save(fig, out_png, plot.get("note"))


def draw_precision_vs_parents(column: np.ndarray, runs: pd.DataFrame, enc: Encoding, first_row: int) -> None:
    """Final parent_prec vs M (fig_parents' CoT runs) with the chance line, in the last column."""
    for ax in column[:first_row]:
        ax.set_axis_off()
    ax = column[first_row]
    last = runs.sort_values("step").groupby("run_id", sort=False).tail(1)
    has_final = "parent_prec_final" in last and last["parent_prec_final"].notna().any()
    value = "parent_prec_final" if has_final else "parent_prec"
    enc.lines(ax, last, "n_parents", value)
    chance = last.groupby("n_parents")["parent_prec_chance"].mean()
    ax.plot(chance.index, chance.to_numpy(), **theme.CHANCE_STYLE)
    ax.set_xlabel(theme.label("n_parents"))
    ax.set_ylabel("final " + theme.label("parent_prec"))
    ax.set_title("precision vs M (pool of 100 H)")
    style_axis(ax, "parent_prec", x="n_parents")
    for ax in column[first_row + 1:]:
        ax.set_axis_off()
