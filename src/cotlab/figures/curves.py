"""Learning curves on a grid of facets: the accuracy, loss and similarity figures of paper 1.

One facet per (row value, column value); in each, one line per (hue, style) group, e.g. colour =
model and solid CoT / dashed standard. Runs that differ only by seed are averaged, with a 95% t band
across seeds; a single seed draws the 95% Wilson band of its eval set (`<y>_lo`, `<y>_hi`) where the
table has one. Reference lines per facet (the card's `refs`): `majority_baseline` draws the two
trivial accuracies of the eval set, the in-context majority (grey dotted) and the global majority
(grey dashed); `chance` (grey dash-dot) comes from a `<y>_chance` column: d/V for embed_sim, the
parent chance for parent_prec.

Plot spec (cotlab.card_schema.PlotSpec): x, y (a column, or a list drawn as one facet row each),
hue, style, col, row, refs, logx. Whenever the table has a `format` column, the line style follows
the format (CoT solid, standard dashed), even if the card colours by format too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.lines import Line2D

from cotlab.analysis.tables import model_order, seed_interval
from cotlab.figures import theme

ACCURACY_COLUMNS = ("answer_acc", "acc_final", "acc_max", "acc_auc")


def facet_values(table: pd.DataFrame, column: str | None) -> list:
    """Sorted distinct values of a column ([None] when there is no such column)."""
    if not column or column not in table:
        return [None]
    values = table[column].dropna().unique().tolist()
    if column == "model":
        return model_order(values)
    return sorted(values, key=lambda v: (0, v, "") if isinstance(v, (int, float, np.number)) else (1, 0, str(v)))


def select(table: pd.DataFrame, **equal: Any) -> pd.DataFrame:
    """Rows whose columns equal the given values (an empty column name or a None value is no filter)."""
    keep = np.ones(len(table), bool)
    for column, value in equal.items():
        if column and value is not None and column in table:
            keep &= (table[column] == value).to_numpy()
    return table[keep]


@dataclass
class Encoding:
    """How groups of lines look: colour by `hue`, dashes by `style` (format whenever present)."""

    hue: str | None
    style: str | None
    hue_values: list
    style_values: list
    title: str | None  # legend header naming what is fixed, e.g. the only model

    @classmethod
    def of(cls, table: pd.DataFrame, plot: dict[str, Any]) -> Encoding:
        hue = plot.get("hue") if plot.get("hue") in table else None
        style = plot.get("style") if plot.get("style") in table else None
        if "format" in table and style is None:
            style = "format"  # solid CoT / dashed standard in every figure
        title = None
        if hue != "model" and "model" in table and table["model"].nunique() == 1:
            title = theme.value_label("model", table["size"].iloc[0] if "size" in table else table["model"].iloc[0])
        return cls(hue, style, facet_values(table, hue) if hue else [], facet_values(table, style) if style else [],
                   title)

    @property
    def palette(self) -> dict:
        return theme.palette(self.hue, self.hue_values) if self.hue else {}

    @property
    def dashes(self) -> dict:
        if self.style == "format":
            return {v: theme.FORMAT_DASHES.get(v, (2, 2)) for v in self.style_values}
        cycle = ["", (4, 1.5), (1, 1), (3, 1.25, 1.5, 1.25), (5, 1, 1, 1)]
        return {v: cycle[i % len(cycle)] for i, v in enumerate(self.style_values)}

    def lines(self, ax: plt.Axes, data: pd.DataFrame, x: str, y: str) -> None:
        """One seaborn line per (hue, style) group: the mean over seeds with a 95% band (module docstring)."""
        data = data.dropna(subset=[y])
        if data.empty:
            return
        groups = [c for c in dict.fromkeys((self.hue, self.style)) if c]
        replicated = "seed" in data and data.groupby([*groups, x])["seed"].nunique().max() > 1
        sns.lineplot(data=data, x=x, y=y, ax=ax, legend=False, errorbar=seed_interval if replicated else None,
                     hue=self.hue, hue_order=self.hue_values or None, palette=self.palette or None,
                     style=self.style, style_order=self.style_values or None,
                     dashes=self.dashes if self.style else True,
                     color=None if self.hue else "0.15")
        if not replicated and {f"{y}_lo", f"{y}_hi"} <= set(data):
            for key, group in data.groupby(groups) if groups else [((), data)]:
                hue_value = group[self.hue].iloc[0] if self.hue else None
                group = group.sort_values(x)
                ax.fill_between(group[x], group[f"{y}_lo"], group[f"{y}_hi"], alpha=0.15, linewidth=0,
                                color=self.palette.get(hue_value, "0.15") if self.hue else "0.15")

    def handles(self, labels_of: dict[str, str] | None = None) -> list[Line2D]:
        """Legend entries: a colour per hue value and a dash per style value (one entry each
        when both encode the same column); `labels_of` maps model names to sizes for labels."""
        labels_of = labels_of or {}
        out = [Line2D([], [], linestyle="", label=self.title)] if self.title else []
        palette, dashes = self.palette, self.dashes
        for value in self.hue_values:
            line = Line2D([], [], color=palette[value],
                          label=theme.value_label(self.hue, labels_of.get(value, value)))
            if self.hue == self.style and dashes.get(value):
                line.set_dashes(dashes[value])
            out.append(line)
        if self.style and self.style != self.hue:
            for value in self.style_values:
                line = Line2D([], [], color="0.2", label=theme.value_label(self.style, value))
                if dashes[value]:
                    line.set_dashes(dashes[value])
                out.append(line)
        return out


def size_labels(table: pd.DataFrame) -> dict[str, str]:
    """Card model name -> the size actually trained (smoke scale: tf4 -> smoke-tf4)."""
    if "size" not in table or "model" not in table:
        return {}
    return dict(zip(table["model"], table["size"]))


BASELINES = (("majority_baseline", "in-context majority", theme.BASELINE_STYLE),
             ("global_majority_baseline", "global majority", theme.GLOBAL_BASELINE_STYLE))


def reference_lines(ax: plt.Axes, data: pd.DataFrame, y: str, refs: list[str]) -> None:
    """The facet's two majority baselines (accuracy axes) and chance level (`<y>_chance` column)."""
    if "majority_baseline" in refs and y in ACCURACY_COLUMNS:
        for column, _, style in BASELINES:
            baseline = data[column].dropna() if column in data else data.iloc[0:0]
            if len(baseline):
                ax.axhline(float(baseline.mean()), **style)
    if "chance" in refs and f"{y}_chance" in data:
        chance = data[f"{y}_chance"].dropna()
        if len(chance):
            ax.axhline(float(chance.mean()), **theme.CHANCE_STYLE)


