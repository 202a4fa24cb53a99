"""One look for every figure: colours per model, line style per format, labels with units, paper size.

Colours come from seaborn's colour-blind palette and are fixed per model *family*, so TF-4 is the
same blue in every figure and `smoke-tf4` (its CI stand-in) shares it. CoT is solid and standard
dashed everywhere; the majority baseline is a grey dotted line and chance a grey dash-dot line.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: never open a window, also on machines without a display

import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402

from cotlab.atomic import write_atomic  # noqa: E402
from cotlab.formats import FORMATS  # noqa: E402

_BLUE, _ORANGE, _GREEN, _RED, _PURPLE, _BROWN, _PINK, _GREY, _YELLOW, _CYAN = sns.color_palette("colorblind", 10)

# A scale's stand-in sizes (smoke-tf4, cpu-tf4) share their paper model's colour; the label names the scale.
_PAPER_MODELS = {"tf4": (_BLUE, "TF-4"), "tf8": (_ORANGE, "TF-8"), "tf12": (_GREEN, "TF-12")}
MODEL_COLORS = {f"{p}{m}": c for m, (c, _) in _PAPER_MODELS.items() for p in ("", "smoke-", "cpu-")}
MODEL_LABELS = {f"{p}{m}": label + (f" ({p[:-1]})" if p else "")
                for m, (_, label) in _PAPER_MODELS.items() for p in ("", "smoke-", "cpu-")}
FORMAT_LABELS = {name: f.label for name, f in FORMATS.items()}
# CoT solid red, standard dashed dark grey, the mixed recipe dotted cyan (same look with special tokens)
FORMAT_DASHES = {name: (1, 1) if f.mixed else "" if f.with_cot else (4, 2) for name, f in FORMATS.items()}
FORMAT_COLORS = {name: _CYAN if f.mixed else _RED if f.with_cot else (0.2, 0.2, 0.2) for name, f in FORMATS.items()}
REGIME_LABELS = {"a": "(a) fresh H, fresh DAG", "b": "(b) fixed DAG, fresh H", "c": "(c) pool of 100 H",
                 "d": "(d) pool of 40 H", "e": "(e) one fixed H"}
ACTIVATION_COLORS = {"leaky_relu": _BLUE, "relu": _RED, "silu": _PURPLE, "identity": _BROWN}
PARENT_EDGE = _RED  # outline of the true parents in attention maps
BASELINE_STYLE = dict(color="0.45", linestyle=":", linewidth=1.2)  # in-context majority
GLOBAL_BASELINE_STYLE = dict(color="0.45", linestyle="--", linewidth=0.9)  # always the most frequent answer
CHANCE_STYLE = dict(color="0.45", linestyle="-.", linewidth=1.0)

AXIS_LABELS = {
    "step": "training step",
    "seqs_seen": "training sequences seen",
    "tokens_seen": "training tokens seen",
    "answer_acc": "answer accuracy (fraction)",
    "acc_final": "final answer accuracy (fraction)",
    "acc_auc": "mean answer accuracy (fraction)",
    "chain_acc": "chain-token accuracy (fraction)",
    "position": "chain position c",
    "embed_sim": "embedding similarity (0-1)",
    "parent_prec": "parent precision (0-1)",
    "parent_mass": "mass on parents (0-1)",
    "train_loss": "train loss (nats/token)",
    "eval_loss": "eval loss (nats/token)",
    "coverage": "TokenCoverage (fraction of ids)",
    "n_cov": "sequences counted",
    "vocab_size": "vocabulary size V",
    "n_examples": "examples per sequence K",
    "chain_length": "chain length C",
    "n_parents": "parents per token M",
    "n_dims": "data dimension d",
    "activation": "activation σ",
    "h_num_layers": "token-processor depth L",
    "regime": "H/DAG regime",
    "model": "model",
    "format": "format",
}
SHORT_NAMES = {"vocab_size": "V", "n_examples": "K", "chain_length": "C", "n_parents": "M", "n_dims": "d",
               "activation": "σ", "h_num_layers": "L", "regime": "regime"}

COLUMN_WIDTH_IN = 2.4  # one facet; 3 facets fit a 7-inch text width
ROW_HEIGHT_IN = 2.0


def apply() -> None:
    """Set the seaborn/matplotlib defaults shared by every figure (fonts readable at paper size)."""
    sns.set_theme(context="paper", style="whitegrid", font_scale=1.0,
                  rc={"axes.titlesize": 9, "axes.labelsize": 8, "legend.fontsize": 7, "legend.title_fontsize": 8,
                      "xtick.labelsize": 7, "ytick.labelsize": 7, "lines.linewidth": 1.4,
                      "savefig.dpi": 200, "pdf.fonttype": 42, "figure.dpi": 100})


def label(column: str) -> str:
    """Axis label of a table column, with its unit; chain_acc_<i> reads as chain accuracy."""
    if column.startswith("chain_acc_"):
        return f"y_{int(column.rsplit('_', 1)[1]) + 1} accuracy (fraction)"
    return AXIS_LABELS.get(column, column.replace("_", " "))


def facet_title(column: str, value: object) -> str:
    """'V = 64' for a facet of the vocabulary sweep, 'model = TF-4' for models."""
    if column == "model":
        return MODEL_LABELS.get(str(value), str(value))
    if column == "regime":
        return REGIME_LABELS.get(str(value), f"regime {value}")
    return f"{SHORT_NAMES.get(column, column)} = {value}"


def model_color(model: str) -> tuple[float, float, float]:
    return MODEL_COLORS.get(str(model), _GREY)


def palette(column: str, values: list) -> dict:
    """Colours for a hue column: fixed per model and per activation, the colour-blind cycle otherwise."""
    if column == "model":
        return {v: model_color(v) for v in values}
    if column == "activation":
        return {v: ACTIVATION_COLORS.get(v, _GREY) for v in values}
    if column == "format":
        return {v: FORMAT_COLORS.get(v, _GREY) for v in values}
    cycle = sns.color_palette("colorblind", max(len(values), 1))
    return dict(zip(values, cycle))


def value_label(column: str, value: object) -> str:
    """Legend text of one hue/style value: model and format names, 'V = 64' for numbers."""
    if column == "model":
        return MODEL_LABELS.get(str(value), str(value))
    if column == "format":
        return FORMAT_LABELS.get(str(value), str(value))
    return facet_title(column, value)


def save(fig: plt.Figure, out_png: str, note: str | None = None) -> list[str]:
    """Write <out>.png and <out>.pdf atomically (temp name, then rename) and close the figure; a card's
    note at this scale (what it cannot show) goes under the figure, where nobody can miss it."""
    if note:
        fig.text(0.0, 0.0, textwrap.fill(f"Note: {note}", 160), ha="left", va="top", fontsize=7, style="italic",
                 transform=fig.transFigure)
    written = []
    for suffix in (".png", ".pdf"):
        path = Path(out_png).with_suffix(suffix)
        write_atomic(path, lambda tmp: fig.savefig(tmp, bbox_inches="tight"))
        written.append(str(path))
    plt.close(fig)
    return written
