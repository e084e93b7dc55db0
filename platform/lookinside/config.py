"""Typed study configs: documented fields, parsing of command-line values, validation.

A study's config is a frozen dataclass whose fields are made with `param`, which records
the field's documentation, its provenance, and the values it may take. Everything a user
types (`--set FIELD=VALUE`, `--grid FIELD=V1,V2`) is parsed against the field's type and
checked against its range or choices before anything runs.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from typing import Any

from lookinside.errors import UserError


class ConfigError(UserError, ValueError):
    """A bad field name or value; its message is one line meant for the user."""


def param(default: Any, doc: str, source: str = "", *, low: float | None = None,
          high: float | None = None, choices: tuple | None = None, path: bool | str = False) -> Any:
    """A config field: default, what it means (doc), where its value comes from (source),
    and the closed range [low, high] or the choices it must lie in. A `path` field names a
    local file (path=True) or folder (path="dir"): it must exist, and it is made absolute so
    that every worker finds it."""
    meta = {"doc": doc, "source": source, "low": low, "high": high, "choices": choices,
            "path": path}
    return dataclasses.field(default=default, metadata=meta)


def fields(config_cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(config_cls)}


def field_types(config_cls: type) -> dict[str, Any]:
    return typing.get_type_hints(config_cls)


def _is_optional(tp: Any) -> tuple[bool, Any]:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return True, args[0]
    return False, tp


def parse_value(config_cls: type, name: str, text: str) -> Any:
    """The value of field `name` written as `text` on the command line."""
    tp = _field_type(config_cls, name)
    optional, inner = _is_optional(tp)
    if optional and text.lower() in ("none", "null", ""):
        return None
    try:
        if inner is bool:
            low = text.lower()
            if low in ("true", "1", "yes"):
                return True
            if low in ("false", "0", "no"):
                return False
            raise ValueError
        if inner is int:
            return int(text)
        if inner is float:
            value = float(text)
            if not math.isfinite(value):
                raise ValueError
            return value
        if inner is str:
            return text
        if typing.get_origin(inner) is tuple:
            item = typing.get_args(inner)[0]
            # Tuples are written with '-' between items (10-7-5), since ',' separates grid values;
            # so no item can carry a sign ('-3', '10--7' are errors, not [3] and [10, 7]).
            parts = text.replace("x", "-").split("-")
            if not all(part.strip() and part.strip()[0] not in "+-" for part in parts):
                raise ValueError
            return tuple(item(part) for part in parts)
    except ValueError:
        pass
    raise ConfigError(f"field '{name}' expects {_type_name(tp)}, got {text!r}")


def check_value(config_cls: type, name: str, value: Any) -> Any:
    """`value` if it suits field `name` (type, range, choices); else a ConfigError."""
    tp = _field_type(config_cls, name)
    meta = fields(config_cls)[name].metadata
    optional, inner = _is_optional(tp)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"field '{name}' may not be empty")
    if inner is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if typing.get_origin(inner) is tuple:
        item = typing.get_args(inner)[0]
        if isinstance(value, list):
            value = tuple(value)
        if not isinstance(value, tuple) or not value or not all(_is_instance(v, item) for v in value):
            raise ConfigError(f"field '{name}' expects {_type_name(tp)}, got {value!r}")
        items = value
    else:
        if not _is_instance(value, inner):
            raise ConfigError(f"field '{name}' expects {_type_name(tp)}, got {value!r}")
        items = (value,)
    if meta.get("path") and "://" not in value:
        folder = meta["path"] == "dir"
        if not (os.path.isdir(value) if folder else os.path.isfile(value)):
            raise ConfigError(f"field '{name}': no such {'folder' if folder else 'file'} {value!r}")
        value = os.path.abspath(value)
    low, high, choices = meta.get("low"), meta.get("high"), meta.get("choices")
    for v in items:
        if choices is not None and v not in choices:
            raise ConfigError(f"field '{name}' must be one of {', '.join(map(str, choices))}; got {v!r}")
        if low is not None and v < low or high is not None and v > high:
            bounds = f"[{'-inf' if low is None else _fmt(low)}, {_fmt(high)}]"
            raise ConfigError(f"field '{name}' must lie in {bounds}; got {v!r}")
    return value


def build(config_cls: type, values: dict[str, Any]) -> Any:
    """A validated config instance from field values (unknown names are errors)."""
    known = fields(config_cls)
    for name in values:
        if name not in known:
            raise ConfigError(f"unknown field '{name}' for {config_cls.__name__}; "
                              f"known: {', '.join(known)}")
    checked = {name: check_value(config_cls, name, v) for name, v in values.items()}
    try:
        return config_cls(**checked)
    except (ValueError, TypeError) as err:  # cross-field checks in __post_init__
        raise ConfigError(str(err)) from None


def to_dict(config: Any) -> dict[str, Any]:
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}


def from_dict(config_cls: type, values: dict[str, Any]) -> Any:
    return build(config_cls, values)


def _field_type(config_cls: type, name: str) -> Any:
    hints = field_types(config_cls)
    if name not in hints:
        raise ConfigError(f"unknown field '{name}' for {config_cls.__name__}; "
                          f"known: {', '.join(hints)}")
    return hints[name]


def _is_instance(value: Any, tp: Any) -> bool:
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, float) and math.isfinite(value)
    return isinstance(value, tp)


def _type_name(tp: Any) -> str:
    optional, inner = _is_optional(tp)
    if typing.get_origin(inner) is tuple:
        name = f"a '-'-separated list of {typing.get_args(inner)[0].__name__}"
    else:
        name = {int: "an integer", float: "a number", str: "text", bool: "true or false"}.get(
            inner, str(inner))
    return name + (" or none" if optional else "")


def _fmt(x: float | None) -> str:
    return "inf" if x is None else f"{x:g}"
