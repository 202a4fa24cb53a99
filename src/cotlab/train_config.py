"""`TrainConfig`: one training run's settings, torch-free.

The workflow validates every run of every card against it when it plans (`snakemake -n`), so a
bad training value fails before any job starts; `cotlab train` loads the same class.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import model_validator

from cotlab.config import ConfigError, DataConfig, Section, build, check_seed, fail, require_positive
from cotlab.formats import DecodeConfig, PromptConfig
from cotlab.model_config import MODEL_SIZES

# Ids shifted past this would only build a huge, mostly unused embedding (V + offset rows); a
# pretrained vocabulary is smaller than this.
MAX_PROMPT_OFFSET = 1_000_000


class TrainConfig(Section):
    """One training run: model size, optimiser, schedule of evals and checkpoints, prompt format."""

    model: str = "smoke-tf8"
    """Named size from cotlab.model.MODEL_SIZES (tf4/tf8/tf12, smoke-tf4/8/12)."""
    batch_size: int = 64
    """Global batch in sequences, split evenly over the ranks (docs/training.md: 64)."""
    n_train: int | None = None
    """Training sequences; steps = n_train // batch_size. null = one pass over the train split."""
    lr: float = 5e-5
    """AdamW learning rate, constant (no warm-up or decay)."""
    betas: list[float] = [0.9, 0.999]
    """AdamW (beta1, beta2)."""
    eps: float = 1e-8
    """AdamW epsilon."""
    weight_decay: float = 0.01
    """AdamW decoupled weight decay, on every parameter (torch default)."""
    eval_every: int = 500
    """Evaluate every this many steps (and at step 0 and the last step)."""
    checkpoint_every: int | None = None
    """Also write the resume checkpoint every this many steps; null = by checkpoint_interval_s only."""
    checkpoint_interval_s: float = 1800.0
    """Write the resume checkpoint once this many seconds have passed since the last one (checked every
    50 steps and at evals); one is always written at the last step."""
    n_eval: int | None = None
    """Eval sequences: the first n_eval rows of the eval split; null = all of it."""
    eval_batch_size: int = 256
    """Eval prompts decoded together per rank."""
    eval_max_new_tokens: int | None = None
    """Decoding budget of the in-training eval: null = the format's own (docs/evaluation.md,
    "Decoding"); an int = up to that many tokens, stopping at ⟨eos⟩ (paper 2: 100)."""
    analysis_n: int = 256
    """Eval sequences (the first ones, at most n_eval) teacher-forced for parent_prec; 0 = skip."""
    precision: Literal["auto", "fp32", "tf32", "bf16"] = "auto"
    """auto = fp32 on CPU, bf16 on GPU. bf16 = autocast with fp32 weights, optimizer state and loss;
    tf32 = fp32 with TF32 matmuls; fp32 = TF32 off (the authors' setting)."""
    compile: bool = False
    """torch.compile the training forward/backward."""
    seed: int = 42
    """Model init seed and the loader's shuffling seed (std and cot runs see the same order)."""
    threads: int = 1
    """CPU threads per rank (torch.set_num_threads)."""
    collective_timeout_s: float = 600.0
    """DDP: seconds a rank waits in a collective for the others before the job fails (gloo's and
    nccl's own default is 30 minutes). Bounds how long a stalled rank holds the job; it must exceed
    the longest rank-0-only pause (writing a checkpoint or final/, the analyses at an eval)."""
    logger: Literal["none", "tensorboard"] = "none"
    """tensorboard: also write each evaluation's metrics as TensorBoard scalars to RUN_DIR/tensorboard
    (needs the `tensorboard` extra); metrics.parquet is written either way."""
    prompt: PromptConfig = PromptConfig()
    """Prompt format, recipe and eval-time edits (cotlab.data.prompts)."""

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.model not in MODEL_SIZES:
            fail("model", self.model, f"must be one of {', '.join(MODEL_SIZES)}")
        require_positive(self, "batch_size", "n_train", "eval_every", "checkpoint_every", "n_eval",
                         "eval_batch_size", "threads")
        if self.n_train is not None and self.n_train < self.batch_size:
            fail("n_train", self.n_train, f"must be >= batch_size={self.batch_size} (at least one step)")
        if not (math.isfinite(self.lr) and self.lr > 0):
            fail("lr", self.lr, "must be a positive finite number")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            fail("betas", self.betas, "must be two numbers in [0, 1)")
        if not (math.isfinite(self.eps) and self.eps > 0):
            fail("eps", self.eps, "must be a positive finite number")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            fail("weight_decay", self.weight_decay, "must be a finite number >= 0")
        if self.analysis_n < 0:
            fail("analysis_n", self.analysis_n, "must be >= 0")
        check_seed("seed", self.seed)
        if not (math.isfinite(self.checkpoint_interval_s) and self.checkpoint_interval_s > 0):
            fail("checkpoint_interval_s", self.checkpoint_interval_s, "must be a positive finite number of seconds")
        build(DecodeConfig, {"max_new_tokens": self.eval_max_new_tokens}, prefix="eval_")
        if not (math.isfinite(self.collective_timeout_s) and self.collective_timeout_s > 0):
            fail("collective_timeout_s", self.collective_timeout_s, "must be a positive finite number")
        if self.prompt.offset > MAX_PROMPT_OFFSET:
            fail("prompt.offset", self.prompt.offset, f"must be <= {MAX_PROMPT_OFFSET:,} (the model gets "
                 "vocab_size + offset embedding rows)")
        return self

    def check_data(self, data_cfg: DataConfig) -> None:
        """One-line ConfigErrors when the prompt or the in-training eval's budget cannot serve `data_cfg`
        (before any work: `cotlab train` and the workflow's planning)."""
        try:
            self.prompt.check(data_cfg)
        except ConfigError as exc:
            raise ConfigError(f"prompt.{exc}") from None
        try:
            build(DecodeConfig, {"max_new_tokens": self.eval_max_new_tokens}).check(data_cfg, self.prompt)
        except ConfigError as exc:
            raise ConfigError(f"eval_{exc}") from None
