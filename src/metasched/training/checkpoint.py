"""Checkpoints: written atomically with a checksum, kept in rotation, read back without
unpickling arbitrary objects.

A checkpoint file is a ``torch.save`` archive followed by a trailer: a marker and the
SHA-256 of the archive. ``torch.load`` ignores the trailer, so the files stay ordinary
PyTorch checkpoints; :func:`load_checkpoint` checks it, so a corrupted file is detected
instead of resuming from damaged weights. Files from before the trailer load unchecked.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from pathlib import Path
from typing import Any

import torch

from metasched.errors import MetaschedError
from metasched.files import atomic_write, os_error

CHECKPOINT_FORMAT = 1
MARKER = b"\nmetasched-sha256:"
TRAILER = len(MARKER) + 32
REQUIRED = ("config", "iteration", "model")
RESUMABLE = (
    *REQUIRED,
    "optimizer",
    "scheduler",
    "rng",
    "torch_rng",
    "best_score",
    "best_iteration",
)


def save_checkpoint(path: Path, payload: dict[str, Any], keep: int = 1) -> None:
    """Writes ``payload`` to ``path`` via a temporary file and a rename, so a crash at any
    moment leaves either the old checkpoint or the new one, never a torn file.

    Args:
        path: the file, e.g. ``last.pt``.
        payload: what to save.
        keep: how many to keep: the older ones move to ``path.1``, ``path.2``, ...
    """
    buffer = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, **payload}, buffer)
    archive = buffer.getvalue()
    if keep > 1 and path.exists():
        _rotate(path, keep)
    atomic_write(path, archive + MARKER + hashlib.sha256(archive).digest())


def rotated(path: Path, index: int) -> Path:
    """The ``index``-th older copy of ``path`` (0: ``path`` itself)."""
    return path if index == 0 else path.with_name(f"{path.name}.{index}")


def _rotate(path: Path, keep: int) -> None:
    """``path.{k}`` → ``path.{k+1}`` for the ``keep`` - 1 newest, ``path`` → ``path.1``; each
    rename is atomic, and a kill between two leaves copies that resuming still finds."""
    try:
        rotated(path, keep).unlink(missing_ok=True)  # from a run that kept more before
        for index in range(keep - 1, 0, -1):
            if rotated(path, index - 1).exists():
                os.replace(rotated(path, index - 1), rotated(path, index))
    except OSError as error:
        raise os_error(error, path) from error


def load_checkpoint(path: Path, required: tuple[str, ...] = REQUIRED) -> dict[str, Any]:
    """Reads a checkpoint with ``weights_only=True`` onto the CPU, checking its checksum and
    that it holds ``required``."""
    if not path.is_file():
        raise MetaschedError(f"checkpoint {str(path)!r} does not exist; check the path")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise os_error(error, path) from error
    archive = data
    if len(data) > TRAILER and data[-TRAILER:-32] == MARKER:
        archive = data[:-TRAILER]
        if hashlib.sha256(archive).digest() != data[-32:]:
            raise MetaschedError(
                f"checkpoint {str(path)!r} is corrupt (its checksum does not match); use an"
                " older copy (last.pt.1, ...) or start again"
            )
    try:
        with warnings.catch_warnings():  # e.g. about a pickle protocol: the error says enough
            warnings.simplefilter("ignore")
            payload = torch.load(io.BytesIO(archive), map_location="cpu", weights_only=True)
    except Exception as error:
        raise MetaschedError(
            f"checkpoint {str(path)!r} cannot be read ({type(error).__name__}); it is not a"
            " metasched checkpoint or is damaged"
        ) from error
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise MetaschedError(
            f"{str(path)!r} is not a metasched checkpoint of format {CHECKPOINT_FORMAT}"
        )
    missing = [key for key in required if key not in payload]
    if missing:
        raise MetaschedError(
            f"checkpoint {str(path)!r} lacks {', '.join(missing)}; it is damaged or was not"
            " written by metasched train"
        )
    wrong = [key for key, fits in FIELDS.items() if key in payload and not fits(payload[key])]
    if wrong:
        raise MetaschedError(
            f"checkpoint {str(path)!r} holds a damaged {', '.join(wrong)}; use an older copy"
            " (last.pt.1, ...) or start again"
        )
    return payload


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


#: What each field of a checkpoint must be; a crafted or damaged file fails here, in one line,
#: rather than deep inside the optimiser or the random generators when a run resumes.
FIELDS: dict[str, Any] = {
    "config": lambda v: isinstance(v, dict),
    "iteration": _count,
    "model": lambda v: (
        isinstance(v, dict)
        and all(isinstance(k, str) and isinstance(t, torch.Tensor) for k, t in v.items())
    ),
    "optimizer": lambda v: (
        isinstance(v, dict)
        and isinstance(v.get("state"), dict)
        and isinstance(v.get("param_groups"), list)
        and all(isinstance(g, dict) for g in v["param_groups"])
    ),
    "scheduler": lambda v: isinstance(v, dict),
    "rng": lambda v: isinstance(v, dict) and isinstance(v.get("state"), dict),
    "torch_rng": lambda v: isinstance(v, torch.Tensor) and v.dtype == torch.uint8,
    "best_score": _number,
    "best_iteration": _count,
    "updates": _count,
    "seconds": lambda v: _number(v) and v >= 0,
    "spent": lambda v: _number(v) and v >= 0,
    "inputs": lambda v: isinstance(v, dict),
}


def older_copies(path: Path) -> list[Path]:
    """``path.1``, ``path.2``, ... as they exist."""
    if not path.parent.is_dir():
        return []
    prefix = f"{path.name}."
    names = [p.name for p in path.parent.iterdir() if p.name.startswith(prefix)]
    indices = sorted(int(n[len(prefix) :]) for n in names if n[len(prefix) :].isdigit())
    return [rotated(path, i) for i in indices]


def newest_checkpoint(path: Path) -> tuple[Path, dict[str, Any]]:
    """The valid checkpoint of the highest iteration among ``path`` and its older copies;
    damaged ones are skipped with a warning."""
    found: list[tuple[int, Path, dict[str, Any]]] = []
    problems = []
    for candidate in [path, *older_copies(path)]:
        if not candidate.exists():
            continue
        try:
            payload = load_checkpoint(candidate, RESUMABLE)
        except MetaschedError as error:
            problems.append(str(error))
            continue
        found.append((int(payload["iteration"]), candidate, payload))
    if not found:
        if problems:
            raise MetaschedError(problems[0])
        raise MetaschedError(
            f"no checkpoint {str(path)!r} to resume from; the run saved none (start it again)"
        )
    for problem in problems:
        warnings.warn(f"skipped: {problem}", RuntimeWarning, stacklevel=2)
    _, chosen, payload = max(found, key=lambda item: item[0])
    return chosen, payload


def load_model_weights(model: torch.nn.Module, weights: dict[str, Any], path: Path) -> None:
    """Loads ``weights`` (from checkpoint ``path``) into ``model``, or says why they do not fit
    (another model, or weights that are NaN or infinite)."""
    bad = [
        name
        for name, value in weights.items()
        if isinstance(value, torch.Tensor) and value.is_floating_point()
        and not bool(torch.isfinite(value).all())
    ]  # fmt: skip
    if bad:
        raise MetaschedError(
            f"{str(path)!r} holds weights that are NaN or infinite ({bad[0]}): the run had"
            " diverged; use an earlier checkpoint or train again"
        )
    try:
        model.load_state_dict(weights)
    except (RuntimeError, KeyError, TypeError) as error:
        raise MetaschedError(
            f"{str(path)!r} holds a different model than this config builds (e.g. another"
            " model.filters or task.n_way); drop the --set that changed it, or pass a"
            " checkpoint trained with the same model and task settings"
        ) from error
