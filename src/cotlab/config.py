"""Validated configuration: one frozen pydantic model per section, merged defaults < file < --set.

Every section rejects unknown keys and wrong types and checks its ranges before any work, and
every failure is a one-line :class:`ConfigError` naming the field, the value and what is allowed.
Nothing below the CLI reads YAML or environment variables; the CLI calls :func:`load`.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

GENERATOR_VERSION = 1
SPECIAL_TOKEN_NAMES = ("pad", "bos", "eos", "input_start", "input_end", "think_start", "think_end",
                       "answer_start", "answer_end")  # ids V-1, V-2, ..., V-9 (data.md §4.2)


class ConfigError(ValueError):
    """A bad configuration value; the message is one line naming the field, value and what is allowed."""


class Section(BaseModel):
    """Base of every config section: frozen, strict types, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def fail(field: str, value: Any, allowed: str) -> None:
    """Raise the one-line error every check uses: ``field=value: allowed``."""
    raise ConfigError(f"{field}={value!r}: {allowed}")


def require_positive(section: BaseModel, *fields: str) -> None:
    for name in fields:
        value = getattr(section, name)
        if value is not None and value <= 0:
            fail(name, value, "must be a positive integer")


class DataConfig(Section):
    """One data point of CoT-ICL Lab (data.md §1); field names follow the authors' code."""

    vocab_size: int = 1024
    """V: token ids 0..V-1 (the top 9 are reserved when special_tokens is on)."""
    n_dims: int = 10
    """d: dimension of the data embedding E (V x d)."""
    data_init_range: float = 1.0
    """s: E has i.i.d. N(0, s^2) entries."""
    n_inputs: int = 4
    """N: input tokens per example."""
    n_parents: int = 4
    """M: parents per chain token, M <= N."""
    chain_length: int = 2
    """C: chain tokens per example; the last one is the answer."""
    n_examples: int = 40
    """K: examples per sequence, the query included."""
    activation: Literal["leaky_relu", "relu", "silu", "identity"] = "leaky_relu"
    """sigma, applied between processor layers and to the mean (leaky_relu slope 0.5)."""
    h_num_layers: int = 1
    """L: bias-free d x d layers per token processor."""
    fixed_dag: bool = False
    """One DAG for every sequence (drawn from the seed unless `dag` pins it)."""
    dag: list[list[int]] | None = None
    """An explicit fixed DAG: C lists of M node ids (node j < N is x_{j+1}, N+c-1 is y_c)."""
    fixed_h: bool = False
    """Token processors from a pool built once per seed instead of fresh per sequence."""
    num_unique_h: int | None = None
    """Pool size P when fixed_h: null = one fixed set of processors, an integer = a pool of P."""
    h_pool_mode: Literal["per_sequence", "per_position"] = "per_sequence"
    """per_sequence (paper 1): an entry is C processors; per_position (paper 2): one per step."""
    special_tokens: bool = False
    """Reserve the top 9 ids for pad/bos/eos/input/think/answer delimiters (paper 2)."""
    n_sequences: int = 10_000
    """Rows in this split."""
    seed: int = 42
    """Base seed: E, pool and fixed DAG come from it; the train split uses it."""
    eval_seed: int | None = None
    """Seed of the eval split; null = seed + 1000."""

    @model_validator(mode="after")
    def _check(self) -> DataConfig:
        require_positive(self, "vocab_size", "n_dims", "n_inputs", "n_parents", "chain_length",
                         "n_examples", "h_num_layers", "n_sequences", "num_unique_h")
        for name in ("seed", "eval_seed"):
            value = getattr(self, name)
            if value is not None and value < 0:
                fail(name, value, "must be a non-negative integer (numpy SeedSequence entropy)")
        if not (math.isfinite(self.data_init_range) and self.data_init_range > 0):
            fail("data_init_range", self.data_init_range, "must be a positive finite number")
        if self.n_parents > self.n_inputs:
            fail("n_parents", self.n_parents, f"must be <= n_inputs ({self.n_inputs})")
        if self.vocab_size < self.n_reserved + 2:
            fail("vocab_size", self.vocab_size,
                 f"must be >= {self.n_reserved + 2} ({self.n_reserved} reserved special ids + 2 usable)")
        if self.num_unique_h is not None and not self.fixed_h:
            fail("num_unique_h", self.num_unique_h, "needs fixed_h=true (a pool only exists for fixed H)")
        if self.dag is not None:
            if not self.fixed_dag:
                fail("dag", self.dag, "needs fixed_dag=true")
            self._check_dag(self.dag)
        return self

    def _check_dag(self, dag: list[list[int]]) -> None:
        if len(dag) != self.chain_length:
            fail("dag", dag, f"must hold chain_length={self.chain_length} parent lists")
        for c, parents in enumerate(dag):
            if len(parents) != self.n_parents or len(set(parents)) != len(parents):
                fail("dag", dag, f"step {c} must list n_parents={self.n_parents} distinct node ids")
            if any(not 0 <= p < self.n_inputs + c for p in parents):
                fail("dag", dag, f"step {c} parents must lie in 0..{self.n_inputs + c - 1}")

    @property
    def n_reserved(self) -> int:
        """R: reserved ids at the top of the vocabulary."""
        return len(SPECIAL_TOKEN_NAMES) if self.special_tokens else 0

    @property
    def n_usable(self) -> int:
        """V_eff: ids an input or chain token can take, 0..V_eff-1."""
        return self.vocab_size - self.n_reserved

    @property
    def pool_size(self) -> int | None:
        """P, or None for fresh processors per sequence."""
        if not self.fixed_h:
            return None
        return 1 if self.num_unique_h is None else self.num_unique_h

    def special_ids(self) -> dict[str, int]:
        """Name -> id of the reserved tokens (empty when special_tokens is off)."""
        if not self.special_tokens:
            return {}
        return {name: self.vocab_size - 1 - i for i, name in enumerate(SPECIAL_TOKEN_NAMES)}

    def split_seed(self, split: str) -> int:
        if split == "train":
            return self.seed
        if split == "eval":
            return self.seed + 1000 if self.eval_seed is None else self.eval_seed
        raise ConfigError(f"split={split!r}: must be 'train' or 'eval'")


