"""How much probability a scheduler gives noisy vs clean candidates after its warm-up, per run.

Averages, over the meta-update iterations of each run directory, the policy's (temperature 1
for ATS) mean probability of a noisy and of a clean candidate, their ratio, and the fraction of
noisy tasks among those the meta-update trained on (against the pool's). For BASS it adds the
median spread (max - min) of its priorities over a pool: how far apart it tells candidates.

    python experiments/scheduler_probabilities.py runs/main/ats-seed0 runs/main/ats-seed1
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from metasched.training.metrics import read_metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+", type=Path)
    args = parser.parse_args()
    print(
        "| run | p(noisy) | p(clean) | ratio | noisy among trained tasks | noisy in pool"
        " | priority spread (median) |"
    )
    print("|---|---|---|---|---|---|---|")
    for run_dir in args.run_dirs:
        records = [
            r for r in read_metrics(run_dir / "metrics.jsonl")
            if r["kind"] == "train" and r.get("phase") == "train"
        ]  # fmt: skip
        noisy = np.mean([r["p_noisy"] for r in records if r.get("p_noisy") is not None] or [np.nan])
        clean = np.mean([r["p_clean"] for r in records if r.get("p_clean") is not None] or [np.nan])
        trained = np.mean([r["noisy"] for r in records])
        pool = np.mean([r["pool_noisy"] for r in records])
        spreads = [r["priority_spread"] for r in records if r.get("priority_spread") is not None]
        spread = f"{np.median(spreads):.2g}" if spreads else ""
        print(
            f"| {run_dir.name} | {noisy:.4f} | {clean:.4f} | {noisy / clean:.3f}"
            f" | {trained:.3f} | {pool:.3f} | {spread} |"
        )


if __name__ == "__main__":
    main()
