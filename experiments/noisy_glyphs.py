"""Uniform vs ATS vs the noise oracle on noisy glyphs, warm-started from a clean model.

Pre-trains one clean model (preset ``glyphs-pretrain``), then meta-trains every method from
it for the same number of meta-updates on tasks of which a fraction is noisy, over several
seeds, and prints a Markdown table of test accuracies (mean over seeds ± 95% t-interval
across seeds, and each seed's own 600-task interval) with the wall time of each run.

    python experiments/noisy_glyphs.py --out runs/noisy --seeds 0 1 2 --workers 2
    python experiments/noisy_glyphs.py --out runs/noisy-5shot --set task.k_shot=5 --seeds 0

Runs already finished in ``--out`` are reused, so an interrupted sweep can be restarted.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from multiprocessing import get_context
from pathlib import Path

import numpy as np

METHODS = {
    "uniform": ["scheduler.name=uniform"],
    "oracle": ["scheduler.name=oracle"],
    "ats": [],
    "ats-lite": ["scheduler.gradient_layers=last"],
    "ats-bf16": ["scheduler.pool_precision=bf16"],
    "ats-lite-bf16": ["scheduler.gradient_layers=last", "scheduler.pool_precision=bf16"],
    "ats-faithful": [
        "scheduler.ats.faithful=true",
        "task.reward_split=train-16",
        "scheduler.ats.lookahead_lr=0.01",
        "scheduler.ats.reward=score",
        "scheduler.ats.paired_baseline=false",
    ],
}
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571}  # Student t, two-sided 95%


def run(job: tuple[str, list[str], Path]) -> tuple[str, float]:
    """Trains one configuration in its own process (one thread) unless already done."""
    import torch

    from metasched.config import load_config
    from metasched.training.trainer import Trainer

    torch.set_num_threads(1)
    preset, overrides, run_dir = job
    if (run_dir / "summary.json").exists():
        return str(run_dir), json.loads((run_dir / "wall.json").read_text())["seconds"]
    start = time.perf_counter()
    if (run_dir / "last.pt").exists():
        trainer = Trainer.resume(run_dir)
    else:
        trainer = Trainer.create(load_config(preset, overrides), run_dir)
    trainer.fit(progress=False)
    seconds = time.perf_counter() - start
    (run_dir / "wall.json").write_text(json.dumps({"seconds": seconds}))
    print(f"done {run_dir} in {seconds:.0f} s", flush=True)
    return str(run_dir), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/noisy"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--set", action="append", default=[],
        help="extra overrides for every run (task.* and model.* ones, but noise, for the"
        " clean pre-training too)",
    )  # fmt: skip
    args = parser.parse_args()

    pretrain = args.out / "pretrain"
    clean = [
        o for o in args.set
        if o.startswith(("task.", "model.")) and not o.startswith(("task.noise", "task.flip"))
    ]  # fmt: skip
    run(("glyphs-pretrain", clean, pretrain))
    common = [f"train.init_from={pretrain / 'best.pt'}", *args.set]
    jobs = [
        ("glyphs-noisy-ats", [*common, *METHODS[m], f"seed={s}"], args.out / f"{m}-seed{s}")
        for m in sorted(args.methods, key=lambda m: not m.startswith("ats"))
        for s in args.seeds
    ]
    with get_context("spawn").Pool(args.workers) as pool:
        walls = dict(pool.map(run, jobs, chunksize=1))

    pretrained = json.loads((pretrain / "summary.json").read_text())["best"]
    print(f"warm start: {100 * pretrained['score']:.2f} ± {100 * pretrained['ci95']:.2f}%")
    print()
    print(
        "| method | test accuracy, mean over seeds ± 95% CI"
        " | per seed (± 600-task CI) | wall time per run |"
    )
    print("|---|---|---|---|")
    for method in args.methods:
        seeds = [args.out / f"{method}-seed{s}" for s in args.seeds]
        best = [json.loads((d / "summary.json").read_text())["best"] for d in seeds]
        scores = np.array([100 * b["score"] for b in best])
        half = (
            T_975.get(len(scores) - 1, 1.96) * scores.std(ddof=1) / math.sqrt(len(scores))
            if len(scores) > 1
            else float("nan")
        )
        per_seed = ", ".join(f"{100 * b['score']:.1f} ± {100 * b['ci95']:.1f}" for b in best)
        wall = np.mean([walls[str(d)] for d in seeds])
        print(
            f"| {method} | {scores.mean():.2f} ± {half:.2f}% | {per_seed} | {wall / 60:.1f} min |"
        )


if __name__ == "__main__":
    main()
