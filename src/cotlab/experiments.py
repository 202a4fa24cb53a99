"""Experiment cards and scales -> the jobs of the workflow (pipeline.md §3-5, experiments.md §4-7).

A **card** (`config/experiments/<id>.yaml`) describes one paper figure or table: fixed values
(`base`), a grid (`sweep`), the models, prompt formats and seeds, per-scale overrides (`scales`) and
the plot spec. A **scale** (`config/scales.yaml`: smoke / mini / reduced / paper) says how big
everything is: n_train, n_eval, eval cadence, model sizes, precision, resources.

The values of one training run are layered, later wins:

    scale.defaults < card.base < scale.overrides < card.scales[scale].base < sweep values < model/format/seed

so a scale supplies what cards may change (lr, batch 64), forces what every card shares at that size
(n_train, n_eval, eval cadence; smoke also caps V at 64 and K at 8), and a card pins what is
particular to it at a scale (the quickstart's own run length, fig_activation's shorter reduced runs).

Ids (pipeline.md §4) are readable and unique: a slug of the values that identify a point plus
`stable_hash` of everything that defines it, e.g. ``V64-K8-C3-M2-fixdag-fixH__3f9a1c2b``.
- `data_id` hashes the resolved DataConfig (defaults filled in), n_train, n_eval and the generator
  version; it leaves out the prompt format and every training setting, so the std and cot runs of a
  point, and the same point in several cards, read one dataset.
- `run_id` hashes the data_id and the training values; plot settings are in neither id.
Identical points in different cards therefore get identical ids and run once (fig_vocab V=1024 is
fig_examples K=40; fig_parents M=2 is fig_diversity regime c).

Pure Python (no Snakemake import): `workflow/rules/common.smk`, `cotlab plan` and
`cotlab aggregate` all read cards through this module.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import model_validator

from cotlab.config import (GENERATOR_VERSION, ConfigError, DataConfig, Section, build, data_slug, merge,
                           read_yaml, stable_hash)

MODELS = ("tf4", "tf8", "tf12")
FORMATS = ("standard", "cot", "standard_special_token", "cot_special_token", "hybrid_special_token")
FORMAT_SLUG = {"standard": "std", "cot": "cot", "standard_special_token": "stdsp",
               "cot_special_token": "cotsp", "hybrid_special_token": "hyb"}
SCALES = ("smoke", "mini", "reduced", "paper")
KINDS = ("runs", "coverage", "data", "static")
"""runs: train + evaluate each grid point; coverage: `cotlab coverage` of each point's train split;
data: the aggregate reads the generated datasets itself (fig_teaser); static: no inputs at all."""
SPLITS = ("train", "eval")
RULES = ("generate", "train", "evaluate", "coverage", "aggregate")  # rules with per-scale resources


# ----------------------------------------------------------------------------- card and scale schema
# workflow/schemas/{card,scales}.schema.yaml mirror these models for `snakemake.utils.validate`;
# tests/test_experiments.py checks that the two agree key for key.

class Layer(Section):
    """One layer of values: DataConfig fields, TrainConfig fields, and the eval cadence."""

    data: dict[str, Any] = {}
    """DataConfig fields (data.md §1 names); n_sequences is set per split from n_train / n_eval."""
    train: dict[str, Any] = {}
    """TrainConfig fields (model, batch_size, n_train, n_eval, lr, precision, prompt.*, ...)."""
    eval_every_seqs: int | None = None
    """Eval (and checkpoint) cadence in sequences; becomes train.eval_every in steps of the run's batch."""


def _check_sweep(sweep: dict[str, list[Any] | dict[str, Layer]]) -> None:
    for key, values in sweep.items():
        if len(values) == 0:
            raise ConfigError(f"sweep.{key}={values!r}: a swept key needs at least one value")


