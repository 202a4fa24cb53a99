"""Prompt formats: the one table of what each format is, the prompt config and the decoding config
(docs/architecture.md).

Every module that needs a fact about a format (which ones carry chain-of-thought, which need the
special tokens, how long a sequence is, how `cotlab evaluate` forces it, which slug a run id uses)
reads it from `FORMATS` here. Torch-free: the workflow validates prompt and decoding configs at planning time.

Letters: K examples (the query included), N inputs, C chain tokens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from pydantic import model_validator

from cotlab.config import DataConfig, Section, check_seed, fail


@dataclass(frozen=True)
class Format:
    """One prompt format (paper 1: standard/cot; paper 2: the *_special_token formats)."""

    name: str
    slug: str
    """Short name in run ids (`...-tf8-cot__<hash>`)."""
    label: str
    """Legend text in figures."""
    with_cot: bool
    """The query's intermediate chain tokens are generated before the answer (scored "with CoT")."""
    special: bool
    """Needs the reserved special tokens (DataConfig.special_tokens)."""
    mixed: bool = False
    """Examples mix both forms (the CoT-Recipe); such a model has no cross format."""
    eval_force: Literal["think", "answer"] | None = None
    """Token `cotlab evaluate` appends to the prompt when it scores this format (⟨ts⟩ / ⟨as⟩)."""

    @property
    def think_spans(self) -> bool:
        """Demonstrations may carry ⟨ts⟩..⟨te⟩ spans that drop_k can delete."""
        return self.special and (self.with_cot or self.mixed)

    @property
    def parent_attention(self) -> bool:
        """The query's y_1..y_{c-1} sit at fixed offsets, so attention-to-parent is defined (plain cot)."""
        return self.with_cot and not self.special

    def chain_columns(self, chain_length: int) -> int:
        """chain_acc_i columns scored: C when the chain is generated (or may be), else 1 (y_C)."""
        return chain_length if (self.with_cot or self.mixed) else 1

    def sequence_length(self, n_examples: int, n_inputs: int, chain_length: int) -> int:
        """Tokens T of one training sequence; a mixed format counts every example as CoT (an upper bound).

        Plain: K examples of N inputs + C (cot) or 1 (standard) tokens. Special: ⟨bos⟩ + K examples of
        ⟨is⟩ x ⟨ie⟩ [⟨ts⟩ y_1..y_{C-1} ⟨te⟩] ⟨as⟩ y_C ⟨ae⟩ ⟨eos⟩, i.e. N + C + 7 or N + 6 tokens.
        """
        K, N, C = n_examples, n_inputs, chain_length
        cot = self.with_cot or self.mixed
        if not self.special:
            return K * (N + (C if cot else 1))
        return 1 + K * (N + (C + 7 if cot else 6))


FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("standard", "std", "standard", with_cot=False, special=False),
    Format("cot", "cot", "CoT", with_cot=True, special=False),
    Format("standard_special_token", "stdsp", "standard (special tokens)", with_cot=False, special=True,
           eval_force="answer"),
    Format("cot_special_token", "cotsp", "CoT (special tokens)", with_cot=True, special=True, eval_force="think"),
    Format("hybrid_special_token", "hyb", "hybrid (CoT-Recipe)", with_cot=False, special=True, mixed=True),
)}
FormatName = Literal[tuple(FORMATS)]  # type: ignore[valid-type]


def evaluated_formats(special_tokens: bool) -> list[str]:
    """What `cotlab evaluate` scores by default: the pure formats of the data's kind, with CoT first."""
    pure = [f for f in FORMATS.values() if f.special == special_tokens and not f.mixed]
    return [f.name for f in sorted(pure, key=lambda f: not f.with_cot)]


def _names(keep) -> str:
    return ", ".join(name for name, f in FORMATS.items() if keep(f))


