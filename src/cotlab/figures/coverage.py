"""TokenCoverage (fig_token_coverage; docs/data.md): which share of the vocabulary the chains reach.

The table has one row per (grid point, prefix n of its train split) with the metrics of
`cotlab coverage` (cov_chain, cov_ans, answer entropy, majority baselines) plus the point's swept
values; `coverage` = cov_chain. Prefixes 100, 1,000, ... n_cov draw the TC-vs-n panel.

Figure, three panels: TC vs V (depth 1; colour = activation, solid = chain tokens, dashed =
answers), TC vs n at the largest V (log x), TC vs processor depth at the largest V; seeds are
averaged with a ±1 sd band.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.lines import Line2D

from cotlab.config import ConfigError, read_json
from cotlab.figures import theme
from cotlab.figures.curves import facet_values, select

def coverage_table(points: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per (point, prefix n): the `cotlab coverage` reports (n<N>.json) that the coverage
    stage wrote into each plan point's `files["coverage"]` directory."""
    rows = []
    for point in points:
        reports_dir = Path(point["files"]["coverage"])
        paths = sorted(reports_dir.glob("n*.json"))
        if not paths:
            raise ConfigError(f"{reports_dir}: no n<N>.json reports (run the coverage stage first)")
        for report in (read_json(p) for p in paths):
            rows.append({"data_id": point["data_id"], **point["values"], "seed": point["seed"],
                         **{k: point["data"][k] for k in ("vocab_size", "activation", "h_num_layers")},
                         **{k: v for k, v in report.items() if k not in ("path", "split")},
                         "coverage": report["cov_chain"]})
    return pd.DataFrame(rows).sort_values(["vocab_size", "activation", "h_num_layers", "seed", "n"],
                                          kind="stable", ignore_index=True)


def draw(table: pd.DataFrame, plot: dict[str, Any], out_png: str) -> list[str]:
    theme.apply()
    hue = plot.get("hue") or "activation"
    hue_values = facet_values(table, hue)
    palette = theme.palette(hue, hue_values)
    full = table.loc[table.groupby("data_id")["n"].transform("max") == table["n"]]
    largest_v = table["vocab_size"].max()
    min_depth = table["h_num_layers"].min()
    fig, axes = plt.subplots(1, 3, figsize=(theme.COLUMN_WIDTH_IN * 3 + 1.4, theme.ROW_HEIGHT_IN + 0.2))

    panels = [
        (axes[0], select(full, h_num_layers=min_depth), "vocab_size", f"processor depth L = {min_depth}"),
        (axes[1], select(table, vocab_size=largest_v, h_num_layers=min_depth), "n",
         f"V = {largest_v}, L = {min_depth}"),
        (axes[2], select(full, vocab_size=largest_v), "h_num_layers", f"V = {largest_v}"),
    ]
    for ax, data, x, title in panels:
        for y, dashes in (("cov_chain", ""), ("cov_ans", (4, 2))):
            sns.lineplot(data=data, x=x, y=y, hue=hue, hue_order=hue_values, palette=palette, ax=ax,
                         errorbar="sd", legend=False, marker="o", markersize=3, dashes=False,
                         **({"linestyle": "--"} if dashes else {}))
        ax.set_xlabel(theme.label("n_cov" if x == "n" else x))
        ax.set_ylabel(theme.label("coverage") if ax is axes[0] else "")
        ax.set_title(title)
        ax.set_ylim(-0.02, 1.02)
        if x in ("vocab_size", "n"):  # log axis, ticks at the measured values only
            ax.set_xscale("log", base=2 if x == "vocab_size" else 10)
            ticks = sorted(data[x].unique())
            ax.set_xticks(ticks, [f"{t:,}" for t in ticks])
            ax.minorticks_off()
        if x == "h_num_layers":
            ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    handles = [Line2D([], [], color=palette[v], label=str(v)) for v in hue_values]
    handles += [Line2D([], [], color="0.2", label="chain tokens (TC)"),
                Line2D([], [], color="0.2", linestyle="--", label="answers (TC_ans)")]
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False,
               title=theme.label(hue))
    fig.tight_layout()
    return theme.save(fig, out_png, plot.get("note"))