class Override(Section):
    """A card's values at one scale; each key replaces the card's (sweep: key by key)."""

    base: Layer = Layer()
    sweep: dict[str, list[Any] | dict[str, Layer]] = {}
    models: list[Literal[MODELS]] | None = None  # type: ignore[valid-type]
    formats: list[Literal[FORMATS]] | None = None  # type: ignore[valid-type]
    seeds: list[int] | None = None

    @model_validator(mode="after")
    def _check(self) -> Override:
        _check_sweep(self.sweep)
        return self


class PlotSpec(Section):
    """What the aggregate draws; the figure module of the card decides the details."""

    kind: Literal["curves", "bars", "points", "map", "table"] = "curves"
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
    """One paper figure or table (experiments.md §4, §7)."""

    title: str
    kind: Literal[KINDS] = "runs"  # type: ignore[valid-type]
    reuse: list[str] = []
    """Card ids whose runs this card draws (fig_embed_sim reuses fig_vocab); it then has no grid of its own."""
    base: Layer = Layer()
    sweep: dict[str, list[Any] | dict[str, Layer]] = {}
    """Grid: a DataConfig field -> values, `train.<field>` -> values, or a name -> {variant: Layer}."""
    models: list[Literal[MODELS]] = []  # type: ignore[valid-type]
    formats: list[Literal[FORMATS]] = []  # type: ignore[valid-type]
    seeds: list[int] = [42]
    """Replicates: each seed sets data.seed and train.seed."""
    scales: dict[Literal[SCALES], Override] = {}  # type: ignore[valid-type]
    plot: PlotSpec = PlotSpec()
    figure: bool = True
    """False for tables (tab_models, tab_hparams): the aggregate writes only results/tables/<id>.csv."""
    n_sequences: int | None = None
    """Data and coverage cards: sequences of each point's train split (default: n_train / the scale's n_cov)."""

    @model_validator(mode="after")
    def _check(self) -> Card:
        if self.reuse and (self.base != Layer() or self.sweep):
            raise ConfigError("reuse: a card that reuses other cards' runs takes no base or sweep of its own")
        if self.kind == "runs" and not self.reuse and not (self.models and self.formats):
            raise ConfigError("models/formats: a runs card needs at least one model and one format")
        _check_sweep(self.sweep)
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


class Scale(Section):
    """One scale of every card (experiments.md §5)."""

    description: str
    defaults: Layer = Layer()
    """Values below the card's base: a card may change them (lr, batch_size, precision)."""
    overrides: Layer = Layer()
    """Values above the card's base: the size of everything at this scale (n_train, n_eval, cadence)."""
    models: list[Literal[MODELS]] | None = None  # type: ignore[valid-type]
    """Default subset of each card's models at this scale (a card's scales.<scale>.models wins)."""
    model_sizes: dict[str, str] = {}
    """Card model name -> `cotlab.model.MODEL_SIZES` key (smoke: tf8 -> smoke-tf8); default: same name."""
    n_cov: int
    """Sequences of a TokenCoverage dataset (fig_token_coverage)."""
    resources: dict[Literal[RULES], RuleResources] = {}  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _check(self) -> Scale:
        _, train, every = _merge_layers(self.defaults, self.overrides)
        for key in ("n_train", "n_eval", "batch_size"):
            if key not in train:
                raise ConfigError(f"overrides.train.{key}: every scale must set it (in defaults or overrides)")
        if every is None:
            raise ConfigError("overrides.eval_every_seqs: every scale must set it")
        return self


# ----------------------------------------------------------------------------- loading

def _where(path: Path, exc: ConfigError) -> ConfigError:
    return ConfigError(f"{path}: {exc}")


def card_ids(config_dir: str | Path = "config") -> list[str]:
    """Ids of every card under `config_dir`/experiments, sorted."""
    return sorted(p.stem for p in (Path(config_dir) / "experiments").glob("*.yaml"))


