"""Validated configuration: one frozen pydantic model per section, merged defaults < file < --set.

Every section rejects unknown keys and wrong types and checks its ranges before any work, and
every failure is a one-line :class:`ConfigError` naming the field, the value and what is allowed.
Nothing below the CLI reads YAML or environment variables; the CLI calls `cotlab.yamlio.load`.
"""

from __future__ import annotations

import hashlib
import json
import math
import reprlib
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

GENERATOR_VERSION = 1
SHAPE_FIELDS = ("n_inputs", "n_parents", "chain_length", "n_examples")
"""The per-sequence shape (N, M, C, K): each an integer or a list of choices drawn per sequence."""
SPECIAL_TOKEN_NAMES = ("pad", "bos", "eos", "input_start", "input_end", "think_start", "think_end",
                       "answer_start", "answer_end")  # ids V-1, ..., V-9 (docs/data.md, "Special tokens")


class ConfigError(ValueError):
    """A bad configuration value; the message is one line naming the field, value and what is allowed."""


class Section(BaseModel):
    """Base of every config section: frozen, strict types, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


MAX_ECHO = 200  # characters of a value echoed in an error message, at most
_ECHO = reprlib.Repr()
_ECHO.maxlevel, _ECHO.maxdict, _ECHO.maxlist, _ECHO.maxtuple, _ECHO.maxset = 3, 6, 8, 8, 6
_ECHO.maxstring, _ECHO.maxother, _ECHO.maxlong = 120, 120, 40


def clip(text: str, limit: int = MAX_ECHO) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


def short(value: Any) -> str:
    """`repr(value)` shortened reprlib-style to one line of at most MAX_ECHO characters."""
    try:
        return clip(_ECHO.repr(value).replace("\n", "\\n"))
    except ValueError:  # an int beyond Python's 4,300-digit str() limit
        return f"<{type(value).__name__} too long to print>"


def fail(field: str, value: Any, allowed: str) -> None:
    """Raise the one-line error every check uses: ``field=value: allowed`` (value shortened)."""
    raise ConfigError(f"{clip(field, 80)}={short(value)}: {allowed}")


def require_positive(section: BaseModel, *fields: str, limits: dict[str, int] | None = None) -> None:
    """Each field is None or a positive integer, at most ``limits[field]`` where one is given."""
    for name in fields:
        value = getattr(section, name)
        if value is not None and value <= 0:
            fail(name, value, "must be a positive integer")
    for name, most in (limits or {}).items():
        value = getattr(section, name)
        if value is not None and value > most:
            fail(name, value, f"must be between 1 and {most} (the cap that bounds memory and time)")


SEED_MAX = 2**32 - 1
"""Seeds of every command (data, model init, shuffling) lie in [0, SEED_MAX]: what numpy's legacy
seeding and every torch generator accept."""


def check_seed(field: str, value: int | None) -> None:
    """A one-line ConfigError unless `value` is None or a seed in [0, SEED_MAX]."""
    if value is not None and not 0 <= value <= SEED_MAX:
        fail(field, value, f"must be an integer seed in [0, {SEED_MAX}] (2**32 - 1)")


DATA_LIMITS = {"vocab_size": 2**20, "n_dims": 4096, "n_inputs": 1000, "n_parents": 1000, "chain_length": 1000,
               "n_examples": 10_000, "h_num_layers": 1000, "num_unique_h": 1_000_000, "n_sequences": 2**40}
"""Caps of DataConfig's sizes: far above the paper's (V <= 1024, d <= 50, K <= 40, C <= 5), low enough
that a typo fails at once; `cotlab generate` estimates what large combinations need."""


def _normal_choices(value: Any) -> Any:
    """[4] -> 4 and [4, 3] -> [3, 4]; anything else unchanged (and checked by the validators)."""
    if not isinstance(value, list) or not all(type(v) is int for v in value):
        return value
    return value[0] if len(value) == 1 else sorted(value)


class DataConfig(Section):
    """One data point of CoT-ICL Lab; field names follow the authors' code (docs/data.md, "Symbols and
    config fields")."""

    vocab_size: int = 1024
    """V: token ids 0..V-1 (the top 9 are reserved when special_tokens is on); at most 1,048,576 (2**20)."""
    n_dims: int = 10
    """d: dimension of the data embedding E (V x d); at most 4,096."""
    data_init_range: float = 1.0
    """s: E has i.i.d. N(0, s^2) entries."""
    n_inputs: int | list[int] = 4
    """N: input tokens per example; at most 1,000. A list of choices: drawn per sequence (paper 2)."""
    n_parents: int | list[int] = 4
    """M: parents per chain token, M <= N (with choices: M = min(M, N) per sequence)."""
    chain_length: int | list[int] = 2
    """C: chain tokens per example; the last one is the answer; at most 1,000 (or a list of choices)."""
    n_examples: int | list[int] = 40
    """K: examples per sequence, the query included; at most 10,000 (or a list of choices)."""
    activation: Literal["leaky_relu", "relu", "silu", "identity"] = "leaky_relu"
    """sigma, applied between processor layers and to the mean (leaky_relu slope 0.5)."""
    h_num_layers: int = 1
    """L: bias-free d x d layers per token processor; at most 1,000."""
    fixed_dag: bool = False
    """One DAG for every sequence (drawn from the seed unless `dag` pins it)."""
    dag: list[list[int]] | None = None
    """An explicit fixed DAG: C lists of M node ids (node j < N is x_{j+1}, N+c-1 is y_c)."""
    fixed_h: bool = False
    """Token processors from a pool built once per seed instead of fresh per sequence."""
    num_unique_h: int | None = None
    """Pool size P when fixed_h: null = one fixed set of processors, an integer = a pool of P <= 1,000,000."""
    h_pool_mode: Literal["per_sequence", "per_position"] = "per_sequence"
    """per_sequence (paper 1): an entry is C processors; per_position (paper 2): one per step."""
    special_tokens: bool = False
    """Reserve the top 9 ids for pad/bos/eos/input/think/answer delimiters (paper 2)."""
    n_sequences: int = 10_000
    """Rows in this split; at most 2**40 (`cotlab generate` also checks the disk it needs)."""
    seed: int = 42
    """Base seed in [0, 2**32 - 1]: E, pool and fixed DAG come from it; the train split uses it."""
    eval_seed: int | None = None
    """Seed of the eval split in [0, 2**32 - 1]; null = seed + 1000 (so seed <= 2**32 - 1001 then)."""

    @model_validator(mode="before")
    @classmethod
    def _one_choice_is_a_value(cls, values: Any) -> Any:
        """A one-element choice list is that value, and choices are sorted: the same distribution is
        the same dataset, data id and rows."""
        if isinstance(values, dict):
            values = {key: _normal_choices(value) if key in SHAPE_FIELDS else value for key, value in values.items()}
        return values

    @model_validator(mode="after")
    def _check(self) -> DataConfig:
        for name in SHAPE_FIELDS:
            choices = getattr(self, name)
            if isinstance(choices, list):
                if not choices:
                    fail(name, choices, "a choice list needs at least one value")
                if len(set(choices)) != len(choices):
                    fail(name, choices, "a choice list takes each value once")
                for value in choices:
                    if not 1 <= value <= DATA_LIMITS[name]:
                        fail(name, choices, f"every choice must be between 1 and {DATA_LIMITS[name]}")
        require_positive(self, "vocab_size", "n_dims", "h_num_layers", "n_sequences", "num_unique_h",
                         limits={k: v for k, v in DATA_LIMITS.items() if k not in SHAPE_FIELDS})
        for name in SHAPE_FIELDS:
            if not isinstance(getattr(self, name), list):
                require_positive(self, name, limits={name: DATA_LIMITS[name]})
        check_seed("seed", self.seed)
        check_seed("eval_seed", self.eval_seed)
        if self.eval_seed is None and self.seed > SEED_MAX - 1000:
            fail("seed", self.seed, f"must be <= {SEED_MAX - 1000} when eval_seed is null (the eval "
                 "split uses seed + 1000); set eval_seed")
        if not (math.isfinite(self.data_init_range) and self.data_init_range > 0):
            fail("data_init_range", self.data_init_range, "must be a positive finite number")
        if min(self.choices("n_parents")) > max(self.choices("n_inputs")):
            fail("n_parents", self.n_parents, f"must be <= n_inputs ({self.n_inputs}) in at least one choice")
        if not self.mixed_shapes and self.n_parents > self.n_inputs:
            fail("n_parents", self.n_parents, f"must be <= n_inputs ({self.n_inputs})")
        if self.mixed_shapes:
            mixed = next(name for name in SHAPE_FIELDS if isinstance(getattr(self, name), list))
            if not self.special_tokens:
                fail(mixed, getattr(self, mixed), "per-sequence shapes need special_tokens=true (the "
                     "delimiters mark where examples and chains end)")
            if self.fixed_dag:
                fail(mixed, getattr(self, mixed), "per-sequence shapes cannot share one fixed DAG (fixed_dag=true)")
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

    def choices(self, name: str) -> tuple[int, ...]:
        """The values a shape field (n_inputs, n_parents, chain_length, n_examples) can take."""
        value = getattr(self, name)
        return tuple(value) if isinstance(value, list) else (value,)

    def largest(self, name: str) -> int:
        """The largest value of a shape field: what padded arrays, sequence lengths and caps use."""
        return max(self.choices(name))

    @property
    def padded_dims(self) -> tuple[int, int, int, int]:
        """(K, N, M, C), each the largest choice: the dimensions of padded rows (`present_masks`)."""
        return tuple(self.largest(name) for name in ("n_examples", "n_inputs", "n_parents", "chain_length"))

    @property
    def mixed_shapes(self) -> bool:
        """Whether some shape field is a choice list drawn per sequence (docs/data.md, "Per-sequence shapes")."""
        return any(isinstance(getattr(self, name), list) for name in SHAPE_FIELDS)

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
    parts = [f"V{data['vocab_size']}", f"K{_choice_tag(data['n_examples'])}",
             f"C{_choice_tag(data['chain_length'])}"]
    for key, tag in (("n_inputs", "N"), ("n_parents", "M"), ("n_dims", "d"), ("h_num_layers", "L"),
                     ("data_init_range", "s")):
        if data[key] != default[key]:
            value = f"{data[key]:g}".replace(".", "p") if isinstance(data[key], float) else _choice_tag(data[key])
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