def data_slug(data: dict[str, Any]) -> str:
    """Readable part of a data id: V, K and C always; other fields only where they differ from
    DataConfig's defaults (`data` is a resolved DataConfig dict). Used by the workflow's ids too."""
    default = DataConfig().to_dict()
    parts = [f"V{data['vocab_size']}", f"K{data['n_examples']}", f"C{data['chain_length']}"]
    for key, tag in (("n_inputs", "N"), ("n_parents", "M"), ("n_dims", "d"), ("h_num_layers", "L"),
                     ("data_init_range", "s")):
        if data[key] != default[key]:
            value = f"{data[key]:g}".replace(".", "p") if isinstance(data[key], float) else data[key]
            parts.append(f"{tag}{value}")  # no dots in ids: they end at the first one in file names
    if data["activation"] != default["activation"]:
        parts.append(data["activation"])
    if data["fixed_dag"]:
        parts.append("fixdag")
    if data["fixed_h"]:
        parts.append("fixH" if data["num_unique_h"] is None else f"H{data['num_unique_h']}")
    if data["h_pool_mode"] != default["h_pool_mode"]:
        parts.append("posH")
    if data["special_tokens"]:
        parts.append("sp")
    if data["seed"] != default["seed"]:
        parts.append(f"seed{data['seed']}")
    if data["eval_seed"] not in (None, data["seed"] + 1000):  # resolved or not, the default is silent
        parts.append(f"es{data['eval_seed']}")
    return "-".join(parts)


def resolved_data(cfg: DataConfig) -> dict[str, Any]:
    """The config as a dataset's manifest stores it: eval_seed filled in, so equal data hash equally."""
    return {**cfg.to_dict(), "eval_seed": cfg.split_seed("eval")}


def data_id(cfg: DataConfig) -> str:
    """The one id of a data point, on disk and in its manifest: readable slug + hash of everything
    that determines the rows except the split size, e.g. ``V1024-K40-C2__3f9a1c2b``. Train and eval
    share it; prefix stability makes n_sequences irrelevant to which rows a given index holds."""
    identity = {**resolved_data(cfg), "generator_version": GENERATOR_VERSION}
    del identity["n_sequences"]
    return data_slug(cfg.to_dict()) + "__" + stable_hash(identity)