def _card(exp_id: str, config_dir: str | Path) -> Card:
    path = Path(config_dir) / "experiments" / f"{exp_id}.yaml"
    if not path.is_file():
        known = ", ".join(card_ids(config_dir)) or "none"
        raise ConfigError(f"experiments={exp_id!r}: no card {path}; known cards: {known}")
    try:
        return build(Card, read_yaml(path))
    except ConfigError as exc:
        raise _where(path, exc) from None


def load_card(exp_id: str, config_dir: str | Path = "config") -> dict[str, Any]:
    """The validated card `exp_id` as a plain dict, defaults filled in."""
    return _card(exp_id, config_dir).to_dict()


def _scales(config_dir: str | Path) -> dict[str, Scale]:
    path = Path(config_dir) / "scales.yaml"
    raw = read_yaml(path)
    out = {}
    for name, values in raw.items():
        if name not in SCALES:
            raise ConfigError(f"{path}: scale {name!r}: unknown; scales are {', '.join(SCALES)}")
        try:
            out[name] = build(Scale, values, prefix=f"{name}.")
        except ConfigError as exc:
            raise _where(path, exc) from None
    return out


def load_scales(config_dir: str | Path = "config") -> dict[str, dict[str, Any]]:
    """Scale name -> validated scale as a plain dict, in file order."""
    return {name: scale.to_dict() for name, scale in _scales(config_dir).items()}


def _scale(scale: str, config_dir: str | Path) -> Scale:
    scales = _scales(config_dir)
    if scale not in scales:
        raise ConfigError(f"scale={scale!r}: must be one of {', '.join(scales)}")
    return scales[scale]


# ----------------------------------------------------------------------------- resolved points

@dataclass(frozen=True)
class DataPoint:
    """One data point: its train split holds n_train sequences, its eval split n_eval."""

    data_id: str
    data: dict[str, Any]
    """Resolved DataConfig values (defaults filled in) without n_sequences."""
    n_train: int
    n_eval: int

    def split_config(self, split: str) -> dict[str, Any]:
        """The DataConfig values of one split, as `cotlab generate` takes them."""
        if split not in SPLITS:
            raise ConfigError(f"split={split!r}: must be one of {', '.join(SPLITS)}")
        return {**self.data, "n_sequences": self.n_train if split == "train" else self.n_eval}

    def path(self, split: str, results: str = "results") -> str:
        return f"{results}/data/{self.data_id}/{split}"


@dataclass(frozen=True)
class Point:
    """One grid point of a card that trains nothing (coverage, data, static cards)."""

    experiment: str
    values: dict[str, Any]
    """Swept key -> value (a variant's name for named variants)."""
    seed: int
    data: DataPoint


@dataclass(frozen=True)
class Run:
    """One training run: a data point, a model, a prompt format and a seed."""

    run_id: str
    experiment: str
    source: str
    """The card whose grid made the run (differs from `experiment` for reusing cards)."""
    model: str
    """Card model name (tf4/tf8/tf12); train['model'] is the size actually trained."""
    format: str
    seed: int
    values: dict[str, Any]
    data: DataPoint
    train: dict[str, Any]
    """Training values as passed to `cotlab train --set` (prompt.format included)."""

    @property
    def data_id(self) -> str:
        return self.data.data_id

    def path(self, results: str = "results") -> str:
        return f"{results}/runs/{self.run_id}"


def _merge_layers(*layers: Layer) -> tuple[dict[str, Any], dict[str, Any], int | None]:
    data: dict[str, Any] = {}
    train: dict[str, Any] = {}
    every = None
    for layer in layers:
        data = merge(data, layer.data)
        train = merge(train, layer.train)
        every = layer.eval_every_seqs if layer.eval_every_seqs is not None else every
    return data, train, every


