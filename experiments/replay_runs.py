"""Does the code still give a committed run's numbers? Replays each run's first iterations
from its stored config and compares every record with the committed ones, bit for bit.

    python experiments/replay_runs.py experiments/runs/glyphs-pool-10/*-seed* --iterations 230
    python experiments/replay_runs.py RUN ... --iterations 230 --verify

A run trains from scratch in a temporary directory and stops after ``--iterations`` iterations
(a scheduler's warm-up counts); a forest run, which trains nothing, is refitted whole and its
summary compared. With ``--verify`` a run whose replay matches gets the current results
versions written into its ``provenance.json`` (``verified``: what was replayed, when, at which
commit and on which CPU), so that ``metasched compare`` reuses it; a run that differs is left
as it is, and compare will run it again. Run it from the repository root, as the sweeps ran
(stored data paths are relative to it), with nothing else training if you time it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from metasched.config import config_from_dict
from metasched.files import atomic_write
from metasched.training.baselines import run_baseline
from metasched.training.metrics import run_metrics, without_wall_clock
from metasched.training.provenance import PROVENANCE, results_version
from metasched.training.trainer import Trainer


class Enough(Exception):
    """Raised inside the loop once the replay has its iterations."""


def records(run: Path, iterations: int) -> list[dict[str, Any]]:
    return [
        without_wall_clock(r)
        for r in run_metrics(run, quiet=True)
        if r["iteration"] <= iterations and r["kind"] != "test"
    ]


def replay(run: Path, iterations: int, work: Path) -> tuple[bool, str]:
    """(whether the replay matches, a line saying how)."""
    config = config_from_dict(yaml.safe_load((run / "config.yaml").read_text()))
    if run.name.startswith("forest-seed"):
        run_baseline("forest", config, work)
        old, new = (json.loads((d / "summary.json").read_text()) for d in (run, work))
        same = without_wall_clock(old) == without_wall_clock(new)
        return same, "summary " + ("identical" if same else "differs")
    trainer = Trainer.create(config, work)
    step = trainer.train_step

    def limited() -> dict[str, Any]:
        if trainer.state.iteration >= iterations:
            raise Enough
        return step()

    trainer.train_step = limited  # type: ignore[method-assign]
    with contextlib.suppress(Enough):
        trainer.fit(progress=False)
    old = records(run, iterations)
    new = records(work, iterations)
    for number, (a, b) in enumerate(zip(old, new), start=1):
        if a != b:
            return False, f"record {number} differs (iteration {a['iteration']})"
    if len(new) < min(len(old), iterations):
        return False, f"the replay made {len(new)} records, the run {len(old)}"
    return True, f"{len(new)} records identical"


def mark_verified(run: Path, how: str) -> None:
    """Writes the current results versions into the run's provenance, with how they were
    established."""
    config = config_from_dict(yaml.safe_load((run / "config.yaml").read_text()))
    path = run / PROVENANCE
    history = json.loads(path.read_text())
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    history["verified"] = {
        "results_version": results_version(config),
        "how": how,
        "commit": commit,
        "cpu": platform.processor() or platform.machine(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    atomic_write(path, json.dumps(history, indent=1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--verify", action="store_true", help="record matching runs' versions")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    failed = 0
    for run in args.runs:
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as work:
            same, how = replay(run, args.iterations, Path(work) / "run")
        seconds = time.perf_counter() - start
        print(f"{run}: {'MATCHES' if same else 'DIFFERS'}: {how} ({seconds:.0f} s)", flush=True)
        failed += not same
        if same and args.verify:
            mark_verified(run, f"replayed the first {args.iterations} iterations: {how}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
