"""Accuracy at each chain position (fig_chain_positions): does accuracy fall along the chain?

Row 1, one panel per chain length C: the final accuracy of each generated chain token y_c (the
CoT evaluation of the final model, with its 95% Wilson interval) against c, one line per model.
Row 2: chain_acc of every position vs step, colour = position (light = early, dark = y_C), line
style = model.
"""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.lines import Line2D

from cotlab.figures import theme
from cotlab.formats import FORMATS
from cotlab.figures.curves import facet_values, select, size_labels, style_axis


def final_positions(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, position c): final accuracy `chain_acc` with `lo`/`hi` (NaN if no CI).

    Taken from the final CoT evaluation (`with_cot_chain_acc_<i>`) when the table has it, else the
    mean of the last 3 evals of the curve (as acc_final).
    """
    rows = []
    for run_id, curve in table.groupby("run_id", sort=False):
        curve = curve.sort_values("step") if "step" in curve else curve
        first = curve.iloc[0]
        for c in range(1, int(first["chain_length"]) + 1):
            final = f"with_cot_chain_acc_{c - 1}"
            if final in curve and pd.notna(first[final]):
                acc, lo, hi = first[final], first.get(f"{final}_lo"), first.get(f"{final}_hi")
            else:
                acc, lo, hi = curve[f"chain_acc_{c - 1}"].tail(3).mean(), float("nan"), float("nan")
            rows.append({"run_id": run_id, "model": first["model"], "size": first.get("size", first["model"]),
                         "chain_length": int(first["chain_length"]), "position": c, "chain_acc": acc,
                         "lo": lo, "hi": hi})
    return pd.DataFrame(rows)


def draw(table: pd.DataFrame, plot: dict[str, Any], out_png: str) -> list[str]:
    theme.apply()
    col = plot.get("col") or "chain_length"
    # runs that generate the chain
    cot = table[table["format"].map(lambda f: FORMATS[f].with_cot)] if "format" in table else table
    finals = final_positions(cot)
    col_values = facet_values(cot, col)
    models = facet_values(cot, "model")
    labels = size_labels(cot)
    fig, axes = plt.subplots(2, len(col_values), squeeze=False,
                             figsize=(theme.COLUMN_WIDTH_IN * len(col_values) + 1.4, theme.ROW_HEIGHT_IN * 2 + 0.3))
    for j, value in enumerate(col_values):
        ax = axes[0, j]
        for model in models:
            data = select(finals, **{col: value, "model": model}).sort_values("position")
            color = theme.model_color(model)
            ax.plot(data["position"], data["chain_acc"], marker="o", markersize=3, color=color)
            if data["lo"].notna().any():
                ax.fill_between(data["position"], data["lo"], data["hi"], color=color, alpha=0.15, linewidth=0)
        ax.set_title(theme.facet_title(col, value))
        ax.set_xlabel(theme.label("position"))
        ax.set_ylabel("final chain-token accuracy (fraction)" if j == 0 else "")
        style_axis(ax, "chain_acc", x="position")

        ax = axes[1, j]
        curves = select(cot, **{col: value})
        C = int(value) if col == "chain_length" else int(curves["chain_length"].max())
        shades = sns.color_palette("crest", C)
        for m, model in enumerate(models):
            runs = select(curves, model=model)
            for i in range(C):
                line = sns.lineplot(data=runs, x="step", y=f"chain_acc_{i}", ax=ax, color=shades[i],
                                    errorbar="sd", legend=False)
                if m:  # deeper models dashed, so colour stays the position
                    line.lines[-1].set_dashes((4, 1.5 + m))
        ax.set_xlabel(theme.label("step"))
        ax.set_ylabel("chain-token accuracy (fraction)" if j == 0 else "")
        style_axis(ax, "chain_acc", x="step")
    max_c = int(cot["chain_length"].max())
    shades = sns.color_palette("crest", max_c)
    handles = [Line2D([], [], color=theme.model_color(m), marker="o", markersize=3,
                      label=theme.value_label("model", labels.get(m, m))) for m in models]
    handles += [Line2D([], [], color=shades[i], label=f"y_{i + 1}" + (" (answer)" if i == max_c - 1 else ""))
                for i in range(max_c)]
    for m, model in enumerate(models[1:], start=1):
        line = Line2D([], [], color="0.2", label=f"{theme.value_label('model', labels.get(model, model))} (row 2)")
        line.set_dashes((4, 1.5 + m))
        handles.append(line)
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.tight_layout()
    return theme.save(fig, out_png, plot.get("note"))