def _sweep_layers(key: str, values: list[Any] | dict[str, Layer]) -> list[tuple[Any, Layer]]:
    """(column value, layer) for each value of one swept key."""
    if isinstance(values, dict):
        return list(values.items())
    if key.startswith("train."):
        path = key.split(".")[1:]
        def nested(value: Any) -> dict[str, Any]:
            for part in reversed(path):
                value = {part: value}
            return value
        return [(value, Layer(train=nested(value))) for value in values]
    if key == "seed":
        raise ConfigError("sweep.seed: use the card's `seeds:` list (it sets data.seed and train.seed)")
    if key not in DataConfig.model_fields:
        raise ConfigError(f"sweep.{key}: unknown key; a list sweeps a DataConfig field "
                          f"({', '.join(DataConfig.model_fields)}) or train.<field>; "
                          "named variants take a mapping name -> {data, train}")
    return [(value, Layer(data={key: value})) for value in values]


def _data_point(data: dict[str, Any], n_train: int, n_eval: int) -> DataPoint:
    cfg = build(DataConfig, {**data, "n_sequences": n_train}, prefix="data.").to_dict()
    del cfg["n_sequences"]
    digest = stable_hash({"data": cfg, "n_train": n_train, "n_eval": n_eval,
                          "generator_version": GENERATOR_VERSION})
    return DataPoint(f"{data_slug(cfg)}__{digest}", cfg, n_train, n_eval)


@dataclass(frozen=True)
class _Resolved:
    """A card at one scale: its grid, models, formats, seeds and value layers (lowest first)."""

    scale: Scale
    sweep: dict[str, list[Any] | dict[str, Layer]]
    models: list[str]
    formats: list[str]
    seeds: list[int]
    layers: tuple[Layer, ...]


def _resolve(exp_id: str, card: Card, scale_name: str, scale: Scale) -> _Resolved:
    over = card.scales.get(scale_name, Override())
    sweep = dict(card.sweep)
    for key, values in over.sweep.items():
        named = card.sweep.get(key)
        if isinstance(named, dict) and isinstance(values, list):  # a subset of the card's named variants
            unknown = [v for v in values if v not in named]
            if unknown:
                raise ConfigError(f"{exp_id}: scales.{scale_name}.sweep.{key}={unknown}: "
                                  f"not among the card's variants {list(named)}")
            sweep[key] = {name: named[name] for name in values}
        else:
            sweep[key] = values
    if over.models is not None:
        models = list(over.models)
    elif scale.models is not None:
        models = [m for m in card.models if m in scale.models]
        if card.models and not models:
            raise ConfigError(f"{exp_id}: models={card.models} has none of scale {scale_name}'s models "
                              f"{scale.models}; set scales.{scale_name}.models in the card")
    else:
        models = list(card.models)
    formats = list(over.formats if over.formats is not None else card.formats)
    seeds = list(over.seeds if over.seeds is not None else card.seeds)
    return _Resolved(scale, sweep, models, formats, seeds,
                     (scale.defaults, card.base, scale.overrides, over.base))


def resolve_card(exp_id: str, scale: str, config_dir: str | Path = "config") -> dict[str, Any]:
    """The card at one scale: merged base values, sweep, models (with their sizes), formats, seeds, plot."""
    card = _card(exp_id, config_dir)
    sc = _scale(scale, config_dir)
    r = _resolve(exp_id, card, scale, sc)
    data, train, every = _merge_layers(*r.layers)
    sweep = {k: (v if isinstance(v, list) else {name: layer.to_dict() for name, layer in v.items()})
             for k, v in r.sweep.items()}
    return {"id": exp_id, "title": card.title, "kind": card.kind, "reuse": card.reuse, "figure": card.figure,
            "data": data, "train": train, "eval_every_seqs": every, "sweep": sweep, "models": r.models,
            "model_sizes": {m: sc.model_sizes.get(m, m) for m in r.models}, "formats": r.formats,
            "seeds": r.seeds, "plot": card.plot.to_dict(), "scale": scale, "n_cov": sc.n_cov}


