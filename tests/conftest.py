"""Shared test helpers: the small learnable data point the training tests use, and its generator."""

from __future__ import annotations

from pathlib import Path

import pytest

from cotlab.cli import main as cli

# The stage-1 cards: every figure and table of paper 1.
STAGE1 = ["fig_teaser", "tab_models", "fig_token_coverage", "fig_vocab", "fig_embed_sim", "fig_losses",
          "fig_examples", "fig_chain", "fig_chain_positions", "fig_parents", "fig_diversity", "fig_attention",
          "fig_activation", "fig_dims", "tab_hparams"]
# The stage-2 cards: paper 2 (CoT-Recipe); p2_fig_symbolic needs local LLM weights and is not a card.
STAGE2 = ["p2_fig_lab2", "p2_fig_recipe", "p2_fig_alpha_train", "p2_fig_alpha_dropk", "p2_tab_headline", "p2_fig_ood",
          "p2_fig_task_diversity", "p2_fig_sampling"]

# V=32, one fixed task whose answer is a composition through the chain (docs/scales.md).
FIXED_TASK = ["vocab_size=32", "n_inputs=4", "n_parents=2", "chain_length=3", "n_examples=4",
              "fixed_dag=true", "dag=[[0,1],[2,4],[3,5]]", "fixed_h=true"]


def generate_split(out: Path, split: str, n: int, point: list[str] = FIXED_TASK) -> str:
    """`cotlab generate` one split of `point` with `n` sequences into `out`; returns the path."""
    args = ["generate", "--out", str(out), "--split", split]
    for item in [*point, f"n_sequences={n}"]:
        args += ["--set", item]
    assert cli(args) == 0
    return str(out)


@pytest.fixture(scope="module")
def fixed_task_data(request, tmp_path_factory) -> tuple[str, str]:
    """(train, eval) directories of FIXED_TASK; a module sets N_TRAIN (default 512) to size the train split."""
    root = tmp_path_factory.mktemp("data")
    n_train = getattr(request.module, "N_TRAIN", 512)
    return generate_split(root / "train", "train", n_train), generate_split(root / "eval", "eval", 64)
