"""The schema of experiment cards, scales and the workflow config (docs/architecture.md), torch-free.

`workflow/schemas/{card,scales,config}.schema.yaml` mirror these models for
`snakemake.utils.validate`; tests/test_card_schema.py checks that the two agree key for key.
A **card** (`config/experiments/<id>.yaml`) describes one paper figure or table; a **scale**
(`config/scales.yaml`) says how big everything is. `cotlab.cards` resolves and expands them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import model_validator

from cotlab.config import SHAPE_FIELDS, ConfigError, Section, fail, merge, require_positive
from cotlab.formats import FormatName
from cotlab.model_config import MODEL_SIZES

MODELS = ("tf4", "tf8", "tf12")
"""Card model names: the paper's depths. A scale maps them to sizes (`Scale.model_sizes`)."""
SCALES = ("smoke", "cpu", "mini", "reduced", "paper")
KINDS = ("runs", "coverage", "data", "models", "hparams")
"""runs: train + evaluate each grid point; coverage: `cotlab coverage` of each point's train split;
data: the aggregate draws a generated dataset (fig_teaser); models: the architecture table of the
card's models x vocabulary sizes (tab_models); hparams: every card's settings at the scale
(tab_hparams). The last two read no files."""
RULES = ("generate", "train", "evaluate", "coverage", "aggregate")  # rules with per-scale resources


class Layer(Section):
    """One layer of values: DataConfig fields, TrainConfig fields, and the eval cadence."""

    data: dict[str, Any] = {}
    """DataConfig fields (docs/data.md, "Symbols and config fields"); n_sequences is set per split
    from n_train / n_eval."""
    train: dict[str, Any] = {}
    """TrainConfig fields (model, batch_size, n_train, n_eval, lr, precision, prompt.*, ...)."""
    eval_every_seqs: int | None = None
    """Eval (and checkpoint) cadence in sequences, positive; becomes train.eval_every in steps of the run's batch."""

    @model_validator(mode="after")
    def _check(self) -> Layer:
        require_positive(self, "eval_every_seqs")
        return self


def check_seeds(seeds: int | None) -> None:
    if seeds is not None and seeds < 1:
        fail("seeds", seeds, "must be a positive integer (the number of replicates of every run)")


def _check_sweep(sweep: dict[str, list[Any] | dict[str, Layer]]) -> None:
    for key, values in sweep.items():
        if len(values) == 0:
            raise ConfigError(f"sweep.{key}={values!r}: a swept key needs at least one value")


"""DataConfig fields a probe may change: the eval split keeps the run's vocabulary, E and H."""
PROBE_OPTIONS = ("drop_k", "drop_strategy", "force", "temperature", "n_samples", "max_new_tokens")
"""What a probe's grid crosses: `cotlab evaluate --grid KEY=...` (prompt edits and decoding)."""


class Probe(Section):
    """One offline evaluation of every trained model of a card (paper 2's drop-k x forcing, OOD shapes,
    sampling): the run's eval data point with `data` replaced, scored in `format` at every point of `grid`."""

    data: dict[str, Any] = {}
    """Shape fields (n_inputs, n_parents, chain_length, n_examples) replacing the run's; {} = its own eval split."""
    format: FormatName | None = None
    """The scored format; default: what `cotlab evaluate` scores for the run's data."""
    grid: dict[str, list[Any]] = {}
    """Option -> values, crossed (drop_k, drop_strategy, force, temperature, n_samples, max_new_tokens)."""

    @model_validator(mode="after")
    def _check(self) -> Probe:
        for key in self.data:
            if key not in SHAPE_FIELDS:
                fail(f"probe.data.{key}", self.data[key], f"a probe may change only {', '.join(SHAPE_FIELDS)}")
        for key, values in self.grid.items():
            if key not in PROBE_OPTIONS:
                fail(f"probe.grid.{key}", values, f"must be one of {', '.join(PROBE_OPTIONS)}")
            if not values:
                fail(f"probe.grid.{key}", values, "needs at least one value")
        return self


