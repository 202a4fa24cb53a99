"""Model shapes: `ModelConfig` and the named sizes (tf4/tf8/tf12 and their CPU-sized twins).

Torch-free, so that the workflow checks a card's model names and `cotlab plan` counts parameters
without importing torch; `cotlab.model.Transformer` builds the network from a ModelConfig.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import model_validator

from cotlab.config import Section, build, fail, require_positive


class ModelConfig(Section):
    """Shape and numerics of one Transformer; the named sizes are in `MODEL_SIZES`."""

    n_layer: int
    """L: decoder blocks."""
    d_model: int
    """D: hidden size."""
    n_head: int
    """H: query heads; head dim Dh = D / H."""
    n_kv_head: int
    """G: key/value heads (grouped-query attention, H / G queries share one)."""
    d_ff: int
    """F: SwiGLU intermediate size."""
    vocab_size: int
    """V: the data's vocabulary size (embedding rows = output logits)."""
    rope_theta: float = 5e5
    """RoPE base θ (Llama 3: 500,000)."""
    norm_eps: float = 1e-6
    """RMSNorm epsilon (HF `LlamaConfig` default, as the authors used)."""
    init_std: float = 0.02
    """Std of the normal init of every linear and embedding weight (HF `initializer_range`)."""
    max_seq_len: int = 131_072
    """Max positions, a config value only (RoPE is computed from positions, no table)."""

    @model_validator(mode="after")
    def _check(self) -> ModelConfig:
        require_positive(self, "n_layer", "d_model", "n_head", "n_kv_head", "d_ff", "vocab_size",
                         "max_seq_len")
        if self.d_model % self.n_head:
            fail("d_model", self.d_model, f"must be divisible by n_head={self.n_head}")
        if self.head_dim % 2:
            fail("d_model", self.d_model, f"must give an even head dim (d_model / n_head = {self.head_dim})")
        if self.n_head % self.n_kv_head:
            fail("n_head", self.n_head, f"must be divisible by n_kv_head={self.n_kv_head}")
        for name in ("rope_theta", "norm_eps", "init_std"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                fail(name, value, "must be a positive finite number")
        return self

    @property
    def head_dim(self) -> int:
        """Dh = d_model / n_head."""
        return self.d_model // self.n_head

    @property
    def num_params(self) -> int:
        """Parameters of the Transformer, the tied embedding counted once (no biases):
        per layer q, o (D·D each), k, v (D·G·Dh each), the SwiGLU (3·D·F) and two RMSNorms (2·D);
        plus the embedding (V·D) and the final norm (D)."""
        D, F, kv = self.d_model, self.d_ff, self.n_kv_head * self.head_dim
        per_layer = 2 * D * D + 2 * D * kv + 3 * D * F + 2 * D
        return self.n_layer * per_layer + self.vocab_size * D + D


_PAPER = dict(d_model=2048, n_head=32, n_kv_head=8, d_ff=8192)  # Llama-3.2-1B widths [code]
_SMOKE = dict(d_model=64, n_head=4, n_kv_head=2, d_ff=256)  # [ours] CI-sized, same structure
# [ours] The `cpu` scale keeps the paper's depths at the smoke width: 4/8/12 layers are what its
# cards compare; width is what a 2-core CPU cannot afford (docs/scales.md).
MODEL_SIZES: dict[str, dict[str, Any]] = {
    "tf4": dict(n_layer=4, **_PAPER),
    "tf8": dict(n_layer=8, **_PAPER),
    "tf12": dict(n_layer=12, **_PAPER),
    "smoke-tf4": dict(n_layer=1, **_SMOKE),
    "smoke-tf8": dict(n_layer=2, **_SMOKE),
    "smoke-tf12": dict(n_layer=3, **_SMOKE),
    "cpu-tf4": dict(n_layer=4, **_SMOKE),
    "cpu-tf8": dict(n_layer=8, **_SMOKE),
    "cpu-tf12": dict(n_layer=12, **_SMOKE),
}
"""Named sizes (docs/models.md); all share rope_theta 5e5, norm_eps 1e-6, max_seq_len 131072."""


def model_config(name: str, vocab_size: int, **overrides: Any) -> ModelConfig:
    """The named size at vocabulary `vocab_size`, with any ModelConfig field overridden."""
    if name not in MODEL_SIZES:
        fail("model", name, f"must be one of {', '.join(MODEL_SIZES)}")
    return build(ModelConfig, {**MODEL_SIZES[name], "vocab_size": vocab_size, **overrides})