def _grid(r: _Resolved) -> list[tuple[dict[str, Any], dict, dict, int | None]]:
    """(values, data, train, eval_every_seqs) for each point of the sweep, before models/formats/seeds."""
    keys = list(r.sweep)
    axes = [_sweep_layers(k, r.sweep[k]) for k in keys]
    out = []
    for combo in itertools.product(*axes):
        values = {k: v for k, (v, _) in zip(keys, combo)}
        data, train, every = _merge_layers(*r.layers, *(layer for _, layer in combo))
        out.append((values, data, train, every))
    return out


def _runs_of(exp_id: str, source: str, r: _Resolved) -> list[Run]:
    runs = []
    for values, data, train, every in _grid(r):
        for model, fmt, seed in itertools.product(r.models, r.formats, r.seeds):
            point_train = merge(train, {"model": r.scale.model_sizes.get(model, model), "seed": seed,
                                        "prompt": {"format": fmt}})
            n_train, n_eval, batch = point_train["n_train"], point_train["n_eval"], point_train["batch_size"]
            if "eval_every" not in point_train:
                steps = max(1, every // batch)
                point_train = {**point_train, "eval_every": steps, "checkpoint_every": steps}
            point = _data_point({**data, "seed": seed}, n_train, n_eval)
            digest = stable_hash({"data_id": point.data_id, "train": point_train})
            run_id = f"{point.data_id.split('__')[0]}-{point_train['model']}-{FORMAT_SLUG[fmt]}__{digest}"
            runs.append(Run(run_id, exp_id, source, model, fmt, seed, values, point, point_train))
    return runs


def expand(exp_id: str, scale: str, config_dir: str | Path = "config") -> list[Run]:
    """Every training run of card `exp_id` at `scale` (empty for cards that train nothing).

    A reusing card takes the runs of the cards in its `reuse` list, filtered by its own models,
    formats and seeds where it names them; `experiment` is then this card and `source` the other.
    """
    card = _card(exp_id, config_dir)
    sc = _scale(scale, config_dir)
    if card.kind != "runs":
        return []
    if not card.reuse:
        try:
            return _runs_of(exp_id, exp_id, _resolve(exp_id, card, scale, sc))
        except ConfigError as exc:
            raise ConfigError(f"{exp_id} at scale {scale}: {exc}") from None
    own = _resolve(exp_id, card, scale, sc)
    runs: dict[str, Run] = {}
    for source in card.reuse:
        if source == exp_id:
            raise ConfigError(f"{exp_id}: reuse: a card cannot reuse itself")
        for run in expand(source, scale, config_dir):
            keep = ((not own.models or run.model in own.models) and (not own.formats or run.format in own.formats)
                    and (run.seed in own.seeds))
            if keep and run.run_id not in runs:
                runs[run.run_id] = Run(run.run_id, exp_id, run.source, run.model, run.format, run.seed,
                                       run.values, run.data, run.train)
    return list(runs.values())


def points(exp_id: str, scale: str, config_dir: str | Path = "config") -> list[Point]:
    """Every grid point of a card that trains nothing; n_train is the scale's n_cov for coverage cards."""
    card = _card(exp_id, config_dir)
    sc = _scale(scale, config_dir)
    if card.kind == "runs":
        return []
    r = _resolve(exp_id, card, scale, sc)
    out = []
    try:
        for values, data, train, _ in _grid(r):
            n_train = card.n_sequences or (sc.n_cov if card.kind == "coverage" else train["n_train"])
            for seed in r.seeds:
                out.append(Point(exp_id, values, seed, _data_point({**data, "seed": seed}, n_train, train["n_eval"])))
    except ConfigError as exc:
        raise ConfigError(f"{exp_id} at scale {scale}: {exc}") from None
    return out


def check_runs(runs: list[Run]) -> None:
    """Validate each run's training values as `cotlab.train.TrainConfig`, and its prompt format
    against its data point, naming the run and the field on the first problem.

    Planning never calls this (it imports torch, seconds per Snakemake start): the workflow calls it
    in `onstart`, before the first job runs, and `cotlab plan` before it prints.
    """
    from cotlab.train_config import TrainConfig

    for run in runs:
        try:
            cfg = build(TrainConfig, run.train, prefix="train.")
            cfg.prompt.check(build(DataConfig, run.data.split_config("train")))
        except ConfigError as exc:
            raise ConfigError(f"{run.experiment} run {run.run_id}: {exc}") from None


def run_table(exp_id: str, scale: str, config_dir: str | Path = "config"):
    """One row per training run: run_id, data_id, experiment, source, model, size, format, seed,
    every swept key as a column, then `data` and `train` (dicts). `.attrs` holds the card at the scale
    (`resolve_card`) under "card" and its plot spec under "plot"."""
    import pandas as pd

    runs = expand(exp_id, scale, config_dir)
    swept = list(dict.fromkeys(k for run in runs for k in run.values))
    rows = [{"run_id": r.run_id, "data_id": r.data_id, "experiment": r.experiment, "source": r.source,
             "model": r.model, "size": r.train["model"], "format": r.format, "seed": r.seed,
             **{k: r.values.get(k) for k in swept}, "data": r.data.data, "train": r.train} for r in runs]
    table = pd.DataFrame(rows, columns=["run_id", "data_id", "experiment", "source", "model", "size", "format",
                                        "seed", *swept, "data", "train"])
    card = resolve_card(exp_id, scale, config_dir)
    table.attrs.update(card=card, plot=card["plot"])
    return table


# ----------------------------------------------------------------------------- the job table

def sequence_length(data: dict[str, Any], fmt: str) -> int:
    """Tokens per training sequence T (data.md §3, §4.3); hybrid counts every example as CoT (an upper bound)."""
    K, N, C = data["n_examples"], data["n_inputs"], data["chain_length"]
    if fmt == "standard":
        return K * (N + 1)
    if fmt == "cot":
        return K * (N + C)
    if fmt == "standard_special_token":
        return 1 + K * (N + 6)
    return 1 + K * (N + C + 7)


def eval_paths(run_id: str, results: str = "results") -> dict[str, str]:
    """The files `cotlab evaluate` writes for a run: scores, analyses, attention maps."""
    stem = f"{results}/eval/{run_id}"
    return {"scores": f"{stem}.parquet", "analysis": f"{stem}.analysis.parquet", "attention": f"{stem}.attention.npz"}


def coverage_path(data_id: str, results: str = "results") -> str:
    """Directory of a train split's TokenCoverage: one `cotlab coverage --n N` JSON per N,
    named n<N>.json, for N in `coverage_sizes`."""
    return f"{results}/coverage/{data_id}"


def coverage_sizes(n_rows: int) -> list[int]:
    """Prefix sizes at which coverage is measured: 100, 1,000, 10,000, ... below n_rows, and n_rows
    (TC grows slowly with n, so a log grid draws the TC-vs-n panel)."""
    return sorted({10 ** k for k in range(2, 19) if 10 ** k < n_rows} | {n_rows})


@dataclass
class Jobs:
    """Everything the workflow will build for some experiments at one scale, deduplicated by id."""

    scale: str
    resources: dict[str, RuleResources]
    experiments: dict[str, Card]
    runs: dict[str, Run]
    datasets: dict[str, DataPoint]
    splits: set[tuple[str, str]]
    """(data_id, split) pairs to generate."""
    coverage: set[str]
    """data_ids to run `cotlab coverage` on."""
    runs_of: dict[str, list[str]]
    points_of: dict[str, list[Point]]

    def inputs_of(self, exp_id: str, results: str = "results") -> list[str]:
        """Files the aggregate of `exp_id` reads."""
        kind = self.experiments[exp_id].kind
        if kind == "runs":
            return [f for rid in self.runs_of[exp_id]
                    for f in (f"{results}/runs/{rid}/metrics.parquet", *eval_paths(rid, results).values())]
        if kind == "coverage":
            return sorted({coverage_path(p.data.data_id, results) for p in self.points_of[exp_id]})
        if kind == "data":
            return sorted({p.data.path("train", results) for p in self.points_of[exp_id]})
        return []


def workflow_jobs(experiments: list[str], scale: str, config_dir: str | Path = "config") -> Jobs:
    """The job table of `experiments` at `scale`: unique runs, datasets, splits and coverage points."""
    sc = _scale(scale, config_dir)
    jobs = Jobs(scale, {k: sc.resources.get(k, RuleResources()) for k in RULES},
                {}, {}, {}, set(), set(), {}, {})
    for exp_id in experiments:
        jobs.experiments[exp_id] = _card(exp_id, config_dir)
        runs = expand(exp_id, scale, config_dir)
        jobs.runs_of[exp_id] = [r.run_id for r in runs]
        for run in runs:
            jobs.runs.setdefault(run.run_id, run)
            jobs.datasets.setdefault(run.data_id, run.data)
            jobs.splits.update({(run.data_id, "train"), (run.data_id, "eval")})
        jobs.points_of[exp_id] = pts = points(exp_id, scale, config_dir)
        for p in pts:
            jobs.datasets.setdefault(p.data.data_id, p.data)
            if jobs.experiments[exp_id].kind in ("coverage", "data"):
                jobs.splits.add((p.data.data_id, "train"))
            if jobs.experiments[exp_id].kind == "coverage":
                jobs.coverage.add(p.data.data_id)
    return jobs


# ----------------------------------------------------------------------------- CLI arguments

def _yaml_value(value: Any) -> str:
    """A value written so that `--set` (YAML) reads it back unchanged."""
    if isinstance(value, float):
        if not math.isfinite(value):
            return ".nan" if math.isnan(value) else (".inf" if value > 0 else "-.inf")
        mantissa, e, exponent = repr(value).partition("e")
        # YAML 1.1 (PyYAML) reads 5e-05 as a string: a float's mantissa needs a dot
        return mantissa + ("" if "." in mantissa else ".0") + e + exponent
    if isinstance(value, list):
        return "[" + ", ".join(_yaml_value(v) for v in value) + "]"
    if isinstance(value, str) and re.fullmatch(r"[A-Za-z_][\w-]*", value) and yaml.safe_load(value) == value:
        return value  # a plain word (fp32, cot, leaky_relu) reads the same unquoted
    return json.dumps(value)


def set_args(values: dict[str, Any], prefix: str = "") -> list[str]:
    """``{"a": {"b": 1}, "c": None}`` -> ``["a.b=1", "c=null"]``: nested dicts become dotted keys."""
    out = []
    for key, value in values.items():
        if isinstance(value, dict) and value:
            out.extend(set_args(value, f"{prefix}{key}."))
        else:
            out.append(f"{prefix}{key}={_yaml_value(value)}")
    return out


# ----------------------------------------------------------------------------- the workflow config

class WorkflowConfig(Section):
    """config/config.yaml; mirrors workflow/schemas/config.schema.yaml (`cotlab plan` reads it without Snakemake)."""

    experiments: list[str]
    scale: str
    train_gpus: int | None = None


def workflow_config(values: dict[str, Any], config_dir: str | Path = "config") -> WorkflowConfig:
    """Validate a workflow config: known cards, a known scale, train_gpus >= 0."""
    cfg = build(WorkflowConfig, values)
    known = card_ids(config_dir)
    for exp_id in cfg.experiments:
        if exp_id not in known:
            raise ConfigError(f"experiments={cfg.experiments!r}: {exp_id!r} is not a card; known: {', '.join(known)}")
    if not cfg.experiments:
        raise ConfigError("experiments=[]: name at least one card")
    if cfg.scale not in SCALES:
        raise ConfigError(f"scale={cfg.scale!r}: must be one of {', '.join(SCALES)}")
    if cfg.train_gpus is not None and cfg.train_gpus < 0:
        raise ConfigError(f"train_gpus={cfg.train_gpus!r}: must be >= 0 (null takes the scale's)")
    return cfg
