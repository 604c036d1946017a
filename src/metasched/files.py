"""Writing files so that a kill, a crash or a full disk never leaves a torn one.

Every file metasched writes goes through :func:`atomic_open`: the content goes to a hidden
temporary file beside the target, is flushed to disk, and replaces the target by a rename.
A process killed at any moment leaves either the old file or the new one; a failed write
removes its temporary file, and :func:`remove_stale_temporaries` removes those of killed
processes. Operating-system failures on the user's paths (full disk, read-only file system,
a directory where a file should be) become one-line :class:`MetaschedError`s.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from metasched.errors import MetaschedError

_TEMPORARY = re.compile(r"^\..+\.tmp(\d+)$")

_FIXES = {
    errno.ENOSPC: "the disk is full; free some space (the last checkpoint is intact)",
    errno.EDQUOT: "the disk quota is used up; free some space (the last checkpoint is intact)",
    errno.EROFS: "the file system is read-only; choose a writable directory",
    errno.EACCES: "permission denied; choose a directory you can write to",
    errno.EPERM: "permission denied; choose a directory you can write to",
    errno.EISDIR: "it is a directory; remove it or choose another path",
    errno.ENOTDIR: "a part of the path is a file, not a directory; choose another path",
    errno.ENOENT: "it does not exist; check the path",
    errno.EEXIST: "it already exists; choose another path",
    errno.ENAMETOOLONG: "the name is too long; choose a shorter path",
}


def os_error(error: OSError, path: Path | str | None = None) -> MetaschedError:
    """A one-line error for an operating-system failure on a user's path, naming a fix."""
    name = path if path is not None else error.filename
    fix = _FIXES.get(error.errno or 0, error.strerror or type(error).__name__)
    return MetaschedError(f"cannot write or read {str(name)!r}: {fix}")


def temporary_path(path: Path) -> Path:
    """The hidden temporary file a write of ``path`` goes through (one per process)."""
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


@contextmanager
def atomic_open(path: Path, mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """Opens a temporary file for writing; on success it replaces ``path`` atomically.

    Args:
        path: the file to (re)place.
        mode: ``"w"`` (text) or ``"wb"``.
        kwargs: passed to :func:`open` (e.g. ``newline=""`` for CSV).
    """
    path = Path(path)
    tmp = temporary_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as error:
        _discard(tmp)
        raise os_error(error, path) from error
    except BaseException:
        _discard(tmp)
        raise


def atomic_write(path: Path, content: bytes | str) -> None:
    """Writes ``content`` to ``path`` atomically."""
    with atomic_open(path, "wb" if isinstance(content, bytes) else "w") as handle:
        handle.write(content)


def _discard(tmp: Path) -> None:
    with contextlib.suppress(OSError):  # the write failed already; the caller reports that
        tmp.unlink(missing_ok=True)


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Removes temporary files left in ``folder`` by writes whose process no longer runs."""
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        found = _TEMPORARY.match(entry.name)
        if found and entry.is_file() and not _alive(int(found.group(1))):
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # this process has no write in progress when it cleans up
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def finite_json(value: Any) -> Any:
    """``value`` with every NaN or infinity replaced by None, so that it is valid JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_json(v) for v in value]
    return value


def dumps(value: Any, **kwargs: Any) -> str:
    """JSON text of ``value``; non-finite numbers become null (bare NaN is not JSON)."""
    return json.dumps(finite_json(value), allow_nan=False, **kwargs)


def save_figure(figure: Any, path: Path, dpi: int = 120) -> None:
    """Saves a matplotlib figure atomically, in the format its suffix names."""
    with atomic_open(path, "wb") as handle:
        figure.savefig(handle, format=Path(path).suffix.lstrip(".") or "png", dpi=dpi)
