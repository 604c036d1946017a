"""``metasched demo``: uniform sampling and ATS side by side on noisy glyphs, in minutes.

A short clean pre-training gives the warm start (as the paper does in its noisy setting);
then uniform sampling and ATS each train from it for the same number of meta-updates on
tasks of which 60% have random support labels. Both are tested on the same 600 clean
meta-test tasks, and the scheduler's probabilities of clean and noisy candidates are plotted.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from metasched.config import load_config
from metasched.errors import MetaschedError
from metasched.files import os_error
from metasched.report import write_report
from metasched.training.trainer import Trainer

MARK = ".metasched-demo"  # in a directory the demo made, so a rerun may replace its runs
STAGES = ("pretrain", "uniform", "ats")


def run_demo(out: Path, progress: bool = True) -> tuple[str, list[Path]]:
    """Runs the three stages into ``out``: a new or empty directory, or an earlier demo's,
    whose runs it replaces (nothing else is ever deleted)."""
    if out.exists() and not out.is_dir():
        raise MetaschedError(f"--out {str(out)!r} is a file; choose a directory")
    if out.is_dir() and any(out.iterdir()) and not (out / MARK).exists():
        raise MetaschedError(
            f"--out {str(out)!r} is not empty and was not made by metasched demo; choose a new"
            " or empty directory"
        )
    try:
        for name in STAGES:
            shutil.rmtree(out / name, ignore_errors=True)
        out.mkdir(parents=True, exist_ok=True)
        (out / MARK).touch()
    except OSError as error:
        raise os_error(error) from error
    stages = [
        ("pretrain", "demo-pretrain", []),
        ("uniform", "demo-noisy", ["scheduler.name=uniform"]),
        ("ats", "demo-noisy", []),
    ]
    for name, preset, overrides in stages:
        if name != "pretrain":
            overrides = [*overrides, f"train.init_from={out / 'pretrain' / 'best.pt'}"]
        start = time.perf_counter()
        print(f"== {name}: metasched train --config {preset} {' '.join(overrides)}", flush=True)
        summary = Trainer.create(load_config(preset, overrides), out / name).fit(progress)
        best = summary["best"]
        print(
            f"   test accuracy {100 * best['score']:.2f} ± {100 * best['ci95']:.2f}%"
            f" ({time.perf_counter() - start:.0f} s)",
            flush=True,
        )
    return write_report([out / "uniform", out / "ats"], out)
