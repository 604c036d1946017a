"""Per-seed differences between one method and every other in a comparison's results.csv.

Seeds share the warm start, so the difference seed by seed is the fairer pairing; the
interval is Student's t over the seeds both methods ran.

    python experiments/paired_differences.py docs/figures/glyphs-noisy/results.csv --against ats

Given several files (comparisons of the same seeds in two settings), the methods of every file
after the first are named METHOD@FOLDER, e.g. uniform@fsmol-16-raw.
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
    parser.add_argument("results_csv", type=Path, nargs="+")
    parser.add_argument("--against", default="ats", help="the method others are compared with")
    args = parser.parse_args()
    best: dict[str, dict[int, float]] = defaultdict(dict)
    for index, path in enumerate(args.results_csv):
        with open(path, newline="") as handle:
            for row in csv.DictReader(handle):
                name = row["method"] if index == 0 else f"{row['method']}@{path.parent.name}"
                best[name][int(row["seed"])] = float(row["best"])
    reference = best[args.against]
    print(f"| {args.against} − | per seed | mean ± 95% CI |")
    print("|---|---|---|")
    for method, seeds in best.items():
        common = sorted(set(seeds) & set(reference))
        if method == args.against or not common:
            continue
        diff = np.array([reference[s] - seeds[s] for s in common])
        half = t_interval(diff)
        per_seed = ", ".join(f"{d:+.2f}" for d in diff)
        print(f"| {method} | {per_seed} | {diff.mean():+.2f} ± {half:.2f} |")


if __name__ == "__main__":
    main()
