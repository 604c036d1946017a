"""A run directory and its one owner.

A run directory is metasched's when metasched made it (it holds :data:`metasched.files.MARK`)
or when it holds a run (a ``provenance.json``, as runs made before the mark existed do). A new
run needs a new or empty directory, or one of metasched's that saved no checkpoint yet.
While a process trains a run (``train``, ``--resume``, ``baseline``, a ``compare`` job), it
holds an exclusive lock on the directory's ``.lock`` file, which the kernel releases when the
process ends however it ends; a second process is refused at once, with the holder's process
id. Stale temporary files are cleaned only after both checks.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path

from metasched.errors import MetaschedError
from metasched.files import MARK, os_error, remove_stale_temporaries

LOCK = ".lock"
PROVENANCE = "provenance.json"
#: What a directory made for a run may hold before the run saved a checkpoint.
OWN_FILES = {MARK, LOCK, "config.yaml", "metrics.jsonl", PROVENANCE, "best.pt"}

_held: dict[str, int] = {}  # resolved directory -> descriptor of its locked .lock file


def is_ours(run_dir: Path) -> bool:
    """Whether ``run_dir`` was made by metasched (marked, or holding a run's provenance)."""
    return (run_dir / MARK).is_file() or (run_dir / PROVENANCE).is_file()


def claim_new(run_dir: Path, started: bool) -> None:
    """Checks that ``run_dir`` may take a new run (``started``: it holds one that saved a
    checkpoint or finished), makes and marks it, locks it, and cleans its stale temporary
    files."""
    if run_dir.exists() and not run_dir.is_dir():
        raise MetaschedError(f"run directory {str(run_dir)!r} is a file; choose another")
    busy = holder(run_dir) if run_dir.is_dir() else None
    if busy:
        raise _in_use(run_dir, busy)
    if started:
        raise MetaschedError(
            f"{str(run_dir)!r} already holds a run; continue it with --resume {run_dir}"
            " (a training run) or choose another --run-dir"
        )
    try:
        entries = sorted(p.name for p in run_dir.iterdir()) if run_dir.is_dir() else []
        if entries and not is_ours(run_dir):
            raise MetaschedError(
                f"run directory {str(run_dir)!r} holds files metasched did not write"
                f" ({', '.join(entries[:3])}); choose a new or empty directory"
            )
        foreign = [name for name in entries if name not in OWN_FILES and not _temporary(name)]
        if foreign:
            raise MetaschedError(
                f"run directory {str(run_dir)!r} holds other files ({', '.join(foreign[:3])});"
                " choose a new or empty directory"
            )
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / MARK).touch()
    except OSError as error:
        raise os_error(error, run_dir) from error
    lock(run_dir)
    remove_stale_temporaries(run_dir)


def claim_existing(run_dir: Path) -> None:
    """Locks the run in ``run_dir`` (a directory holding a run's checkpoint) for this process
    and cleans its stale temporaries."""
    lock(run_dir)
    remove_stale_temporaries(run_dir)


def lock(run_dir: Path) -> None:
    """Takes the exclusive lock of ``run_dir`` for the rest of this process's life (a no-op if
    this process holds it already); refuses when another process holds it."""
    key = str(run_dir.resolve())
    if key in _held:
        return
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(run_dir / LOCK, flags, 0o644)
    except OSError as error:
        raise os_error(error, run_dir / LOCK) from error
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
        os.close(fd)
        if error.errno in (errno.EAGAIN, errno.EACCES):
            raise _in_use(run_dir, owner) from error
        raise os_error(error, run_dir / LOCK) from error
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    _held[key] = fd


def holder(run_dir: Path) -> str | None:
    """The process that holds ``run_dir``'s lock, if another one does (None: free, or held by
    this process)."""
    if str(run_dir.resolve()) in _held or not (run_dir / LOCK).is_file():
        return None
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(run_dir / LOCK, flags)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
    finally:
        os.close(fd)
    return None


def release(run_dir: Path) -> None:
    """Gives up this process's lock of ``run_dir`` (before moving it aside, say)."""
    fd = _held.pop(str(run_dir.resolve()), None)
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)


def _in_use(run_dir: Path, process: str) -> MetaschedError:
    return MetaschedError(
        f"run directory {str(run_dir)!r} is in use by process {process}; wait for it to finish"
        " (or stop it) or choose another directory"
    )


def _temporary(name: str) -> bool:
    return name.startswith(".") and ".tmp" in name
