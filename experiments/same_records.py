"""Do two runs have identical records? Compares metrics.jsonl line by line (all but the
wall-clock ``seconds``) and the summaries' scores: the check that a refactor left a run's
results unchanged, e.g. the same config trained on two commits.

    python experiments/same_records.py RUN_A RUN_B
    python experiments/same_records.py RUN_A RUN_B --sizes   # how far apart, not just where

With ``--sizes`` it reports, over all records, how many are identical, in how many the chosen
tasks differ, the largest relative difference of each numeric field, and both runs' test
results: the size of a difference that float round-off makes between two code versions.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from metasched.training.metrics import run_metrics, without_wall_clock


def records(run: Path) -> list[dict]:
    return [without_wall_clock(row) for row in run_metrics(run, quiet=True)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs=2, type=Path)
    parser.add_argument("--sizes", action="store_true", help="measure the differences")
    args = parser.parse_args()
    a, b = (records(run) for run in args.runs)
    if args.sizes:
        return sizes(a, b, args.runs)
    for number, (x, y) in enumerate(zip(a, b), start=1):
        if x != y:
            print(f"record {number} differs:\n  {x}\n  {y}")
            return 1
    if len(a) != len(b):
        print(f"{len(a)} records against {len(b)}")
        return 1
    scores = [json.loads((run / "summary.json").read_text())["best"] for run in args.runs]
    same = scores[0] == scores[1]
    verdict = "identical" if same else "differ"
    print(f"{len(a)} records identical; best-checkpoint test results {verdict}")
    return 0 if same else 1


def sizes(a: list[dict], b: list[dict], runs: list[Path]) -> int:
    """Prints how far two runs' records are apart; 0 if they are identical."""
    identical = sum(x == y for x, y in zip(a, b))
    chosen = sum(x.get("chosen") != y.get("chosen") for x, y in zip(a, b))
    largest: dict[str, float] = {}
    for x, y in zip(a, b):
        for key, value in x.items():
            other = y.get(key)
            if isinstance(value, float) and isinstance(other, float) and value != other:
                gap = abs(value - other) / max(abs(value), abs(other), 1e-12)
                largest[key] = max(largest.get(key, 0.0), gap)
    print(f"{identical} of {len(a)} records identical ({len(b)} in the other run)")
    print(f"chosen tasks differ in {chosen} records")
    for key, gap in sorted(largest.items(), key=lambda item: -item[1]):
        print(f"  {key}: largest relative difference {gap:.2e}")
    for run in runs:
        best = json.loads((run / "summary.json").read_text())["best"]
        print(f"{run}: best checkpoint (iteration {best['iteration']}) score {best['score']:.6f}")
    return 0 if identical == len(a) == len(b) else 1


if __name__ == "__main__":
    sys.exit(main())
