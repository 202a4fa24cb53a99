"""YAML in and out: safe, strict reading of config files and `--set` values, and the `--set` items
that give a resolved config back (docs/architecture.md, "From a card to jobs").

Every problem is a one-line ConfigError naming the file (and line) or the `--set` item.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import re
from pathlib import Path
from typing import Any

import yaml

from cotlab.config import S, ConfigError, build, clip, merge, short


def _refuse(problem: str, event_or_node: Any) -> None:
    raise yaml.MarkedYAMLError(problem=problem, problem_mark=event_or_node.start_mark)


class YamlLoader(yaml.SafeLoader):
    """yaml.safe_load, stricter: no anchors or aliases (a 1 KB file of nested aliases expands to
    gigabytes), no explicit tags (``!!python/object``, ``!!str``), no duplicate keys in a mapping;
    and `5e-5` and `1e6` read as floats (YAML 1.1 wants a dot: `5.0e-5`)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            _refuse("anchors and aliases (&name, *name) are not allowed", event)
        if getattr(event, "tag", None) is not None:
            _refuse(f"tags are not allowed (found {short(event.tag)})", event)
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<:` merges; flatten_mapping checks it
                continue
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, (str, int, float, bool)) or key is None:  # unhashable: SafeLoader says so
                if key in seen:
                    _refuse(f"duplicate key {short(key)}", key_node)
                seen.add(key)
        return super().construct_mapping(node, deep)


YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."))


def yaml_load(text: str, where: str = "YAML") -> Any:
    """`text` parsed by YamlLoader (a SafeLoader: no arbitrary objects); any problem is a one-line
    ConfigError starting with `where` (and the line, for text of several lines)."""
    try:
        return yaml.load(text, Loader=YamlLoader)
    except (yaml.YAMLError, RecursionError, ValueError) as exc:  # nested thousands deep; > 4,300 digits
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or (str(exc).splitlines() or [type(exc).__name__])[0]
        line = f" line {mark.line + 1}" if mark is not None and "\n" in text.strip() else ""
        raise ConfigError(f"{where}{line}: invalid YAML: {clip(problem)}") from None


def parse_sets(sets: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``["a.b=3", "c=[1,2]"]`` -> ``{"a": {"b": 3}, "c": [1, 2]}``; values are parsed as YAML."""
    out: dict[str, Any] = {}
    for item in sets:
        key, sep, raw = item.partition("=")
        where = f"--set {short(item)}"
        if not sep or "" in key.split("."):
            raise ConfigError(f"{where}: must look like KEY=VALUE (e.g. vocab_size=64 or prompt.format=cot)")
        node = out
        *parents, leaf = key.split(".")
        for depth, part in enumerate(parents):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{where}: {clip('.'.join(parents[:depth + 1]), 80)} is already set to "
                                  f"{short(node)}, which has no keys")
        node[leaf] = yaml_load(raw, f"{where}: the value")
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML file holding a mapping (empty: {}); a one-line ConfigError naming the file otherwise."""
    path = Path(path)
    where = f"config file {short(str(path))}"
    if not path.is_file():
        raise ConfigError(f"{where}: not found")
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError(f"{where}: unreadable ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        line = exc.object[:exc.start].count(b"\n") + 1
        raise ConfigError(f"{where} line {line}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x})") from None
    return copy.deepcopy(_parse_mapping(text, where))  # a copy: callers may change what they get


@functools.lru_cache(maxsize=256)
def _parse_mapping(text: str, where: str) -> dict[str, Any]:
    """The mapping in a config file's text. Cached by content: planning a workflow reads
    config/scales.yaml and each card dozens of times, and parsing was 96% of the planning time."""
    data = yaml_load(text, where) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: must hold a mapping of keys to values")
    return data


def load(cls: type[S], file: str | Path | None = None, sets: list[str] | tuple[str, ...] = (),
         base: dict[str, Any] | None = None) -> S:
    """Defaults < `base` < YAML `file` < `--set KEY=VALUE` items, validated as `cls`."""
    values = dict(base or {})
    if file is not None:
        values = merge(values, read_yaml(file))
    values = merge(values, parse_sets(list(sets)))
    return build(cls, values)


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