S = TypeVar("S", bound=BaseModel)


class YamlLoader(yaml.SafeLoader):
    """yaml.safe_load that also reads `5e-5` and `1e6` as floats (YAML 1.1 wants a dot: `5.0e-5`)."""


YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."))


def yaml_load(text: str) -> Any:
    return yaml.load(text, Loader=YamlLoader)  # a SafeLoader: no arbitrary objects


def parse_sets(sets: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``["a.b=3", "c=[1,2]"]`` -> ``{"a": {"b": 3}, "c": [1, 2]}``; values are parsed as YAML."""
    out: dict[str, Any] = {}
    for item in sets:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: must look like KEY=VALUE (e.g. vocab_size=64)")
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        try:
            node[leaf] = yaml_load(raw)
        except yaml.YAMLError:
            raise ConfigError(f"--set {item!r}: the value is not valid YAML") from None
    return out


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep merge: nested dicts merge key by key, anything else in `override` replaces."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r}: not found")
    data = yaml_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r}: must hold a mapping of keys to values")
    return data


def _section_at(cls: type[BaseModel], path: tuple) -> type[BaseModel]:
    """The (nested) section class that `path` (a pydantic error location) points into."""
    for part in path:
        field = cls.model_fields.get(str(part)) if isinstance(part, str) else None
        if field is None:
            break
        nested = [t for t in getattr(field.annotation, "__args__", (field.annotation,))
                  if isinstance(t, type) and issubclass(t, BaseModel)]
        if not nested:
            break
        cls = nested[0]
    return cls


def read_json(path: str | Path, error: type[ConfigError] = ConfigError) -> Any:
    """A JSON file's content, or a one-line `error` naming the file when it cannot be read."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise error(f"{path}: unreadable ({exc})") from None


def build(cls: type[S], values: dict[str, Any], prefix: str = "") -> S:
    """Validate `values` as `cls`, turning the first problem into a one-line ConfigError.

    Field names in the message are full paths (``prompt.recipe.p0``) prefixed with `prefix`.
    """
    try:
        return cls(**values)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(str(part) for part in err["loc"])
        where = prefix + "".join(part + "." for part in loc)
        cause = err.get("ctx", {}).get("error")
        if isinstance(cause, ConfigError):  # raised by a section's own checks: names its field
            raise ConfigError(where + str(cause)) from None
        field = where.rstrip(".") or cls.__name__
        if err["type"] == "extra_forbidden":
            allowed = ", ".join(_section_at(cls, err["loc"][:-1]).model_fields)
            raise ConfigError(f"{field}: unknown key; allowed keys are {allowed}") from None
        raise ConfigError(f"{field}={err.get('input')!r}: {err['msg']}") from None
    except ConfigError as exc:
        raise ConfigError(prefix + str(exc)) from None
    except TypeError as exc:
        raise ConfigError(f"{prefix or cls.__name__}: {exc}") from None


def load(cls: type[S], file: str | Path | None = None, sets: list[str] | tuple[str, ...] = (),
         base: dict[str, Any] | None = None) -> S:
    """Defaults < `base` < YAML `file` < `--set KEY=VALUE` items, validated as `cls`."""
    values = dict(base or {})
    if file is not None:
        values = merge(values, read_yaml(file))
    values = merge(values, parse_sets(list(sets)))
    return build(cls, values)


def stable_hash(obj: Any, length: int = 8) -> str:
    """Short SHA-256 of a JSON-able object with sorted keys (used for data_id and run_id)."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


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


def set_items(values: dict[str, Any], prefix: str = "") -> list[str]:
    """``{"a": {"b": 1}, "c": None}`` -> ``["a.b=1", "c=null"]``: nested dicts become dotted keys;
    the inverse of `parse_sets`, so a resolved point round-trips through `--set`."""
    out = []
    for key, value in values.items():
        if isinstance(value, dict) and value:
            out.extend(set_items(value, f"{prefix}{key}."))
        else:
            out.append(f"{prefix}{key}={_yaml_value(value)}")
    return out