def other_tasks(run: DataConfig, other: DataConfig) -> str | None:
    """Why `other` (the run's data point with other shapes: a probe, `cotlab evaluate --ood`) would not
    share the run's seed-drawn objects, or None when it does. E never depends on the shapes; a fixed
    DAG is drawn for one (N, M, C), and a per_sequence H pool for the largest C."""
    if run.fixed_dag and any(run.choices(f) != other.choices(f) for f in ("n_inputs", "n_parents", "chain_length")):
        return "a fixed DAG is drawn for its n_inputs, n_parents and chain_length; other values draw another DAG"
    if (run.pool_size is not None and run.h_pool_mode == "per_sequence"
            and run.largest("chain_length") != other.largest("chain_length")):
        return ("a per_sequence H pool is drawn for the largest chain_length; another largest one draws other "
                "processors (h_pool_mode=per_position shares them)")
    return None


def _choice_tag(value: int | list[int]) -> str:
    """A shape in a data slug: 4, or choices as 3_4."""
    return "_".join(map(str, value)) if isinstance(value, list) else str(value)


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


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep merge: nested dicts merge key by key, anything else in `override` replaces."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


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
        loc = tuple(clip(str(part), 40) for part in err["loc"])
        where = prefix + "".join(part + "." for part in loc)
        cause = err.get("ctx", {}).get("error")
        if isinstance(cause, ConfigError):  # raised by a section's own checks: names its field
            raise ConfigError(where + str(cause)) from None
        field = where.removesuffix(".") or cls.__name__
        if err["type"] == "extra_forbidden":
            allowed = ", ".join(_section_at(cls, err["loc"][:-1]).model_fields)
            raise ConfigError(f"{field}: unknown key; allowed keys are {allowed}") from None
        if err["type"] == "missing":  # its input is the whole enclosing mapping: not worth echoing
            raise ConfigError(f"{field}: required, but not given") from None
        raise ConfigError(f"{field}={short(err.get('input'))}: {err['msg']}") from None
    except ConfigError as exc:
        raise ConfigError(prefix + str(exc)) from None
    except TypeError as exc:  # values is not a mapping, or has a non-string key
        raise ConfigError(f"{prefix or cls.__name__}: {clip(str(exc))}") from None


def stable_hash(obj: Any, length: int = 8) -> str:
    """Short SHA-256 of a JSON-able object with sorted keys (used for data_id and run_id)."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:length]
