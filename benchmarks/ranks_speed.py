"""Iterations per second of task-parallel training: one process against N on one machine.

Each run is a fresh ``metasched train``: one plain process, and N processes started by
``--nproc N`` (or by torchrun with ``--torchrun``, which also runs N = 1 as a group of one:
the layer's overhead). On CPUs the cores are shared out, so one process uses every core and
each of N its share. Runs alternate, and the table gives the median seconds per iteration of
each (its ``metrics.jsonl`` records, after the first few) and the ratio to the plain process.

    python benchmarks/ranks_speed.py                          # 1 plain, 2 processes, CPU
    python benchmarks/ranks_speed.py --nproc 1 --torchrun --set train.device=cuda   # 1 GPU
    python benchmarks/ranks_speed.py --nproc 2 4 8 --torchrun --set train.device=cuda
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

SETTINGS = {
    "glyphs ATS, pool 10, meta-batch 2 (Conv4-64, 28x28)": [
        "scheduler.pool_size=10",
        "train.meta_batch_size=2",
        "scheduler.ats.warmup=0",
    ],
    "glyphs ATS, pool 20, meta-batch 4": [
        "scheduler.pool_size=20",
        "train.meta_batch_size=4",
        "scheduler.ats.warmup=0",
    ],
    "glyphs uniform, meta-batch 4": [
        "scheduler.name=uniform",
        "train.meta_batch_size=4",
    ],
}
COMMON = ["train.val_every=100000", "train.val_tasks=2", "train.test_tasks=2", "train.device=cpu"]


def seconds_per_iteration(
    overrides: list[str], nproc: int, iterations: int, skip: int, torchrun: bool
) -> float:
    """``nproc`` 0: one plain process."""
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        launcher = [sys.executable, "-m"]
        if torchrun and nproc:
            launcher += ["torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", "-m"]
        command = [*launcher, "metasched", "train", "--config", "glyphs-noisy-ats"]
        for setting in [*COMMON, *overrides, f"train.iterations={iterations}"]:
            command += ["--set", setting]
        command += ["--quiet", "--run-dir", str(run)]
        if nproc and not torchrun:
            command += ["--nproc", str(nproc)]
        subprocess.run(command, check=True, capture_output=True)
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        times = [r["seconds"] for r in rows if r["kind"] == "train"][skip:]
        return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nproc", type=int, nargs="+", default=[2], help="besides one plain")
    parser.add_argument("--torchrun", action="store_true", help="launch by torchrun")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=25)
    parser.add_argument("--skip", type=int, default=5)
    parser.add_argument("--set", action="append", default=[], help="extra overrides")
    args = parser.parse_args()
    counts = [0, *args.nproc]
    how = "torchrun" if args.torchrun else "--nproc"
    header = " | ".join(f"{n} ranks ({how}) s/it" for n in args.nproc)
    ratios = " | ".join(f"{n} ranks ÷ plain" for n in args.nproc)
    print(f"| setting | 1 plain process s/it | {header} | {ratios} |")
    print("|---" * (2 + 2 * len(args.nproc)) + "|")
    for name, overrides in SETTINGS.items():
        samples: dict[int, list[float]] = {n: [] for n in counts}
        for _ in range(args.rounds):
            for n in counts:
                extra = [*overrides, *args.set]
                samples[n].append(
                    seconds_per_iteration(extra, n, args.iterations, args.skip, args.torchrun)
                )
        medians = {n: statistics.median(s) for n, s in samples.items()}
        cells = [f"{medians[n]:.3f}" for n in counts]
        cells += [f"{medians[n] / medians[0]:.2f}" for n in args.nproc]
        print(f"| {name} | {' | '.join(cells)} |", flush=True)


if __name__ == "__main__":
    main()
