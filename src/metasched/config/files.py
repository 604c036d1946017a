"""Configurations from presets (shipped in ``metasched/configs``) and YAML files, which may
``extend`` others."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from metasched.config.building import apply_overrides, build
from metasched.config.schema import Config
from metasched.errors import MetaschedError

MAX_CONFIG_BYTES = 1_000_000


def preset_names() -> list[str]:
    """The presets shipped in ``metasched/configs``; those of its ``paper/`` folder (the
    paper's settings) are named ``paper/<name>``."""
    folder = resources.files("metasched") / "configs"
    names = [p.name for p in folder.iterdir() if p.name.endswith(".yaml")]
    paper = folder / "paper"
    if paper.is_dir():
        names += [f"paper/{p.name}" for p in paper.iterdir() if p.name.endswith(".yaml")]
    return sorted(name.removesuffix(".yaml") for name in names)


def read_config_file(name_or_path: str, _chain: tuple[str, ...] = ()) -> dict[str, Any]:
    """The dictionary in a preset (by name) or a YAML file (by path).

    ``extends: PRESET`` (or a list of them) starts from those presets or files (a relative
    path is looked up beside the extending file first), merged in order, and sets this
    file's values over them, section by section.
    """
    path = Path(name_or_path).expanduser()
    if path.is_file():
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as error:
            raise MetaschedError(
                f"{name_or_path!r} cannot be read as a YAML text file ({type(error).__name__});"
                " give a config file"
            ) from error
    elif name_or_path in preset_names():
        text = (resources.files("metasched") / "configs" / f"{name_or_path}.yaml").read_text()
    else:
        raise MetaschedError(
            f"no preset or file named {name_or_path!r}; use one of {', '.join(preset_names())}"
            " or a path to a YAML file"
        )
    if len(text) > MAX_CONFIG_BYTES:
        raise MetaschedError(
            f"{name_or_path!r} is {len(text):,} characters long, over the {MAX_CONFIG_BYTES:,} a"
            " config may have; give a config file"
        )
    try:
        values = yaml.safe_load(text) or {}
    except RecursionError as error:
        raise MetaschedError(f"{name_or_path!r} nests too deeply to be a config") from error
    except yaml.YAMLError as error:
        reason = str(error).replace("\n", " ")
        raise MetaschedError(f"{name_or_path!r} is not valid YAML: {reason}") from error
    if not isinstance(values, dict):
        raise MetaschedError(f"{name_or_path!r} must hold a mapping of config sections")
    parents = values.pop("extends", [])
    parents = [parents] if isinstance(parents, str) else parents
    if not isinstance(parents, list) or not all(isinstance(p, str) for p in parents):
        raise MetaschedError(f"{name_or_path!r}: extends must name a preset or file, or a list")
    if name_or_path in _chain:
        raise MetaschedError(f"{name_or_path!r} extends itself through {' -> '.join(_chain)}")
    merged: dict[str, Any] = {}
    for parent in parents:
        beside = path.parent / parent  # a file's parents are found beside it first
        if path.is_file() and parent not in preset_names() and beside.is_file():
            parent = str(beside)
        merged = _merged(merged, read_config_file(parent, (*_chain, name_or_path)))
    return _merged(merged, values)


def _merged(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``update`` set over it; sections merge, other values replace."""
    result = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = _merged(result[key], value)
        else:
            result[key] = value
    return result


def load_config(name_or_path: str, overrides: list[str] | None = None) -> Config:
    """A checked :class:`Config` from a preset or YAML file plus overrides."""
    values = apply_overrides(read_config_file(name_or_path), overrides or [])
    config: Config = build(Config, values)
    return config
