"""Do two runs have identical records? Compares metrics.jsonl line by line (all but the
wall-clock ``seconds``) and the summaries' scores: the check that a refactor left a run's
results unchanged, e.g. the same config trained on two commits.

    python experiments/same_records.py RUN_A RUN_B
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def records(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs=2, type=Path)
    args = parser.parse_args()
    a, b = (records(run) for run in args.runs)
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


if __name__ == "__main__":
    sys.exit(main())
