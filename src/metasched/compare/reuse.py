"""Which runs of a comparison are done, which resume, and which are stale (set aside, never
deleted, and run again)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from metasched.compare.methods import Job
from metasched.config import Config, config_from_dict
from metasched.errors import MetaschedError
from metasched.schedulers import SCHEDULERS
from metasched.training.checkpoint import older_copies
from metasched.training.provenance import data_mismatch, version_mismatch, warm_start_mismatch
from metasched.training.run_dir import holder


def stored_state(run_dir: Path, config: Config, baseline: str | None = None) -> tuple[str, str]:
    """(``done`` | ``resume`` | ``new`` | ``stale``, why) for a run directory.

    A run is current when its stored config, read with today's defaults for settings added
    since, uses the same settings as ``config`` and every start of it ran the current results
    versions (:mod:`metasched.training.provenance`).
    """
    if not run_dir.exists():
        return "new", ""
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        return "stale", "it holds no config.yaml"
    try:
        stored = config_from_dict(yaml.safe_load(config_path.read_text())).to_dict()
    except (yaml.YAMLError, MetaschedError):
        return "stale", "its config.yaml is unreadable"
    expected = config.to_dict()
    if _used_settings(stored) != _used_settings(expected):
        keys = _differing_keys(_used_settings(stored), _used_settings(expected))
        return "stale", f"its config differs in {', '.join(keys[:4])}"
    why = (
        version_mismatch(run_dir, config)
        or data_mismatch(run_dir, config)
        or warm_start_mismatch(run_dir, config)
    )
    if why:
        return "stale", why
    if (run_dir / "summary.json").is_file():
        return "done", ""
    if baseline:
        return "stale", "it did not finish"
    if (run_dir / "last.pt").is_file() or older_copies(run_dir / "last.pt"):
        return "resume", ""
    return "stale", "it holds no checkpoint"


def _used_settings(values: Any) -> Any:
    """A stored config without the sections of schedulers it does not run: those cannot change
    its results (as its results version counts only its own scheduler)."""
    if not isinstance(values, dict) or not isinstance(values.get("scheduler"), dict):
        return values
    scheduler = values["scheduler"]
    used = {k: v for k, v in scheduler.items() if k not in SCHEDULERS or k == scheduler.get("name")}
    return {**values, "scheduler": used}


def _differing_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        keys = []
        for key in sorted(set(a) | set(b), key=str):
            keys += _differing_keys(a.get(key), b.get(key), f"{prefix}{key}.")
        return keys
    return [] if a == b else [prefix.rstrip(".")]


def set_aside(run_dir: Path, out: Path) -> Path:
    """Moves a stale run into ``out/stale`` under a fresh name."""
    stale = out / "stale"
    stale.mkdir(parents=True, exist_ok=True)
    target = stale / run_dir.name
    n = 1
    while target.exists():
        target = stale / f"{run_dir.name}.{n}"
        n += 1
    shutil.move(str(run_dir), target)
    return target


def finished(jobs: list[Job], say: Callable[[str], None]) -> list[Job]:
    """The jobs whose runs finished with their config and today's results versions; each other
    one is named and left out (nothing is moved or run)."""
    done = []
    for job in jobs:
        state, why = stored_state(job.run_dir, job.config, job.baseline)
        if state == "done":
            done.append(job)
        else:
            reason = {"new": "not run yet", "resume": "not finished"}.get(state, why)
            say(f"{job.run_dir.name}: {reason}; left out of the tables")
    return done


def prepare(jobs: list[Job], out: Path, say: Callable[[str], None]) -> list[Job]:
    """The jobs still to run; stale directories are set aside with a message."""
    todo = []
    for job in jobs:
        busy = holder(job.run_dir) if job.run_dir.is_dir() else None
        if busy:
            raise MetaschedError(
                f"{job.run_dir} is in use by process {busy} (another comparison or run); wait"
                " for it to finish or choose another --out"
            )
        state, why = stored_state(job.run_dir, job.config, job.baseline)
        if state == "stale":
            moved = set_aside(job.run_dir, out)
            say(f"{job.run_dir.name}: {why}; moved to {moved} and run again")
            todo.append(job)
        elif state == "done":
            say(f"{job.run_dir.name}: finished with this config and results version; reused")
        else:
            say(f"{job.run_dir.name}: {'resuming' if state == 'resume' else 'to run'}")
            todo.append(job)
    return todo
