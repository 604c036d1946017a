"""What produced a run: the results version of every computational part it ran.

A run's numbers come from the data, task, model and learner layers, the training loop, what
every scheduler shares and its own scheduler. Each of these declares a results version, an
integer bumped on purpose in the commit that changes a number a run records (a loss, a draw, a
score): ``RESULTS_VERSION`` in the layer's ``__init__.py``, ``results_version`` on a scheduler
class. A run stores the versions it ran with; two runs of one config and one results version
record the same numbers on the same machine, so ``metasched compare`` reuses a finished run
exactly when its versions are the current ones. ``tests/golden`` replays short runs of every
scheduler in both domains and fails when a record changes while the versions stay; a change
that moves no number (a refactor, a docstring) keeps every committed run reusable.

Example:
    >>> from metasched.config import load_config
    >>> sorted(results_version(load_config("demo")))[:3]
    ['data', 'learners', 'models']
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

import metasched
from metasched import data, learners, models, schedulers, tasks, training
from metasched.config import Config
from metasched.cpu import machine
from metasched.data.identity import DataIdentity, data_identity, fingerprint
from metasched.files import atomic_write
from metasched.schedulers import SCHEDULERS

PROVENANCE = "provenance.json"
LAYERS = {
    "data": data,
    "tasks": tasks,
    "models": models,
    "learners": learners,
    "schedulers": schedulers,
    "training": training,
}

Versions = dict[str, int]


def results_version(config: Config) -> Versions:
    """The results version of each part a run of ``config`` executes: every layer, and its
    own scheduler (``scheduler.<name>``); other schedulers' versions cannot change it."""
    versions = {name: int(module.RESULTS_VERSION) for name, module in LAYERS.items()}
    name = config.scheduler.name
    versions[f"scheduler.{name}"] = int(SCHEDULERS[name].results_version)
    return versions


def record_start(run_dir: Path, config: Config) -> None:
    """Appends this start (creation or resume) of a run: the versions it runs, its data, and
    the machine (CPU, cores, load average) its wall time is measured on."""
    path = run_dir / PROVENANCE
    history: dict[str, Any] = {"starts": []}
    if path.is_file():
        try:
            history = json.loads(path.read_text())
        except json.JSONDecodeError:
            history = {"starts": [], "note": "an unreadable earlier provenance file was replaced"}
    history["starts"].append(
        {
            "results_version": results_version(config),
            "data": data_identity(config.data),
            "warm_start": warm_start_identity(config),
            "metasched": metasched.__version__,
            "torch": torch.__version__,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "machine": machine(),  # what the run's wall time was measured on
        }
    )
    atomic_write(path, json.dumps(history, indent=1))


def recorded_data(run_dir: Path) -> DataIdentity | None:
    """The data the run's latest start recorded (its resolved path and fingerprint), or None
    when no start recorded any (embedded data, or a run made before starts recorded it)."""
    recorded = [s["data"] for s in _starts(run_dir) if s.get("data")]
    return recorded[-1] if recorded else None


def recorded_machines(run_dir: Path) -> list[dict[str, Any] | None]:
    """The machine each start of the run recorded (CPU, cores, load average; None for a start
    made before starts recorded it). Empty if the file is missing or unreadable."""
    return [s.get("machine") for s in _starts(run_dir)]


def _starts(run_dir: Path) -> list[dict[str, Any]]:
    """Every start the run's provenance records ({} for a malformed one); empty if the file
    is missing or unreadable."""
    try:
        starts = json.loads((run_dir / PROVENANCE).read_text())["starts"]
        return [s if isinstance(s, dict) else {} for s in starts]
    except (OSError, json.JSONDecodeError, KeyError, TypeError):
        return []


def data_mismatch(run_dir: Path, config: Config) -> str:
    """Why ``config.data`` would not read the data the run in ``run_dir`` was trained on
    (empty when it would, or when there is nothing to compare)."""
    recorded = recorded_data(run_dir)
    if recorded is None:
        return ""
    current = data_identity(config.data)
    if current is not None and current["fingerprint"] == recorded["fingerprint"]:
        return ""
    found = f"resolves to {current['path']}, which holds other data" if current else "is missing"
    return f"it was trained on {recorded['path']}; from here data.root={config.data.root} {found}"


def warm_start_identity(config: Config) -> DataIdentity | None:
    """The resolved path and fingerprint of the checkpoint ``train.init_from`` names (None
    without one, or when it does not exist)."""
    if not config.train.init_from:
        return None
    path = Path(config.train.init_from).expanduser().resolve()
    return {"path": str(path), "fingerprint": fingerprint(path)} if path.is_file() else None


def warm_start_mismatch(run_dir: Path, config: Config) -> str:
    """Why the run in ``run_dir`` did not start from the checkpoint ``train.init_from`` holds
    now (empty when it did, or when there is nothing to compare: a run that recorded none)."""
    recorded = [s["warm_start"] for s in _starts(run_dir) if "warm_start" in s]
    first = recorded[0] if recorded else None
    began = first.get("fingerprint") if isinstance(first, dict) else None
    current = warm_start_identity(config)
    if began is None or current is None or began == current["fingerprint"]:
        return ""
    return f"its warm start {config.train.init_from} has changed since it began"


def recorded_versions(run_dir: Path) -> list[Versions | None]:
    """The results versions of every start of the run. A start that recorded none (a run made
    before versions existed) takes those a replay verified (``verified``, written by
    ``experiments/replay_runs.py --verify``), or None. Empty if the file is missing or
    unreadable."""
    try:
        history = json.loads((run_dir / PROVENANCE).read_text())
        verified = (history.get("verified") or {}).get("results_version")
        return [
            (s.get("results_version") if isinstance(s, dict) else None) or verified
            for s in history["starts"]
        ]
    except (OSError, json.JSONDecodeError, KeyError, TypeError, AttributeError):
        return []


def version_mismatch(run_dir: Path, config: Config) -> str:
    """Why the run in ``run_dir`` does not carry the current results versions of ``config``
    (empty when every start of it does)."""
    current = results_version(config)
    starts = recorded_versions(run_dir)
    if not starts:
        return "it records no results version"
    for number, versions in enumerate(starts, start=1):
        if versions is None:
            return f"start {number} of it records no results version"
        changed = sorted(
            k for k in current.keys() | versions.keys() if versions.get(k) != current.get(k)
        )
        if changed:
            parts = ", ".join(f"{k} {versions.get(k)} -> {current.get(k)}" for k in changed)
            return f"it ran other results versions ({parts})"
    return ""
