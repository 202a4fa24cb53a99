"""The CoT-Recipe (p2_fig_recipe): how much CoT each α puts into a hybrid training split.

Left: r_CoT = min(scale·x^α + p0, p1) against x = slot/n, one line per α (the recipe as defined).
Right: the share of sequences with k CoT examples, k = 0..K, measured on the card's generated train
split as training renders it (`cotlab.data.prompts.cot_examples`: the recipe at each row's slot of
the keyed permutation, against the row's stored coins).

The table has one row per (α, k): the number and share of sequences with k CoT examples, and per α
the measured mean CoT share of all examples beside the expected one, the mean of r_CoT over the
split's slots (1/(α+1) for the released recipes as n grows).
"""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from cotlab.config import ConfigError, build
from cotlab.data.prompts import cot_examples, recipe_probability
from cotlab.data.store import open_dataset
from cotlab.figures import theme
from cotlab.formats import PromptConfig, RecipeConfig

CURVE_POINTS = 201  # x samples of the r_CoT panel


def recipe_table(points: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per (α, CoT examples k) from each point's train split (module docstring)."""
    if not points:
        raise ConfigError("points=[]: p2_fig_recipe needs one grid point per α")
    records = []
    for point in points:
        prompt = build(PromptConfig, point["train"].get("prompt", {}), prefix="train.prompt.")
        if prompt.recipe is None:
            raise ConfigError(f"{point['values']}: train.prompt needs format hybrid_special_token with a recipe")
        dataset = open_dataset(point["files"]["train_data"], verify=False)
        n = dataset.n_rows
        rows = dataset.read(0, n)
        cot = cot_examples(rows, prompt, n, dataset.config.seed)  # (n, K) bool
        counts = np.bincount(cot.sum(axis=1), minlength=cot.shape[1] + 1)
        expected = float(recipe_probability(np.arange(n), n, prompt.recipe).mean())
        for k, count in enumerate(counts):
            records.append({"alpha": prompt.recipe.alpha, "cot_examples": k, "n_sequences": int(count),
                            "share_of_sequences": count / n, "mean_cot_share": float(cot.mean()),
                            "expected_cot_share": expected, "recipe_scale": prompt.recipe.scale,
                            "recipe_p0": prompt.recipe.p0, "recipe_p1": prompt.recipe.p1,
                            "n_rows": n, "n_examples": cot.shape[1],
                            "data_id": point["data_id"]})
    return pd.DataFrame(records)


def draw(table: pd.DataFrame, plot: dict[str, Any], out_png: str) -> list[str]:
    theme.apply()
    alphas = sorted(table["alpha"].unique())
    colors = theme.palette("alpha", alphas)
    fig, (left, right) = plt.subplots(1, 2, figsize=(2 * theme.COLUMN_WIDTH_IN + 1.6, theme.ROW_HEIGHT_IN + 0.4))
    slots = np.arange(CURVE_POINTS)  # x = slot / (CURVE_POINTS - 1) covers [0, 1]
    for alpha in alphas:
        rows = table[table["alpha"] == alpha]
        first = rows.iloc[0]
        recipe = RecipeConfig(alpha=alpha, scale=first["recipe_scale"], p0=first["recipe_p0"], p1=first["recipe_p1"])
        label = f"α = {alpha:g}: CoT share {first['mean_cot_share']:.3f} (expected {first['expected_cot_share']:.3f})"
        left.plot(slots / (CURVE_POINTS - 1), recipe_probability(slots, CURVE_POINTS - 1, recipe), color=colors[alpha],
                  label=label)
        right.plot(rows["cot_examples"], rows["share_of_sequences"], marker="o", markersize=3, color=colors[alpha])
    left.set(xlabel="row slot / n (x)", ylabel="r_CoT (probability an example is CoT)", ylim=(-0.02, 1.02))
    left.set_title("CoT-Recipe: r_CoT = min(x^α + p0, p1)")
    right.set(xlabel="CoT examples in a sequence", ylabel="share of sequences")
    right.set_title(f"measured on the train split (n = {int(table['n_rows'].iloc[0]):,})")
    fig.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.tight_layout()
    return theme.save(fig, out_png, plot.get("note"))
