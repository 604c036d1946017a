"""The assay-regression table of a comparison: per method, over seeds, the best-on-validation
checkpoint's mean and median squared Pearson R², mean and median out-of-sample R², the test
tasks with R² > 0.3, and the wall time of a run.

    python experiments/assay_table.py experiments/runs/fsmol-16-noisy

Each cell is the mean over seeds of each seed's value (± half the Student-t 95% interval over
seeds); medians are per run, over its test tasks, then averaged over seeds. A second table
pairs every method with ``--against`` (uniform) seed by seed: the mean difference in pearson R²
and in R²_os (± the t interval over the seeds both ran) and the seeds ahead. Means of R²_os can
be dominated by a few tasks whose query values barely vary (R²_os divides by their spread);
the medians are not: where one seed's mean is more than 0.5 from another's (a tail, as R²_os is
at most 1), the cell lists each seed's mean instead. A third table lists each seed's mean
pearson R².
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from metasched.intervals import format_difference, format_score, t_interval

ORDER = ["uniform", "oracle", "greedy", "spl", "focal", "daml", "paml", "bass", "agreement", "ats"]


def interval(values: list[float]) -> str:
    return format_score(statistics.fmean(values), t_interval(values), percent=False)


def number(value: float) -> str:
    return f"{value:.3f}" if abs(value) < 1e3 else f"{value:.1e}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--against", default="uniform", help="the method others are paired with")
    args = parser.parse_args()
    seeds: dict[str, dict[int, dict]] = {}  # each method's summary.json by seed
    for summary in sorted(args.out.glob("*-seed*/summary.json")):
        method, seed = summary.parent.name.rsplit("-seed", 1)
        seeds.setdefault(method, {})[int(seed)] = json.loads(summary.read_text())
    runs = {method: list(by_seed.values()) for method, by_seed in seeds.items()}
    methods = [m for m in ORDER if m in runs] + sorted(set(runs) - set(ORDER))
    print(
        "| method | seeds | pearson R² mean | pearson R² median | R²_os mean | R²_os median"
        " | tasks with R² > 0.3 | wall time per run |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for method in methods:
        best = [r["best"]["metrics"] for r in runs[method]]
        pearson = [b["pearson_r2"] for b in best]
        oos = [b["oos_r2"] for b in best]
        seconds = [r.get("train_seconds", 0) + r.get("test_seconds", 0) for r in runs[method]]
        oos_mean = [o["mean"] for o in oos]
        oos_cell = (
            interval(oos_mean)
            if max(oos_mean) - min(oos_mean) < 0.5
            else ", ".join(number(v) for v in oos_mean)
        )
        cells = [
            method,
            str(len(best)),
            interval([p["mean"] for p in pearson]),
            interval([p["median"] for p in pearson]),
            oos_cell,
            interval([o["median"] for o in oos]),
            f"{statistics.fmean(p['tasks_above_0.3'] for p in pearson):.0f}",
            f"{statistics.fmean(seconds) / 60:.1f} min",
        ]
        print("| " + " | ".join(cells) + " |")
    if args.against in seeds:
        paired(seeds, methods, args.against)
    per_seed(seeds, methods)


def paired(seeds: dict[str, dict[int, dict]], methods: list[str], against: str) -> None:
    """Each method minus ``against``, seed by seed, in mean pearson R² and mean R²_os."""
    print(f"\n| minus {against}, paired by seed (seeds ahead) | seeds | pearson R² | R²_os |")
    print("|---|---|---|---|")
    base = seeds[against]
    for method in methods:
        common = sorted(seeds[method].keys() & base.keys())
        if method == against or not common:
            continue
        cells = [method, ", ".join(str(s) for s in common)]
        for metric in ("pearson_r2", "oos_r2"):
            diff = [
                seeds[method][s]["best"]["metrics"][metric]["mean"]
                - base[s]["best"]["metrics"][metric]["mean"]
                for s in common
            ]
            cells.append(format_difference(diff, digits=3))
        print("| " + " | ".join(cells) + " |")


def per_seed(seeds: dict[str, dict[int, dict]], methods: list[str]) -> None:
    """Each method's mean test pearson R², seed by seed."""
    numbers = sorted({s for by_seed in seeds.values() for s in by_seed})
    print("\n| test pearson R² | " + " | ".join(f"seed {s}" for s in numbers) + " |")
    print("|---|" + "---|" * len(numbers))
    for method in methods:
        cells = [
            number(seeds[method][s]["best"]["metrics"]["pearson_r2"]["mean"])
            if s in seeds[method]
            else "–"
            for s in numbers
        ]
        print(f"| {method} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
