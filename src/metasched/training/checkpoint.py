"""Checkpoints: written atomically, read back without unpickling arbitrary objects."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from metasched.errors import MetaschedError

CHECKPOINT_FORMAT = 1


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Writes ``payload`` to ``path`` via a temporary file and a rename, so a crash at any
    moment leaves either the old checkpoint or the new one, never a torn file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as handle:
        torch.save({"format": CHECKPOINT_FORMAT, **payload}, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Reads a checkpoint with ``weights_only=True`` onto the CPU."""
    if not path.is_file():
        raise MetaschedError(f"checkpoint {str(path)!r} does not exist; check the path")
    try:
        payload: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise MetaschedError(
            f"checkpoint {str(path)!r} cannot be read ({type(error).__name__}); it is not a"
            " metasched checkpoint or is damaged"
        ) from error
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise MetaschedError(
            f"{str(path)!r} is not a metasched checkpoint of format {CHECKPOINT_FORMAT}"
        )
    return payload
