"""How much probability a scheduler gives noisy vs clean candidates after its warm-up, per run.

Averages, over the meta-update iterations of each run directory, the policy's (temperature 1
for ATS) mean probability of a noisy and of a clean candidate, their ratio, and the fraction of
noisy tasks among those the meta-update trained on (against the pool's). For BASS it adds the
median spread (max - min) of its priorities over a pool: how far apart it tells candidates.
The policy's entropy is given as a fraction of ln P (1: uniform over the pool). ``--last N``
averages over each run's last N meta-update iterations only.

    python experiments/scheduler_probabilities.py runs/main/ats-seed0 runs/main/ats-seed1
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from metasched.training.metrics import load_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+", type=Path)
    parser.add_argument("--last", type=int, default=None, help="only the last N iterations")
    args = parser.parse_args()
    print(
        "| run | p(noisy) | p(clean) | ratio | noisy among trained tasks | noisy in pool"
        " | entropy / ln P | priority spread (median) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for run_dir in args.run_dirs:
        run = load_run(run_dir)
        records = [r for r in run.train if r.get("phase") == "train"]
        records = records[-args.last :] if args.last else records
        noisy = np.mean([r["p_noisy"] for r in records if r.get("p_noisy") is not None] or [np.nan])
        clean = np.mean([r["p_clean"] for r in records if r.get("p_clean") is not None] or [np.nan])
        trained = np.mean([r["noisy"] for r in records])
        pool = np.mean([r["pool_noisy"] for r in records])
        spreads = [r["priority_spread"] for r in records if r.get("priority_spread") is not None]
        spread = f"{np.median(spreads):.2g}" if spreads else ""
        pool_size = run.config["scheduler"]["pool_size"]
        entropies = [r["entropy"] for r in records if r.get("entropy") is not None]
        entropy = f"{np.mean(entropies) / np.log(pool_size):.3f}" if entropies else ""
        print(
            f"| {run_dir.name} | {noisy:.4f} | {clean:.4f} | {noisy / clean:.3f}"
            f" | {trained:.3f} | {pool:.3f} | {entropy} | {spread} |"
        )


if __name__ == "__main__":
    main()
