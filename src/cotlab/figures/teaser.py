"""Figure 1 (fig_teaser): CoT in-context learning in words, and one sampled CoT-ICL Lab sequence.

Left: a natural-language CoT ICL prompt as static text (demonstrations with their reasoning, then
a query). Right: sequence 0 of the card's generated train split, one row per example (K-1 CoT
demonstrations and the query), each token a box with its id; arrows draw the DAG edges into the
chain tokens y_c (the same DAG and token processors H_c serve every example). The table lists
the tokens and each chain token's parents.
"""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from cotlab.config import ConfigError
from cotlab.data.store import open_dataset
from cotlab.figures import theme

NATURAL_LANGUAGE = (
    "Q: Ann runs faster than Bob. Bob runs faster than Cy.\n   Who is fastest?\n"
    "A: Ann beats Bob, Bob beats Cy,\n   so Ann beats everyone. Ann.\n\n"
    "Q: A pig weighs more than a cat. A cat weighs\n   more than a mouse. Which is heaviest?\n"
    "A: pig > cat > mouse, so the pig.\n\n"
    "Q: Dee swims faster than Eve. Eve swims faster\n   than Flo. Who is fastest?\n"
    "A: ?"
)


def node_name(node: int, n_inputs: int) -> str:
    """DAG node id -> x_j / y_c (docs/data.md conventions: node j < N is x_{j+1}, N+c-1 is y_c)."""
    return f"x{node + 1}" if node < n_inputs else f"y{node - n_inputs + 1}"


def teaser_table(points: list[dict[str, Any]]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Tokens of sequence 0 of the first plan point's train split: one row per (example, token),
    with parents."""
    if not points:
        raise ConfigError("points=[]: a data card needs one grid point")
    dataset = open_dataset(points[0]["files"]["train_data"])
    rows = dataset.read(0, 1)
    inputs, chain, dag = rows.inputs[0], rows.chain[0], rows.dag[0]  # (K, N), (K, C), (C, M)
    K, N = inputs.shape
    C = chain.shape[1]
    records = []
    for k in range(K):
        role = "query" if k == K - 1 else f"demo {k + 1}"
        for j in range(N):
            records.append({"example": k + 1, "role": role, "token": f"x{j + 1}", "id": int(inputs[k, j]),
                            "parents": ""})
        for c in range(C):
            records.append({"example": k + 1, "role": role, "token": f"y{c + 1}", "id": int(chain[k, c]),
                            "parents": " ".join(node_name(int(p), N) for p in dag[c])})
    table = pd.DataFrame(records).assign(data_id=points[0]["data_id"], vocab_size=dataset.config.vocab_size,
                                         activation=dataset.config.activation)
    return table, {"dag": np.asarray(dag), "n_inputs": N, "chain_length": C}


def draw(table: pd.DataFrame, plot: dict[str, Any], out_png: str, dag: np.ndarray, n_inputs: int,
         chain_length: int) -> list[str]:
    theme.apply()
    fig, (left, right) = plt.subplots(1, 2, figsize=(9.0, 3.2), gridspec_kw={"width_ratios": [1, 1.5]})
    left.set_axis_off()
    left.text(0.0, 1.0, NATURAL_LANGUAGE, va="top", ha="left", family="monospace", fontsize=7)
    left.set_title("CoT in-context learning, in words", fontsize=9)

    right.set_axis_off()
    examples = sorted(table["example"].unique())
    width = n_inputs + chain_length
    colors = {"x": theme.MODEL_COLORS["tf4"], "y": theme.MODEL_COLORS["tf8"]}
    for row, k in enumerate(examples):
        tokens = table[table["example"] == k]
        y = len(examples) - 1 - row
        right.text(-0.7, y, tokens["role"].iloc[0], ha="right", va="center", fontsize=7)
        for col, (_, tok) in enumerate(tokens.iterrows()):
            query_answer = k == examples[-1] and tok["token"].startswith("y")
            right.add_patch(FancyBboxPatch((col - 0.42, y - 0.3), 0.84, 0.6, boxstyle="round,pad=0.02",
                                           facecolor="white" if query_answer else colors[tok["token"][0]],
                                           edgecolor=colors[tok["token"][0]], alpha=0.9))
            right.text(col, y, "?" if query_answer else str(tok["id"]), ha="center", va="center", fontsize=6,
                       color="0.2" if query_answer else "white")
            if row == 0:
                right.text(col, len(examples) - 0.45, tok["token"], ha="center", va="bottom", fontsize=7)
    y = 0  # DAG edges on the query row: parents -> y_c
    for c in range(chain_length):
        for parent in dag[c]:
            right.add_patch(FancyArrowPatch((int(parent), y - 0.3), (n_inputs + c, y - 0.3),
                                            connectionstyle="arc3,rad=0.45", arrowstyle="-|>", mutation_scale=6,
                                            color=theme.PARENT_EDGE, linewidth=0.8))
    right.set_xlim(-2.2, width)
    right.set_ylim(-1.4, len(examples))
    activation = table["activation"].iloc[0] if "activation" in table else ""
    right.set_title(f"one CoT-ICL Lab sequence (V = {table['vocab_size'].iloc[0]}, σ = {activation}); "
                    "arrows: DAG parents of y_c", fontsize=8)
    fig.tight_layout()
    return theme.save(fig, out_png, plot.get("note"))
