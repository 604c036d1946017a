"""Building typed configurations from plain dictionaries (YAML), with ``key=value``
overrides; a wrong type or an unknown key is one line naming the key."""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import reprlib
import types
import typing
from typing import Any, Union

import yaml

from metasched.config.schema import Config, SchedulerConfig
from metasched.errors import MetaschedError
from metasched.schedulers import SCHEDULERS

_EXPONENT_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _type_name(kind: Any) -> str:
    return getattr(kind, "__name__", None) or str(kind).replace("typing.", "")


def _coerce(value: Any, kind: Any, key: str) -> Any:
    """Checks ``value`` against a field type, converting int to float where a float is due."""
    origin = typing.get_origin(kind)
    if origin in (Union, types.UnionType):
        for option in typing.get_args(kind):
            try:
                return _coerce(value, option, key)
            except MetaschedError:
                continue
        raise MetaschedError(f"{key}={_shown(value)} is not a valid {_type_name(kind)}")
    if kind is type(None):
        if value is None:
            return None
    elif origin is list:
        (item,) = typing.get_args(kind)
        if isinstance(value, list):
            return [_coerce(v, item, key) for v in value]
    elif dataclasses.is_dataclass(kind):
        if isinstance(value, dict):
            return build(kind, value, key + ".")
    elif kind is float:
        number = None
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str) and _EXPONENT_FLOAT.fullmatch(value.strip()):
            number = float(value)  # YAML 1.1 reads 1e-4 (no dot) as a string
        if number is not None:
            if not math.isfinite(number):
                raise MetaschedError(f"{key}={_shown(value)} is not a finite number; give one")
            return number
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif kind in (bool, str) and isinstance(value, kind):
        return value
    raise MetaschedError(f"{key}={_shown(value)} is not a valid {_type_name(kind)}")


def _shown(value: Any) -> str:
    """A value as an error message shows it: its repr, cut short (a YAML file of nested
    aliases expands to an exponentially long one)."""
    shown = reprlib.Repr()
    shown.maxlevel, shown.maxstring, shown.maxother = 3, 60, 60
    return shown.repr(value)


def build(cls: Any, values: dict[str, Any], prefix: str = "") -> Any:
    """Builds dataclass ``cls`` from a nested dictionary, rejecting unknown keys."""
    if not isinstance(values, dict):
        raise MetaschedError(f"{prefix.rstrip('.') or 'the config'} must be a mapping of settings")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs: dict[str, Any] = {}
    if cls is SchedulerConfig:
        names.remove("options")
        sections = {k: v for k, v in values.items() if k in SCHEDULERS}
        values = {k: v for k, v in values.items() if k not in SCHEDULERS}
        kwargs["options"] = {
            name: build(SCHEDULERS[name].Options, section or {}, f"{prefix}{name}.")
            for name, section in sections.items()
        }
        names = [*names, *SCHEDULERS]
    for key, value in values.items():
        full = f"{prefix}{key}"
        if key not in names:
            owners = [
                n
                for n, c in SCHEDULERS.items()
                if key in {f.name for f in dataclasses.fields(c.Options)}
            ]
            if cls is SchedulerConfig and owners:
                raise MetaschedError(
                    f"{full!r} is a setting of the {', '.join(owners)} scheduler; write it in its"
                    f" section, e.g. {prefix}{owners[0]}.{key}"
                )
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = (
                f"; did you mean {prefix}{close[0]}?" if close else f"; known: {', '.join(names)}"
            )
            raise MetaschedError(f"unknown config key {full!r}{hint}")
        kwargs[key] = _coerce(value, hints[key], full)
    return cls(**kwargs)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.iterations=200"`` to (["train", "iterations"], 200); values are YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise MetaschedError(f"override {text!r} is not key=value; write e.g. train.iterations=200")
    if any("\udc80" <= c <= "\udcff" for c in raw):  # bytes the file system name kept raw
        raise MetaschedError(
            f"override {text!r}: the value holds bytes that are not UTF-8 (a file name in"
            " another encoding?); rename the file or folder"
        )
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as error:
        raise MetaschedError(f"override {text!r}: the value is not valid YAML") from error
    return key.strip().split("."), value


def apply_overrides(values: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Sets each ``a.b=c`` in a nested dictionary (a copy)."""
    result = yaml.safe_load(yaml.safe_dump(values))
    for text in overrides:
        path, value = parse_override(text)
        node = result
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise MetaschedError(f"override {text!r}: {part!r} is not a section")
            node = child
        node[path[-1]] = value
    return result


def config_from_dict(values: dict[str, Any], overrides: list[str] | None = None) -> Config:
    """A checked :class:`Config` from a dictionary (as saved in a run) plus overrides."""
    config: Config = build(Config, apply_overrides(values, overrides or []))
    return config