def reference_handles(refs: list[str], ys: list[str], table: pd.DataFrame) -> list[Line2D]:
    out = []
    if "majority_baseline" in refs and any(y in ACCURACY_COLUMNS for y in ys):
        out += [Line2D([], [], label=label, **style) for column, label, style in BASELINES if column in table]
    if "chance" in refs and any(f"{y}_chance" in table for y in ys):
        out.append(Line2D([], [], label="chance", **theme.CHANCE_STYLE))
    return out


def style_axis(ax: plt.Axes, y: str, logx: bool = False, x: str | None = None) -> None:
    """Fractions on a fixed 0-1 axis (comparable across panels); whole steps on step axes."""
    if y in ACCURACY_COLUMNS or y.startswith("chain_acc") or y in ("embed_sim", "parent_prec", "parent_mass"):
        ax.set_ylim(-0.02, 1.02)
    if logx:
        ax.set_xscale("log")
    elif x in ("step", "seqs_seen", "tokens_seen", "n_parents", "position"):
        ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))


def draw(table: pd.DataFrame, plot: dict[str, Any], out_png: str) -> list[str]:
    """Draw the card's facet grid from a long table (one row per run x eval step) into PNG + PDF."""
    theme.apply()
    x = plot.get("x") or "step"
    ys = plot["y"] if isinstance(plot.get("y"), list) else [plot.get("y") or "answer_acc"]
    col, row = plot.get("col"), plot.get("row")
    refs = list(plot.get("refs") or [])
    if len(ys) > 1 and row:
        raise ValueError(f"plot spec: y={ys} draws one row per metric, so row={row!r} must be empty")
    enc = Encoding.of(table, plot)
    col_values, row_values = facet_values(table, col), facet_values(table, row)
    grid = [(y, r) for y in ys for r in row_values]
    fig, axes = plt.subplots(len(grid), len(col_values), squeeze=False, sharex=True, sharey="row",
                             figsize=(theme.COLUMN_WIDTH_IN * len(col_values) + 1.4, theme.ROW_HEIGHT_IN * len(grid)))
    for i, (y, row_value) in enumerate(grid):
        for j, col_value in enumerate(col_values):
            ax = axes[i, j]
            data = select(table, **{col or "": col_value, row or "": row_value})
            enc.lines(ax, data, x, y)
            reference_lines(ax, data, y, refs)
            titles = [theme.facet_title(c, v) for c, v in ((row, row_value), (col, col_value)) if v is not None]
            if col == "activation" and "coverage" in data and data["coverage"].notna().any():
                titles.append(f"TC {data['coverage'].mean():.2f}")  # difficulty follows TokenCoverage
            ax.set_title(", ".join(titles) if i == 0 or row_value is not None else "")
            ax.set_xlabel(theme.label(x) if i == len(grid) - 1 else "")
            ax.set_ylabel(theme.label(y) if j == 0 else "")
            style_axis(ax, y, plot.get("logx", False), x)
    handles = enc.handles(size_labels(table)) + reference_handles(refs, ys, table)
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.tight_layout()
    return theme.save(fig, out_png, plot.get("note"))