class Override(Section):
    """A card's values at one scale; each key replaces the card's (sweep: key by key)."""

    base: Layer = Layer()
    sweep: dict[str, list[Any] | dict[str, Layer]] = {}
    models: list[Literal[MODELS]] | None = None  # type: ignore[valid-type]
    formats: list[FormatName] | None = None
    seeds: int | None = None
    probes: dict[str, Probe] | None = None
    """Replaces the card's probes at this scale."""
    note: str | None = None
    """What the card can and cannot show at this scale, in a sentence or two: printed under its figure,
    in its report caption and in the gallery (e.g. a setting that does not learn on a CPU)."""

    @model_validator(mode="after")
    def _check(self) -> Override:
        _check_sweep(self.sweep)
        check_seeds(self.seeds)
        return self


class PlotSpec(Section):
    """What the aggregate draws; the figure module of the card decides the details."""

    kind: Literal["curves", "bars", "points", "map", "table", "probes", "headline", "recipe", "sequence"] = "curves"
    """curves/points/map/bars: paper 1's figure modules; probes: curves of the probes table;
    headline: paper 2's gains table from the probes; recipe/sequence: the CoT-Recipe and Lab-2.0 figures."""
    x: str | None = None
    y: str | list[str] | None = None
    """One metric, or a list drawn as rows of panels."""
    hue: str | None = None
    style: str | None = None
    col: str | None = None
    row: str | None = None
    refs: list[str] = []
    """Reference lines, e.g. majority_baseline (grey dotted) or chance."""
    logx: bool = False


class Card(Section):
    """One paper figure or table: an experiment card (docs/cards.md)."""

    title: str
    kind: Literal[KINDS] = "runs"  # type: ignore[valid-type]
    reuse: list[str] = []
    """Card ids whose runs this card draws (fig_embed_sim reuses fig_vocab); it then has no grid of its own."""
    base: Layer = Layer()
    sweep: dict[str, list[Any] | dict[str, Layer]] = {}
    """Grid: a DataConfig field -> values, `train.<field>` -> values, or a name -> {variant: Layer}."""
    models: list[Literal[MODELS]] = []  # type: ignore[valid-type]
    formats: list[FormatName] = []
    seeds: int | None = None
    """Replicates of every run (default: the scale's): replicate r trains with seed + r (model init
    and data order) on the same data, or on data of seed + r too with `reseed_data`."""
    reseed_data: bool = False
    """Replicates draw their own data (data.seed + r) as well; a card that trains nothing needs it."""
    scales: dict[Literal[SCALES], Override] = {}  # type: ignore[valid-type]
    probes: dict[str, Probe] = {}
    """Named offline evaluations of every run (paper 2); their scores make the card's probes table."""
    plot: PlotSpec = PlotSpec()
    figure: bool = True
    """False for tables (tab_models, tab_hparams): the aggregate writes only results/tables/<id>.csv."""
    n_sequences: int | None = None
    """Data and coverage cards: sequences of each point's train split (default: n_train / the scale's n_cov)."""

    @model_validator(mode="after")
    def _check(self) -> Card:
        if self.reuse and (self.base != Layer() or self.sweep):
            raise ConfigError("reuse: a card that reuses other cards' runs takes no base or sweep of its own")
        if self.probes and self.kind != "runs":
            fail("probes", list(self.probes), "only a runs card has models to probe")
        if self.kind == "runs" and not self.reuse and not (self.models and self.formats):
            raise ConfigError("models/formats: a runs card needs at least one model and one format")
        _check_sweep(self.sweep)
        check_seeds(self.seeds)
        if self.kind != "runs" and (self.seeds or 1) > 1 and not self.reseed_data:
            fail("seeds", self.seeds, "replicates of a card that trains nothing differ only in their data: "
                 "set reseed_data: true")
        return self