class RecipeConfig(Section):
    """CoT-Recipe (docs/prompts.md): row idx of n is CoT with probability min(scale·(pi(idx)/n)^alpha + p0, p1),
    pi a permutation of 0..n-1 keyed by the data seed (cotlab.data.prompts.recipe_slot)."""

    alpha: float
    """Exponent, >= 0; YAML `.inf` (+inf) gives r = 0 and 0 gives r = 1 (IEEE pow)."""
    scale: float = 1.0
    """Multiplier of (idx/n)^alpha; scale = 0 with p0 = p gives a constant probability p."""
    p0: float = 0.0
    """Added floor, in [0, 1]."""
    p1: float = 1.0
    """Upper clamp, in [0, 1], >= p0 (the reference's one-sided clamp would collapse p0 > p1 to p1)."""

    @model_validator(mode="after")
    def _check(self) -> RecipeConfig:
        if math.isnan(self.alpha) or self.alpha < 0:
            fail("alpha", self.alpha, "must be >= 0 (.inf allowed)")
        if not (math.isfinite(self.scale) and self.scale >= 0):
            fail("scale", self.scale, "must be a finite number >= 0")
        for name in ("p0", "p1"):
            value = getattr(self, name)
            if not 0 <= value <= 1:  # also rejects NaN
                fail(name, value, "must lie in [0, 1]")
        if self.p0 > self.p1:
            fail("p0", self.p0, f"must be <= p1={self.p1}")
        return self


class PromptConfig(Section):
    """How rows become prompts: the format, the CoT-Recipe and the eval-time edits (docs/prompts.md)."""

    format: FormatName = "cot"
    """standard/cot need special_tokens off; the *_special_token formats need them on."""
    recipe: RecipeConfig | None = None
    """CoT-Recipe; required by the mixed format (hybrid_special_token) and only allowed there."""
    drop_k: int = 0
    """Eval only: delete the think span of k demonstrations (0 <= k <= K-1; formats with spans)."""
    drop_strategy: Literal["first_k", "last_k", "random"] = "first_k"
    """Which spans drop_k deletes: earliest, nearest the query, or a keyed random permutation."""
    offset: int = 0
    """Added to every id (special ids and pad included, -100 kept), train and eval: maps ids into a
    pretrained model's vocabulary."""
    force: Literal["think", "answer"] | None = None
    """Eval only: append ⟨ts⟩ (think) or ⟨as⟩ (answer) to the prompt; needs a special-token format."""

    @model_validator(mode="after")
    def _check(self) -> PromptConfig:
        fmt = self.spec
        if fmt.mixed and self.recipe is None:
            fail("recipe", None, f"{fmt.name} needs a recipe (alpha, scale, p0, p1)")
        if not fmt.mixed and self.recipe is not None:
            fail("recipe", self.recipe.to_dict(), f"only format={_names(lambda f: f.mixed)} uses a recipe")
        if self.drop_k < 0:
            fail("drop_k", self.drop_k, "must be >= 0")
        if self.drop_k > 0 and not fmt.think_spans:
            fail("drop_k", self.drop_k, f"needs a format with think spans ({_names(lambda f: f.think_spans)})")
        if self.offset < 0:
            fail("offset", self.offset, "must be >= 0")
        if self.force is not None and not fmt.special:
            fail("force", self.force, f"needs a special-token format ({_names(lambda f: f.special)})")
        return self

    @property
    def spec(self) -> Format:
        """This format's row of `FORMATS`."""
        return FORMATS[self.format]

    @property
    def special(self) -> bool:
        return self.spec.special

    def check(self, data_cfg: DataConfig) -> None:
        """Raise a one-line ConfigError when this prompt config cannot render `data_cfg`'s rows."""
        if self.special and not data_cfg.special_tokens:
            fail("format", self.format, "needs special_tokens=true in the data config")
        if not self.special and data_cfg.special_tokens:
            fail("format", self.format, "needs special_tokens=false in the data config "
                 f"(with special tokens use one of {_names(lambda f: f.special)})")
        fewest = min(data_cfg.choices("n_examples"))
        if self.drop_k > fewest - 1:
            fail("drop_k", self.drop_k, f"must be <= n_examples-1={fewest - 1} demonstrations")


