"""Paper 2's Figure 1 (p2_fig_lab2): one sampled hybrid (CoT-Recipe) training sequence.

The first sequence of the card's train split that mixes CoT and standard examples (else sequence
0), rendered exactly as training sees it
(`cotlab.data.prompts.render_train`): ⟨bos⟩, then each example ⟨is⟩ x ⟨ie⟩ [⟨ts⟩ y_1..y_{C-1} ⟨te⟩]
⟨as⟩ y_C ⟨ae⟩ ⟨eos⟩, the think span present in the CoT examples only. One row of boxes per
example, coloured by role: special tokens by name, inputs, chain tokens and the answer. Labelled
tokens (the ones the loss sees) have a dark edge. The table lists every token with its role.
"""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.patches import FancyBboxPatch, Patch

from cotlab.config import ConfigError, build
from cotlab.data.prompts import IGNORE, cot_examples, render_train
from cotlab.data.store import open_dataset
from cotlab.figures import theme
from cotlab.formats import PromptConfig

SHORT = {"bos": "bos", "eos": "eos", "input_start": "is", "input_end": "ie", "think_start": "ts",
         "think_end": "te", "answer_start": "as", "answer_end": "ae"}
ROLES = ("special", "input", "chain", "answer")
OPENS = {"is": "input", "ts": "chain", "as": "answer"}  # a special token -> the role of the tokens after it


def sequence_table(points: list[dict[str, Any]]) -> pd.DataFrame:
    """Tokens of sequence 0 of the first point's train split: position, id, text, role, example, labelled."""
    if not points:
        raise ConfigError("points=[]: p2_fig_lab2 needs one grid point")
    point = points[0]
    prompt = build(PromptConfig, point["train"].get("prompt", {}), prefix="train.prompt.")
    if not prompt.special:
        raise ConfigError(f"train.prompt.format={prompt.format!r}: p2_fig_lab2 draws a special-token format")
    dataset = open_dataset(point["files"]["train_data"], verify=False)
    rows = dataset.read(0, dataset.n_rows)
    cot = cot_examples(rows, prompt, dataset.n_rows, dataset.config.seed)  # (B, K) bool
    mixed = np.flatnonzero(cot.any(axis=1) & ~cot.all(axis=1))
    pick = int(mixed[0]) if len(mixed) else 0  # the first sequence that mixes both forms, if any
    batch = render_train(rows.take(slice(pick, pick + 1)), dataset.config, prompt, dataset.n_rows)
    names = {i: SHORT[name] for name, i in dataset.config.special_ids().items() if name in SHORT}
    records, example, role = [], 0, None
    for position, (token, label, real) in enumerate(zip(batch.input_ids[0], batch.labels[0], batch.attention_mask[0])):
        if not real:
            continue
        text = names.get(int(token))
        if text is not None:
            example += text == "is"
            role = OPENS.get(text)  # the role of the ordinary tokens until the next special one
        records.append({"position": position, "id": int(token), "text": text or str(int(token)),
                        "role": "special" if text else role, "example": example, "labelled": bool(label != IGNORE)})
    table = pd.DataFrame(records)
    forms = table.groupby("example")["text"].agg(lambda t: "CoT" if "ts" in set(t) else "standard")
    return table.assign(form=table["example"].map(forms), sequence=pick, data_id=point["data_id"],
                        alpha=prompt.recipe.alpha if prompt.recipe else None)


def draw(table: pd.DataFrame, plot: dict[str, Any], out_png: str) -> list[str]:
    theme.apply()
    colors = dict(zip(ROLES, sns.color_palette("colorblind", len(ROLES))))
    examples = sorted(table["example"].unique())
    width = int(table.groupby("example").size().max())
    fig, ax = plt.subplots(figsize=(min(0.32 * width + 1.6, 12.0), 0.34 * len(examples) + 0.9))
    ax.set_axis_off()
    for row, k in enumerate(examples):
        tokens = table[table["example"] == k]
        y = len(examples) - 1 - row
        label = "bos" if k == 0 else f"{'query' if k == examples[-1] else f'demo {k}'} ({tokens['form'].iloc[0]})"
        ax.text(-0.7, y, label, ha="right", va="center", fontsize=6)
        for col, (_, tok) in enumerate(tokens.iterrows()):
            ax.add_patch(FancyBboxPatch((col - 0.42, y - 0.32), 0.84, 0.64, boxstyle="round,pad=0.02",
                                        facecolor=colors[tok["role"]], alpha=0.85,
                                        edgecolor="0.1" if tok["labelled"] else "white", linewidth=0.8))
            ax.text(col, y, tok["text"], ha="center", va="center", fontsize=5, color="white")
    ax.set_xlim(-4.0, width)
    ax.set_ylim(-0.8, len(examples))
    alpha = table["alpha"].iloc[0]
    recipe = f" (CoT-Recipe α = {alpha:g})" if pd.notna(alpha) else ""
    ax.set_title(f"one training sequence{recipe}; dark edge: labelled token", fontsize=8)
    ax.legend(handles=[Patch(color=colors[r], label=r) for r in ROLES], loc="center left",
              bbox_to_anchor=(1.0, 0.5), frameon=False, fontsize=7)
    fig.tight_layout()
    return theme.save(fig, out_png, plot.get("note"))
