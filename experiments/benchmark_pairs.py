"""Per-assay paired differences in a ``metasched benchmark`` CSV: one method against others.

Every method saw the same seeded supports of each assay, so the difference assay by assay is
the fair pairing; the interval is Student's t over the assays both methods have at that size.

    python experiments/benchmark_pairs.py docs/figures/assay-benchmark/benchmark.csv \
        --method gp-adaptive-k64 --against gp,ridge-k64,anil-k16

Given several files (benchmarks of the same assays and draws, e.g. one run evaluated with
other settings), the methods of every file after the first are named METHOD@STEM, e.g.
gp-adaptive-k64@eval10 for eval10.csv.
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from pathlib import Path

import numpy as np

from metasched.intervals import t_interval


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("benchmark_csv", type=Path, nargs="+")
    parser.add_argument("--method", required=True)
    parser.add_argument("--against", required=True, help="comma-separated methods")
    parser.add_argument("--metric", default="oos_r2")
    args = parser.parse_args()
    values: dict[tuple[str, int], dict[str, float]] = defaultdict(dict)
    for index, path in enumerate(args.benchmark_csv):
        with path.open(newline="") as handle:
            for row in csv.DictReader(handle):
                name = row["method"] if index == 0 else f"{row['method']}@{path.stem}"
                values[(name, int(row["size"]))][row["assay"]] = float(row[args.metric])
    sizes = sorted({size for _, size in values})
    print(f"| {args.method} against | K | assays | mean difference in {args.metric} (95% CI) |"
          " assays ahead |")  # fmt: skip
    print("|---|---|---|---|---|")
    for other in args.against.split(","):
        for size in sizes:
            mine, theirs = values[(args.method, size)], values[(other, size)]
            both = [a for a in mine if a in theirs and np.isfinite(mine[a] - theirs[a])]
            if len(both) < 2:
                continue
            differences = np.array([mine[a] - theirs[a] for a in both])
            half = t_interval(differences)
            ahead = np.mean(differences > 0)
            print(f"| {other} | {size} | {len(both)} | {differences.mean():+.3f} ± {half:.3f} |"
                  f" {ahead:.0%} |")  # fmt: skip


if __name__ == "__main__":
    main()