class RuleResources(Section):
    """Per-job resources of one rule (Snakemake `threads` and `resources`)."""

    threads: int = 1
    mem_mb: int = 2000
    runtime: int = 30
    """Minutes; for train, the floor of the estimate from the throughput model (`cotlab plan`)."""
    gpus: int = 0

    @model_validator(mode="after")
    def _check(self) -> RuleResources:
        for name in ("threads", "mem_mb", "runtime"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)!r}: must be a positive integer")
        if self.gpus < 0:
            raise ConfigError(f"gpus={self.gpus!r}: must be >= 0")
        return self


class CpuThroughput(Section):
    """Measured speed of one single-thread job of each CPU rule (benchmarks/bench_cpu_scale.py writes
    it); `cotlab plan` turns it into CPU minutes per card."""

    generate: float
    """Sequences per second of `cotlab generate`."""
    coverage: float
    """Sequences per second of `cotlab coverage`."""
    train: dict[str, float]
    """MODEL_SIZES key -> training tokens per second of `cotlab train`'s optimizer steps."""
    evaluate: dict[str, float]
    """MODEL_SIZES key -> prompt tokens per second of `cotlab evaluate` (also prices in-training evals)."""

    @model_validator(mode="after")
    def _check(self) -> CpuThroughput:
        for rule in ("train", "evaluate"):
            for size, rate in getattr(self, rule).items():
                if size not in MODEL_SIZES:
                    fail(f"cpu_throughput.{rule}.{size}", size, f"must be one of {', '.join(MODEL_SIZES)}")
                if not rate > 0:
                    fail(f"cpu_throughput.{rule}.{size}", rate, "must be a positive number")
        for rule in ("generate", "coverage"):
            if not getattr(self, rule) > 0:
                fail(f"cpu_throughput.{rule}", getattr(self, rule), "must be a positive number")
        return self


class Scale(Section):
    """One scale of every card (docs/scales.md)."""

    description: str
    defaults: Layer = Layer()
    """Values below the card's base: a card may change them (lr, batch_size, precision)."""
    overrides: Layer = Layer()
    """Values above the card's base: the size of everything at this scale (n_train, n_eval, cadence)."""
    models: list[Literal[MODELS]] | None = None  # type: ignore[valid-type]
    """Default subset of each card's models at this scale (a card's scales.<scale>.models wins)."""
    model_sizes: dict[str, str] = {}
    """Card model name -> `cotlab.model_config.MODEL_SIZES` key (smoke: tf8 -> smoke-tf8); default: same name."""
    n_cov: int
    """Sequences of a TokenCoverage dataset (fig_token_coverage)."""
    seeds: int = 1
    """Replicates of every run unless a card says otherwise."""
    resources: dict[Literal[RULES], RuleResources] = {}  # type: ignore[valid-type]
    cpu_throughput: CpuThroughput | None = None
    """A CPU scale's measured job speeds; `cotlab plan` then prints CPU minutes per card."""

    @model_validator(mode="after")
    def _check(self) -> Scale:
        train = merge(self.defaults.train, self.overrides.train)
        for key in ("n_train", "n_eval", "batch_size"):
            if key not in train:
                raise ConfigError(f"overrides.train.{key}: every scale must set it (in defaults or overrides)")
        if self.overrides.eval_every_seqs is None and self.defaults.eval_every_seqs is None:
            raise ConfigError("overrides.eval_every_seqs: every scale must set it")
        check_seeds(self.seeds)
        for name, size in self.model_sizes.items():
            if size not in MODEL_SIZES:
                fail(f"model_sizes.{name}", size, f"must be one of {', '.join(MODEL_SIZES)}")
        return self


class WorkflowConfig(Section):
    """config/config.yaml; mirrors workflow/schemas/config.schema.yaml (`cotlab plan` reads it without Snakemake)."""

    experiments: list[str] | str
    """Card ids, one card id, or `all` (every card under config/experiments/)."""
    scale: str
    train_gpus: int | None = None
    seeds: int | None = None

    @model_validator(mode="after")
    def _check(self) -> WorkflowConfig:
        check_seeds(self.seeds)
        return self
