"""Writing files so that a kill, a crash or a full disk never leaves a torn one.

Every file metasched writes goes through :func:`atomic_open`: the content goes to a hidden
temporary file beside the target, created exclusively and never through a symbolic link, is
flushed to disk, and replaces the target by a rename (which replaces a link, never its
target). A process killed at any moment leaves either the old file or the new one; a failed
write removes its temporary file, and :func:`remove_stale_temporaries` removes those of
killed processes. Appends (:func:`append_line`) refuse a symbolic link. Directories that
metasched writes into are its own (:func:`claim_directory`): new, made by metasched (they
hold :data:`MARK`), or given with ``--force``. Operating-system failures on the user's paths
(full disk, read-only file system, a directory where a file should be) become one-line
:class:`MetaschedError`s.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from metasched.errors import MetaschedError

_TEMPORARY = re.compile(r"^\..+\.tmp(\d+)(\.[A-Za-z0-9_]+)?$")
#: The file that marks a directory metasched made (and so may write into and clean up).
MARK = ".metasched"

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
    """The prefix of the hidden temporary files a write of ``path`` goes through: the
    process id, then (for :func:`atomic_open`) a random suffix."""
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


@contextmanager
def atomic_open(path: Path, mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """Opens a temporary file for writing; on success it replaces ``path`` atomically.

    The temporary file is created with ``O_CREAT | O_EXCL | O_NOFOLLOW`` under an
    unpredictable name (:func:`tempfile.mkstemp`), so no link planted beside the target can
    redirect the write.

    Args:
        path: the file to (re)place.
        mode: ``"w"`` (text) or ``"wb"``.
        kwargs: passed to :func:`open` (e.g. ``newline=""`` for CSV).
    """
    path = Path(path)
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=temporary_path(path).name + ".")
        tmp = Path(name)
        os.fchmod(fd, 0o644)
        with open(fd, mode, **kwargs) as handle:
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


def _discard(tmp: Path | None) -> None:
    with contextlib.suppress(OSError):  # the write failed already; the caller reports that
        if tmp is not None:
            tmp.unlink(missing_ok=True)


def append_line(path: Path, line: str) -> None:
    """Appends ``line`` and a newline to ``path`` in one write, creating it if needed, and
    refusing a symbolic link (``O_NOFOLLOW``): a planted link cannot redirect the append."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise MetaschedError(
                f"{str(path)!r} is a symbolic link; metasched appends only to its own files:"
                " remove the link"
            ) from error
        raise os_error(error, path) from error
    try:
        os.write(fd, (line + "\n").encode())
    except OSError as error:
        raise os_error(error, path) from error
    finally:
        os.close(fd)


def claim_directory(
    path: Path, what: str, force: bool = False, ours: Callable[[Path], bool] | None = None
) -> None:
    """Makes ``path`` a directory metasched may write into: a new or empty one, one metasched
    made before (it holds :data:`MARK`, or ``ours`` recognises it), or any directory with
    ``force``. Refuses a file, and a directory of someone else's files, with one line naming
    the fix; marks it.

    Args:
        path: the directory.
        what: how the user gave it, e.g. ``--out``, for the message.
        force: write into a directory of other files anyway.
        ours: recognises a directory metasched wrote before the mark existed.
    """
    if path.exists() and not path.is_dir():
        raise MetaschedError(f"{what} {str(path)!r} is a file; choose a directory")
    try:
        known = path.is_dir() and ((path / MARK).exists() or (ours is not None and ours(path)))
        if path.is_dir() and not known and any(path.iterdir()) and not force:
            raise MetaschedError(
                f"{what} {str(path)!r} holds files metasched did not write; choose a new or"
                " empty directory, or pass --force to write into it anyway"
            )
        path.mkdir(parents=True, exist_ok=True)
        (path / MARK).touch()
    except OSError as error:
        raise os_error(error, path) from error


def refuse_to_replace(path: Path, inputs: list[Path], what: str, force: bool = False) -> None:
    """Refuses to write file ``path`` over one of the command's ``inputs`` (ever), or over any
    existing file unless ``force``."""
    target = path.resolve()
    for source in inputs:
        if source.exists() and source.resolve() == target:
            raise MetaschedError(
                f"{what} {str(path)!r} is also an input of this command; choose another file"
            )
    if (path.exists() or path.is_symlink()) and not force:
        raise MetaschedError(
            f"{what} {str(path)!r} exists; choose a new file, or pass --force to replace it"
        )


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


def save_figure(figure: Any, path: Path, dpi: int = 120) -> Path:
    """Lays out, saves (atomically, in the format its suffix names) and closes a matplotlib
    figure; returns ``path``."""
    import matplotlib.pyplot as plt

    figure.tight_layout()
    with atomic_open(path, "wb") as handle:
        figure.savefig(handle, format=Path(path).suffix.lstrip(".") or "png", dpi=dpi)
    plt.close(figure)
    return path