# Caps that make a typo fail at once instead of allocating a huge KV cache (B·n_samples rows of
# prompt + max_new_tokens slots); far above paper 2's 100 tokens and 16 samples.
MAX_NEW_TOKENS, MAX_SAMPLES = 10_000, 1024


class DecodeConfig(Section):
    """How evaluation decodes a prompt (docs/evaluation.md, "Decoding"); the default is greedy."""

    max_new_tokens: int | None = None
    """Budget; null = the format's own (`max_new_tokens`); an int = up to that many tokens, stopping
    at ⟨eos⟩ in the special-token formats (paper 2: 100)."""
    temperature: float = 0.0
    """0 = greedy argmax; > 0 = sample from softmax(logits / temperature)."""
    n_samples: int = 1
    """Generations per prompt; the answer is their majority vote (needs temperature > 0 when > 1)."""
    seed: int = 0
    """Seed of the sampling generator (results repeat for the same seed, batch size and device)."""

    @model_validator(mode="after")
    def _check(self) -> DecodeConfig:
        if self.max_new_tokens is not None and not 1 <= self.max_new_tokens <= MAX_NEW_TOKENS:
            fail("max_new_tokens", self.max_new_tokens, f"must be null or an integer in [1, {MAX_NEW_TOKENS}]")
        if not (math.isfinite(self.temperature) and self.temperature >= 0):
            fail("temperature", self.temperature, "must be a finite number >= 0 (0 = greedy)")
        if not 1 <= self.n_samples <= MAX_SAMPLES:
            fail("n_samples", self.n_samples, f"must be an integer in [1, {MAX_SAMPLES}]")
        if self.n_samples > 1 and self.temperature == 0:
            fail("n_samples", self.n_samples, "needs temperature > 0 (greedy samples are all the same)")
        check_seed("seed", self.seed)
        return self

    @property
    def sampled(self) -> bool:
        return self.temperature > 0

    def check(self, data_cfg: DataConfig, prompt_cfg: PromptConfig) -> None:
        """Raise a one-line ConfigError when the budget cannot hold a well-formed generation."""
        shortest = min_new_tokens(data_cfg, prompt_cfg)
        if self.max_new_tokens is not None and self.max_new_tokens < shortest:
            forced = f" forced to {prompt_cfg.force}" if prompt_cfg.force else ""
            fail("max_new_tokens", self.max_new_tokens, f"must be >= {shortest}, the shortest well-formed "
                 f"generation of {prompt_cfg.format}{forced}")


def max_new_tokens(data_cfg: DataConfig, prompt_cfg: PromptConfig, budget: int | None = None) -> int:
    """Decoding budget: `budget` when given, else C (cot), 1 (standard), C+5 minus a forced token
    (special-token formats: the longest form of the query's rest); C is the largest chain length."""
    if budget is not None:
        return budget
    C = data_cfg.largest("chain_length")
    if not prompt_cfg.special:
        return prompt_cfg.spec.chain_columns(C)
    return C + 5 - (prompt_cfg.force is not None)


def min_new_tokens(data_cfg: DataConfig, prompt_cfg: PromptConfig) -> int:
    """The shortest well-formed generation: C (cot), 1 (standard); special-token formats: y ⟨ae⟩ ⟨eos⟩
    when forced to answer, y_1..y_{C-1} ⟨te⟩ ⟨as⟩ y ⟨ae⟩ ⟨eos⟩ when forced to think (largest C),
    else ⟨as⟩ y ⟨ae⟩ ⟨eos⟩."""
    C = data_cfg.largest("chain_length")
    if not prompt_cfg.special:
        return prompt_cfg.spec.chain_columns(C)
    return {"answer": 3, "think": C + 4, None: 4}[prompt_cfg.force]
