"""What code produced a run: a version of the sources its results depend on."""

from __future__ import annotations

import hashlib
import inspect
import json
import time
from pathlib import Path
from typing import Any

import torch

import metasched
from metasched.config import Config
from metasched.files import atomic_write
from metasched.schedulers import SCHEDULERS

# The layers a training run executes; the CLI, reports and comparisons do not change results.
RESULT_LAYERS = ("data", "tasks", "models", "learners", "training")
RESULT_MODULES = ("config.py", "stats.py", "allocator.py", "errors.py", "schedulers/base.py")
NOT_RESULTS = ("training/provenance.py",)  # this file only records, it changes nothing
PROVENANCE = "provenance.json"


def code_version(config: Config) -> str:
    """A short hash of the sources that can change this config's results: the training layers,
    the config, and the one scheduler it runs (other schedulers' files do not count)."""
    root = Path(metasched.__file__).parent
    files = [p for layer in RESULT_LAYERS for p in (root / layer).rglob("*.py")]
    files = [p for p in files if str(p.relative_to(root)) not in NOT_RESULTS]
    files += [root / name for name in RESULT_MODULES]
    files.append(Path(inspect.getfile(SCHEDULERS[config.scheduler.name])))
    digest = hashlib.sha256()
    for path in sorted(set(files)):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def record_start(run_dir: Path, config: Config) -> None:
    """Appends this start (creation or resume) of a run and its code version."""
    path = run_dir / PROVENANCE
    history: dict[str, Any] = {"starts": []}
    if path.is_file():
        try:
            history = json.loads(path.read_text())
        except json.JSONDecodeError:
            history = {"starts": [], "note": "an unreadable earlier provenance file was replaced"}
    history["starts"].append(
        {
            "code_version": code_version(config),
            "metasched": metasched.__version__,
            "torch": torch.__version__,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
    )
    atomic_write(path, json.dumps(history, indent=1))


def code_versions(run_dir: Path) -> list[str]:
    """The code versions every start of the run used (empty if unknown)."""
    path = run_dir / PROVENANCE
    try:
        return [s["code_version"] for s in json.loads(path.read_text())["starts"]]
    except (OSError, json.JSONDecodeError, KeyError, TypeError):
        return []
