"""Experiment cards at a scale -> the runs and grid points they stand for (docs/architecture.md).

The values of one training run are layered, later wins:

    scale.defaults < card.base < scale.overrides < card.scales[scale].base < sweep values < model/format/seed

so a scale supplies what cards may change (lr, batch 64), forces what every card shares at that size
(n_train, n_eval, eval cadence; smoke also caps V at 64 and K at 8), and a card pins what is
particular to it at a scale (the quickstart's own run length, fig_activation's shorter reduced runs).

Ids are readable and unique: a slug of the values that identify a point plus a hash of everything
that defines it.
- `data_id` (`cotlab.config.data_id`, the same id the dataset's manifest carries) hashes the resolved
  DataConfig without the split size; it leaves out the prompt format and every training setting, so
  the std and cot runs of a point, and the same point in several cards, read one dataset.
- `run_id` hashes the data_id and the training values (n_train and n_eval included), and for the
  special-token formats the version of their rendering (`SPECIAL_RENDERING`); plot settings are in
  neither id.
- a probe's key (`<name>__<hash>`, its file under probes/<run_id>/) hashes its eval data_id, format
  and grid, so two cards that probe a run alike (p2_fig_alpha_dropk, p2_tab_headline) share the job.
Identical points in different cards therefore get identical ids and run once (fig_vocab V=1024 is
fig_examples K=40; fig_parents M=2 is fig_diversity regime c).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cotlab.card_schema import SCALES, Card, Layer, Override, Probe, Scale
from cotlab.config import ConfigError, DataConfig, build, data_id, merge, other_tasks, stable_hash
from cotlab.formats import FORMATS
from cotlab.train_config import TrainConfig
from cotlab.yamlio import read_yaml

SPLITS = ("train", "eval")
SPECIAL_RENDERING = 2
"""Version of the special-token formats' rendering in their run ids: 2 since the CoT-Recipe is
evaluated at permuted slots, so runs trained under the old block curriculum are not reused."""


def _where(path: Path, exc: ConfigError) -> ConfigError:
    return ConfigError(f"{path}: {exc}")


def card_ids(config_dir: str | Path = "config") -> list[str]:
    """Ids of every card under `config_dir`/experiments, sorted."""
    return sorted(p.stem for p in (Path(config_dir) / "experiments").glob("*.yaml"))


def load_card(exp_id: str, config_dir: str | Path = "config") -> Card:
    """The validated card `exp_id` (a one-line error naming the known cards if there is none)."""
    path = Path(config_dir) / "experiments" / f"{exp_id}.yaml"
    if not path.is_file():
        known = ", ".join(card_ids(config_dir)) or "none"
        raise ConfigError(f"experiments={exp_id!r}: no card {path}; known cards: {known}")
    try:
        return build(Card, read_yaml(path))
    except ConfigError as exc:
        raise _where(path, exc) from None


def load_scales(config_dir: str | Path = "config") -> dict[str, Scale]:
    """Scale name -> validated scale, in file order."""
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


def load_scale(scale: str, config_dir: str | Path = "config") -> Scale:
    scales = load_scales(config_dir)
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

    def n_rows(self, split: str) -> int:
        if split not in SPLITS:
            raise ConfigError(f"split={split!r}: must be one of {', '.join(SPLITS)}")
        return self.n_train if split == "train" else self.n_eval

    def split_config(self, split: str) -> dict[str, Any]:
        """The DataConfig values of one split, as `cotlab generate` takes them."""
        return {**self.data, "n_sequences": self.n_rows(split)}


@dataclass(frozen=True)
class Point:
    """One grid point of a card that trains nothing (coverage, data, models, hparams cards)."""

    experiment: str
    values: dict[str, Any]
    """Swept key -> value (a variant's name for named variants)."""
    seed: int
    data: DataPoint
    train: dict[str, Any]
    """The point's training values (a data card that renders prompts reads train.prompt)."""


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
    """Model init and data-order seed (train.seed)."""
    replicate: int
    """0, 1, ...: which of the card's `seeds` replicates this run is."""
    values: dict[str, Any]
    data: DataPoint
    train: dict[str, Any]
    """Training values as passed to `cotlab train --set` (prompt.format included)."""

    @property
    def data_id(self) -> str:
        return self.data.data_id

    def identity(self) -> dict[str, Any]:
        """The run as one JSON-able record: ids, card names, swept values and resolved configs."""
        return {"run_id": self.run_id, "data_id": self.data_id, "card": self.experiment,
                "source": self.source, "model": self.model, "size": self.train["model"], "format": self.format,
                "seed": self.seed, "values": self.values, "data": self.data.data, "train": self.train}


@dataclass(frozen=True)
class ProbeJob:
    """One offline evaluation of one run (a card's `probes`): `cotlab evaluate --grid ...`."""

    run_id: str
    name: str
    key: str
    """`<name>__<hash>`: names its files under probes/<run_id>/."""
    data: DataPoint
    """The eval data point: the run's, with the probe's shape fields replaced (same E and H)."""
    format: str | None
    grid: dict[str, list[Any]]

    def cli_args(self) -> list[str]:
        """`cotlab evaluate` options of this probe (a null value, e.g. force: free decoding, is `none`)."""
        args = ["--ood"] + (["--formats", self.format] if self.format else [])
        for key, values in self.grid.items():
            args += ["--grid", f"{key}=" + ",".join("none" if v is None else str(v) for v in values)]
        return args

    def identity(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "probe": self.name, "key": self.key, "data_id": self.data.data_id,
                "data": self.data.data, "format": self.format, "grid": self.grid}


def probe_jobs(run: Run, probes: dict[str, Probe]) -> list[ProbeJob]:
    """The probes of one run; a probe whose shapes the run's data cannot take fails naming it."""
    out = []
    for name, probe in probes.items():
        if not name.replace("_", "").replace("-", "").isalnum():
            raise ConfigError(f"probes.{name}: a probe name takes letters, digits, _ and - only")
        try:
            point = _data_point({**run.data.data, **probe.data}, run.data.n_train, run.data.n_eval)
        except ConfigError as exc:
            raise ConfigError(f"probes.{name}: {exc}") from None
        problem = other_tasks(build(DataConfig, run.data.split_config("eval")), build(DataConfig, point.split_config("eval")))
        if problem:
            raise ConfigError(f"probes.{name}: changes the shapes, but {problem}")
        digest = stable_hash({"data_id": point.data_id, "format": probe.format, "grid": probe.grid})
        out.append(ProbeJob(run.run_id, name, f"{name}__{digest}", point, probe.format, dict(probe.grid)))
    return out


def card_probes(exp_id: str, scale: str, config_dir: str | Path = "config") -> dict[str, Probe]:
    """The card's probes at `scale` (a scale's `probes:` replaces the card's)."""
    card = load_card(exp_id, config_dir)
    over = card.scales.get(scale, Override()).probes
    return dict(card.probes if over is None else over)


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
        raise ConfigError("sweep.seed: use the card's `seeds:` (replicates) and `reseed_data:`")
    if key not in DataConfig.model_fields:
        raise ConfigError(f"sweep.{key}: unknown key; a list sweeps a DataConfig field "
                          f"({', '.join(DataConfig.model_fields)}) or train.<field>; "
                          "named variants take a mapping name -> {data, train}")
    return [(value, Layer(data={key: value})) for value in values]


def _data_point(data: dict[str, Any], n_train: int, n_eval: int) -> DataPoint:
    cfg = build(DataConfig, {**data, "n_sequences": n_train}, prefix="data.")
    values = cfg.to_dict()
    del values["n_sequences"]
    return DataPoint(data_id(cfg), values, n_train, n_eval)


@dataclass(frozen=True)
class _Resolved:
    """A card at one scale: its grid, models, formats, seeds and value layers (lowest first)."""

    scale: Scale
    sweep: dict[str, list[Any] | dict[str, Layer]]
    models: list[str]
    formats: list[str]
    seeds: int
    """Replicates of every run."""
    reseed_data: bool
    layers: tuple[Layer, ...]


def _resolve(exp_id: str, card: Card, scale_name: str, scale: Scale, seeds: int | None) -> _Resolved:
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
    # The workflow's `seeds` wins, then the card's at this scale, the card's, the scale's.
    count = next(n for n in (seeds, over.seeds, card.seeds, scale.seeds) if n is not None)
    return _Resolved(scale, sweep, models, formats, count, card.reseed_data,
                     (scale.defaults, card.base, scale.overrides, over.base))


def _replicate_seeds(r: _Resolved, data: dict[str, Any], train: dict[str, Any]) -> list[tuple[int, int, int]]:
    """(replicate, data seed, train seed) of each replicate: seed + r, the data seed only with reseed_data."""
    data_seed = data.get("seed", DataConfig.model_fields["seed"].default)
    train_seed = train.get("seed", TrainConfig.model_fields["seed"].default)
    return [(i, data_seed + i * r.reseed_data, train_seed + i) for i in range(r.seeds)]


def resolve_card(exp_id: str, scale: str, config_dir: str | Path = "config", seeds: int | None = None
                 ) -> dict[str, Any]:
    """The card at one scale: merged base values, sweep, models (with their sizes), formats, seeds, plot."""
    card = load_card(exp_id, config_dir)
    sc = load_scale(scale, config_dir)
    r = _resolve(exp_id, card, scale, sc, seeds)
    data, train, every = _merge_layers(*r.layers)
    sweep = {k: (v if isinstance(v, list) else {name: layer.to_dict() for name, layer in v.items()})
             for k, v in r.sweep.items()}
    return {"id": exp_id, "title": card.title, "kind": card.kind, "reuse": card.reuse, "figure": card.figure,
            "data": data, "train": train, "eval_every_seqs": every, "sweep": sweep, "models": r.models,
            "model_sizes": {m: sc.model_sizes.get(m, m) for m in r.models}, "formats": r.formats,
            "seeds": r.seeds, "reseed_data": r.reseed_data, "plot": card.plot.to_dict(), "scale": scale,
            "n_cov": sc.n_cov, "note": card_note(exp_id, scale, config_dir),
            "probes": {name: probe.to_dict() for name, probe in card_probes(exp_id, scale, config_dir).items()}}


def card_note(exp_id: str, scale: str, config_dir: str | Path = "config") -> str | None:
    """The note under a card's figure at `scale`: its own, else those of the cards it reuses (a figure
    of reused runs shows what their cards' notes warn about)."""
    card = load_card(exp_id, config_dir)
    own = card.scales.get(scale, Override()).note
    if own or not card.reuse:
        return own
    notes = [card_note(source, scale, config_dir) for source in card.reuse if source != exp_id]
    return " ".join(dict.fromkeys(note for note in notes if note)) or None


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
        for model, fmt, (replicate, data_seed, seed) in itertools.product(
                r.models, r.formats, _replicate_seeds(r, data, train)):
            point_train = merge(train, {"model": r.scale.model_sizes.get(model, model), "seed": seed,
                                        "prompt": {"format": fmt}})
            n_train, n_eval, batch = point_train["n_train"], point_train["n_eval"], point_train["batch_size"]
            if "eval_every" not in point_train:
                steps = max(1, every // batch)
                point_train = {**point_train, "eval_every": steps}  # checkpoints: by wall clock
            point = _data_point({**data, "seed": data_seed}, n_train, n_eval)
            identity = {"data_id": point.data_id, "train": point_train}
            if FORMATS[fmt].special:  # paper 2's rendering changed (recipe slots permuted): new ids
                identity["rendering"] = SPECIAL_RENDERING
            digest = stable_hash(identity)
            run_id = f"{point.data_id.split('__')[0]}-{point_train['model']}-{FORMATS[fmt].slug}__{digest}"
            runs.append(Run(run_id, exp_id, source, model, fmt, seed, replicate, values, point, point_train))
    return runs


def expand(exp_id: str, scale: str, config_dir: str | Path = "config", seeds: int | None = None) -> list[Run]:
    """Every training run of card `exp_id` at `scale` (empty for cards that train nothing); `seeds`,
    when given, is the number of replicates of every run (the workflow config's `seeds`).

    A reusing card takes the runs of the cards in its `reuse` list, filtered by its own models,
    formats and replicates; `experiment` is then this card and `source` the other.
    """
    card = load_card(exp_id, config_dir)
    sc = load_scale(scale, config_dir)
    if card.kind != "runs":
        return []
    if not card.reuse:
        try:
            return _runs_of(exp_id, exp_id, _resolve(exp_id, card, scale, sc, seeds))
        except ConfigError as exc:
            raise ConfigError(f"{exp_id} at scale {scale}: {exc}") from None
    own = _resolve(exp_id, card, scale, sc, seeds)
    runs: dict[str, Run] = {}
    for source in card.reuse:
        if source == exp_id:
            raise ConfigError(f"{exp_id}: reuse: a card cannot reuse itself")
        for run in expand(source, scale, config_dir, seeds):
            keep = ((not own.models or run.model in own.models) and (not own.formats or run.format in own.formats)
                    and run.replicate < own.seeds)
            if keep and run.run_id not in runs:
                runs[run.run_id] = Run(run.run_id, exp_id, run.source, run.model, run.format, run.seed,
                                       run.replicate, run.values, run.data, run.train)
    return list(runs.values())


def points(exp_id: str, scale: str, config_dir: str | Path = "config", seeds: int | None = None) -> list[Point]:
    """Every grid point of a card that trains nothing; n_train is the scale's n_cov for coverage cards."""
    card = load_card(exp_id, config_dir)
    sc = load_scale(scale, config_dir)
    if card.kind == "runs":
        return []
    r = _resolve(exp_id, card, scale, sc, seeds if card.reseed_data else 1)
    out = []
    try:
        for values, data, train, _ in _grid(r):
            n_train = card.n_sequences or (sc.n_cov if card.kind == "coverage" else train["n_train"])
            for _, seed, _ in _replicate_seeds(r, data, train):
                out.append(Point(exp_id, values, seed, _data_point({**data, "seed": seed}, n_train, train["n_eval"]),
                                 train))
    except ConfigError as exc:
        raise ConfigError(f"{exp_id} at scale {scale}: {exc}") from None
    return out


def check_runs(runs: list[Run]) -> None:
    """Validate each run's training values as `cotlab.train.TrainConfig`, and its prompt format
    against its data point, naming the run and the field on the first problem.

    The workflow calls it when it plans (`snakemake -n` included) and `cotlab plan` before it prints.
    """
    for run in runs:
        try:
            cfg = build(TrainConfig, run.train, prefix="train.")
            cfg.check_data(build(DataConfig, run.data.split_config("train")))
        except ConfigError as exc:
            raise ConfigError(f"{run.experiment} run {run.run_id}: {exc}") from None


