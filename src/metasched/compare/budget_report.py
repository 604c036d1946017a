"""What an equal-compute comparison found (:mod:`metasched.compare.budgets` plans its runs).

Outputs: ``OUT/budgets.md`` and ``budgets.csv`` (each method's test score at each budget, mean
and 95% interval over seeds, paired with the reference method seed by seed, the verdict those
intervals give (:func:`verdict`), where each method peaked and its wall time to each budget)
and ``OUT/cost.png`` (validation score against cost). The table marks a run that spent under
95% of a budget (e.g. one planned from a ``costs.json`` measured before costs could vary).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from metasched.compare.budgets import BudgetJob
from metasched.compare.costs import COSTS
from metasched.files import atomic_open, atomic_write, save_figure
from metasched.intervals import format_difference, format_score, score_scale, t_interval
from metasched.training.cost import IterationCost, run_cost
from metasched.training.metrics import load_run
from metasched.training.provenance import recorded_machines


@dataclass(frozen=True)
class BudgetValue:
    """One run's test score (of its best-on-validation checkpoint so far) at one budget."""

    method: str
    seed: int
    budget: float
    score: float
    steps: int
    cost: float
    minutes: float


def budget_values(planned: list[BudgetJob], costs: dict[str, IterationCost]) -> list[BudgetValue]:
    """Every finished run's value at each budget it answers for."""
    values = []
    for item in planned:
        job = item.job
        summary_path = job.run_dir / "summary.json"
        if not summary_path.is_file():
            continue
        run = load_run(job.run_dir, records_required=False)
        summary, train = run.summary or {}, run.train
        cumulative = run_cost(train, costs[job.method]) if train else np.zeros(0)
        milestones = {r["updates"]: r for r in run.milestones}
        walls = {r["iteration"]: r.get("wall_seconds") for r in run.val}
        end = max(item.steps.values())
        by_compute = job.config.train.budget
        for budget, steps in item.steps.items():
            reached = None  # the milestone record at this budget
            if by_compute is not None:  # its milestones are where it crossed a budget's cost
                final = budget == max(item.steps)
                at = by_compute.total * budget / max(item.steps) - 1e-6
                crossed = [r for r in run.milestones if r.get("spent", -1.0) >= at]
                reached = crossed[0] if crossed and not final else None
                # crossed on the last iteration, where the run tests instead of a milestone
                ends_there = bool(len(cumulative)) and cumulative[-1] >= at
                ends_there = ends_there and (len(cumulative) < 2 or cumulative[-2] < at)
                final = final or (reached is None and ends_there)
            else:
                final = bool(job.baseline) or steps == end
                reached = milestones.get(steps)
            if final:
                score = summary["best"]["score"]
                iteration = len(train)
                seconds = run.wall_seconds
                steps = sum(r.get("phase") == "train" for r in train) if by_compute else steps
            elif reached is not None:
                score = reached["score_best"]
                iteration = reached["iteration"]
                seconds = walls.get(iteration) or math.nan
                steps = reached["updates"]
            else:
                continue
            cost = float(cumulative[iteration - 1]) if iteration else 0.0
            values.append(
                BudgetValue(job.method, job.seed, budget, score, steps, cost, seconds / 60)
            )
    return values


def longest_runs(planned: list[BudgetJob]) -> list[BudgetJob]:
    """The runs that answer for their method's largest budget (baselines left out): the whole
    of a constant-rate method's runs, the largest-budget runs of one decayed per budget."""
    largest: dict[str, float] = {}
    for item in planned:
        if not item.job.baseline:
            largest[item.job.method] = max(largest.get(item.job.method, 0.0), max(item.steps))
    return [
        item
        for item in planned
        if not item.job.baseline and max(item.steps) == largest[item.job.method]
    ]


def convergence_table(planned: list[BudgetJob], costs: dict[str, IterationCost], units: int) -> str:
    """Markdown: where each method's longest runs (its largest budget) found their best
    validation checkpoint, as multiples of the uniform run's cost ``units``, mean over seeds;
    a run whose best lies in the last tenth of its cost was still improving when it stopped."""
    found: dict[str, list[tuple[float, float]]] = {}
    for item in longest_runs(planned):
        job = item.job
        if not (job.run_dir / "summary.json").is_file():
            continue
        run = load_run(job.run_dir, records_required=False)
        best = (run.summary or {}).get("best", {}).get("iteration")
        if not run.train or not best:
            continue
        cumulative = run_cost(run.train, costs[job.method])
        found.setdefault(job.method, []).append(
            (float(cumulative[best - 1]) / units, float(cumulative[-1]) / units)
        )
    lines = [
        "| method | best checkpoint at | run's end | still improving at the end (seeds) |",
        "|---|---|---|---|",
    ]
    for method, runs in found.items():
        at = np.mean([b for b, _ in runs])
        end = np.mean([e for _, e in runs])
        rising = sum(b > 0.9 * e for b, e in runs)
        lines.append(f"| {method} | {at:.1f}x | {end:.1f}x | {rising}/{len(runs)} |")
    return "\n".join(lines)


def wall_table(values: list[BudgetValue], budgets: list[float], planned: list[BudgetJob]) -> str:
    """Markdown: each method's wall time to each budget (minutes, mean over its seeds) and what
    its finished runs' starts recorded of the machine (CPU, the highest 1-minute load average
    at a start; "not recorded" for starts made before runs recorded it). Wall times compare
    only between runs on one CPU at like loads.

    Example:
        >>> v = [BudgetValue("uniform", s, 1.0, 0.9, 500, 500.0, s + 1.0) for s in (0, 1)]
        >>> print(wall_table(v, [1.0], []).splitlines()[-1])
        | uniform | 1.5 min | not recorded |
    """
    machines: dict[str, list[dict | None]] = {}
    for item in planned:
        if (item.job.run_dir / "summary.json").is_file():
            found = recorded_machines(item.job.run_dir) or [None]
            machines.setdefault(item.job.method, []).extend(found)
    cell = _cells(values)
    lines = [
        "| method | " + " | ".join(f"{b:g}x" for b in budgets) + " | measured on |",
        "|---|" + "---|" * (len(budgets) + 1),
    ]
    for method in dict.fromkeys(v.method for v in values):
        cells = []
        for budget in budgets:
            minutes = [
                v.minutes for v in cell.get((method, budget), []) if not math.isnan(v.minutes)
            ]
            cells.append(f"{np.mean(minutes):.1f} min" if minutes else "–")
        lines.append(
            f"| {method} | " + " | ".join(cells) + f" | {_machines(machines.get(method, []))} |"
        )
    return "\n".join(lines)


def _machines(starts: list[dict | None]) -> str:
    """The CPUs of ``starts`` with their highest load average, e.g. "AMD EPYC (load up to
    2.8; the CPU alone where the platform gave no load); "not recorded" where some start
    recorded none."""
    loads: dict[str, list[float]] = {}
    for start in starts:
        if start:
            load = loads.setdefault(str(start.get("cpu")), [])
            load += [start["load"]] if start.get("load") is not None else []
    parts = [f"{cpu} (load up to {max(load):.1f})" if load else cpu for cpu, load in loads.items()]
    if any(start is None for start in starts) or not starts:
        parts.append("not recorded")
    return ", ".join(parts)


def _cells(values: list[BudgetValue]) -> dict[tuple[str, float], list[BudgetValue]]:
    """``values`` grouped by (method, budget)."""
    cell: dict[tuple[str, float], list[BudgetValue]] = {}
    for v in values:
        cell.setdefault((v.method, v.budget), []).append(v)
    return cell


def _paired(
    cell: dict[tuple[str, float], list[BudgetValue]], method: str, reference: str, budget: float
) -> np.ndarray:
    """``method``'s score minus ``reference``'s at ``budget``, one per seed both have."""
    mine = {v.seed: v.score for v in cell.get((method, budget), [])}
    base = {v.seed: v.score for v in cell.get((reference, budget), [])}
    return np.array([mine[s] - base[s] for s in sorted(mine.keys() & base.keys())])


def budget_table(
    values: list[BudgetValue],
    budgets: list[float],
    percent: bool,
    reference: str | None,
    units: int,
) -> str:
    """Markdown: each method's mean ± 95% interval over seeds at each budget (in bold the best
    mean among the methods with the most seeds at that budget, so that a one-seed lead is not
    marked over three seeds; "–" where its warm-up alone exceeds the budget; "spent" with the cost
    where the runs used less than 95% of the budget, ``units`` being the uniform run's cost),
    then each method minus ``reference`` paired by seed."""
    methods = list(dict.fromkeys(v.method for v in values))
    cell = _cells(values)
    means = {key: float(np.mean([v.score for v in vs])) for key, vs in cell.items()}
    # bold: the most seeds first, then the best mean (ties are all marked)
    rank = {key: (len(vs), means[key]) for key, vs in cell.items()}
    top = {b: max((r for (_, at), r in rank.items() if at == b), default=None) for b in budgets}
    lines = [
        "| method | " + " | ".join(f"{b:g}x" for b in budgets) + " |",
        "|---|" + "---|" * len(budgets),
    ]
    for method in methods:
        cells = []
        for budget in budgets:
            runs = cell.get((method, budget), [])
            if not runs:
                cells.append("–")
                continue
            scores = [v.score for v in runs]
            text = format_score(float(np.mean(scores)), t_interval(scores), percent)
            cells.append(f"**{text}**" if rank[(method, budget)] == top[budget] else text)
            cells[-1] += f" ({len(runs)})"
            spent = float(np.mean([v.cost for v in runs])) / units
            if 0 < spent < 0.95 * budget:  # 0: a per-task baseline, which meta-trains nothing
                cells[-1] += f" spent {spent:.2g}x"
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    if reference and reference in methods:
        lines += [
            "",
            f"Paired by seed, minus {reference} (mean ± 95% t interval; seeds ahead):",
            "",
        ]
        lines += ["| method | " + " | ".join(f"{b:g}x" for b in budgets) + " |"]
        lines += ["|---|" + "---|" * len(budgets)]
        scale, digits = score_scale(percent)
        for method in methods:
            if method == reference:
                continue
            diffs = [_paired(cell, method, reference, b) * scale for b in budgets]
            cells = [format_difference(d, digits) if len(d) else "" for d in diffs]
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def verdict(
    values: list[BudgetValue],
    budgets: list[float],
    reference: str,
    percent: bool,
    reachable: dict[str, set[float]] | None = None,
) -> str:
    """Markdown: the plain verdict against ``reference`` from paired 95% intervals over seeds.

    At each budget: the best method by its mean paired difference with the reference, among
    the methods with the most seeds paired there (a one-seed lead is not ranked above a
    three-seed one), and the methods whose interval lies wholly above or below zero. Then each
    method judged by the goal "never worse than the reference at any budget and better at the
    largest". It fails where its mean difference is below zero at a budget with two or more
    paired seeds (saying whether the interval excludes zero there) or where it has no model at
    a budget (``reachable``: the budgets its runs answer for; a warm-up that outlasts a budget
    leaves none); else it is undecided while a budget has fewer than two paired seeds; else it
    meets the goal when its interval at the largest budget lies above zero.

    Example:
        >>> v = [BudgetValue(m, s, 1.0, x, 1, 1.0, 1.0) for m, xs in
        ...      {"u": [0.90, 0.91, 0.92], "a": [0.93, 0.94, 0.95]}.items()
        ...      for s, x in enumerate(xs)]
        >>> print(verdict(v, [1.0], "u", percent=True).splitlines()[-1])
        - a: meets it; at 1x +3.00 ± 0.00 (3/3)
    """
    cell = _cells(values)
    scale, digits = score_scale(percent)
    methods = [m for m in dict.fromkeys(v.method for v in values) if m != reference]
    lines = [f"| budget | best by mean | ahead of {reference} | behind it |", "|---|---|---|---|"]
    diffs = {(m, b): _paired(cell, m, reference, b) * scale for m in methods for b in budgets}
    for budget in budgets:
        if (reference, budget) not in cell:
            lines.append(f"| {budget:g}x | no run of {reference} yet | | |")
            continue
        paired = {m: diffs[(m, budget)] for m in methods if len(diffs[(m, budget)])}
        most = max(map(len, paired.values()), default=len(cell[(reference, budget)]))
        ranked = {m: float(d.mean()) for m, d in paired.items() if len(d) == most}
        if len(cell[(reference, budget)]) >= most:
            ranked[reference] = 0.0
        best = max(ranked, key=lambda m: ranked[m])
        ahead = [m for m, d in paired.items() if _excludes_zero(d) and d.mean() > 0]
        behind = [m for m, d in paired.items() if _excludes_zero(d) and d.mean() < 0]
        lines.append(
            f"| {budget:g}x | {best} ({most} seed{'s' if most > 1 else ''}) |"
            f" {', '.join(ahead) or '–'} | {', '.join(behind) or '–'} |"
        )
    largest = max(budgets)
    lines += ["", f"Never worse than {reference} at any budget and better at {largest:g}x:", ""]
    for method in methods:
        answers = reachable.get(method, set(budgets)) if reachable else set(budgets)
        unreached = [f"{b:g}x" for b in budgets if b not in answers]
        below = [
            b for b in budgets if len(diffs[(method, b)]) >= 2 and diffs[(method, b)].mean() < 0
        ]
        missing = [f"{b:g}x" for b in budgets if b in answers and len(diffs[(method, b)]) < 2]
        if unreached or below:
            where = ", ".join(unreached)
            why = [f"no model at {where} (its warm-up outlasts it)"] if unreached else []
            why += [f"behind at {b:g}x ({_how_sure(diffs[(method, b)])})" for b in below]
            lines.append(f"- {method}: fails it, {'; '.join(why)}")
            continue
        if missing:
            lines.append(f"- {method}: undecided, under two paired seeds at {', '.join(missing)}")
            continue
        last = diffs[(method, largest)]
        met = _excludes_zero(last) and last.mean() > 0
        at = f"at {largest:g}x {format_difference(last, digits)}"
        lines.append(
            f"- {method}: {'meets it' if met else f'fails it, not ahead at {largest:g}x'}; {at}"
        )
    return "\n".join(lines)


def _how_sure(differences: np.ndarray) -> str:
    """Whether a difference below zero is so by its interval or only on the mean."""
    return "its interval excludes zero" if _excludes_zero(differences) else "on the mean"


def _excludes_zero(differences: np.ndarray) -> bool:
    """Whether the Student-t 95% interval of paired differences (two or more) excludes zero."""
    return len(differences) >= 2 and abs(float(differences.mean())) > t_interval(differences)


def write_budget_outputs(
    planned: list[BudgetJob],
    costs: dict[str, IterationCost],
    budgets: list[float],
    out: Path,
    percent: bool,
    reference: str | None,
    command: str,
    units: int,
    reachable: dict[str, set[float]],
) -> list[Path]:
    """``budgets.md`` (with the command, the table at each budget, the verdict, and where
    each method peaked: ``units`` is the uniform run's cost; ``reachable`` comes from the whole
    plan, so that a run not finished yet is not taken for a warm-up that outlasts its budget),
    ``budgets.csv`` (one line per run and budget) and ``cost.png``; returns their paths."""
    values = budget_values(planned, costs)
    table = budget_table(values, budgets, percent, reference, units)
    if reference:
        judged = verdict(values, budgets, reference, percent, reachable)
        table += f"\n\nVerdict against {reference}, from the paired intervals above:\n\n{judged}"
    converged = convergence_table(planned, costs, units)
    cost_lines = [
        f"- {name}: {c.step:.2f} per meta-update"
        + (
            f", {c.warmup:.2f} per warm-up iteration ({c.warmup_iterations})"
            if c.warmup_iterations
            else ""
        )
        for name, c in sorted(costs.items())
        if name in {item.job.method for item in planned}
    ]
    markdown = out / "budgets.md"
    atomic_write(
        markdown,
        f"```bash\n{command}\n```\n\nTest score at each budget (multiples of the uniform run's"
        " cost; best-on-validation checkpoint within the budget; mean ± 95% interval over seeds,"
        f" seeds in brackets):\n\n{table}\n\nWhere each method's longest runs peaked on"
        f" validation:\n\n{converged}\n\nWall time to each budget (minutes, mean over seeds;"
        f" the machines its runs' starts recorded):\n\n{wall_table(values, budgets, planned)}"
        "\n\nCost per iteration in uniform iterations"
        f" ({COSTS}):\n\n" + "\n".join(cost_lines) + "\n",
    )
    path = out / "budgets.csv"
    with atomic_open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["method", "seed", "budget", "score", "meta_updates", "cost", "minutes"])
        for v in values:
            writer.writerow(
                [v.method, v.seed, f"{v.budget:g}", f"{v.score:.4f}", v.steps, f"{v.cost:.1f}",
                 f"{v.minutes:.2f}"]
            )  # fmt: skip
    return [markdown, path, plot_cost(planned, costs, out / "cost.png", percent)]


#: Validations per point of the cost plot's rolling mean: a validation on 100 glyph tasks
#: alone is noisy by about a point, more than most gaps between methods.
SMOOTHING = 5


def plot_cost(
    planned: list[BudgetJob], costs: dict[str, IterationCost], path: Path, percent: bool
) -> Path:
    """Validation score against cost (uniform iterations), mean over seeds per method and a
    rolling mean over ``SMOOTHING`` validations; a method run once per budget shows its largest
    budget's run."""
    import matplotlib
    from scipy.ndimage import uniform_filter1d

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for item in longest_runs(planned):
        job = item.job
        if not job.run_dir.is_dir():
            continue
        run = load_run(job.run_dir, records_required=False)
        cumulative = run_cost(run.train, costs[job.method])
        val = [r for r in run.val if r["iteration"] <= len(run.train)]
        if not val:
            continue
        x = np.array([cumulative[r["iteration"] - 1] for r in val])
        y = np.array([r["score"] for r in val]) * (100 if percent else 1)
        curves.setdefault(job.method, []).append((x, y))
    figure, axis = plt.subplots(figsize=(8, 5))
    for method, runs in curves.items():
        length = min(len(x) for x, _ in runs)
        x = np.mean([x[:length] for x, _ in runs], axis=0)
        y = uniform_filter1d(
            np.mean([y[:length] for _, y in runs], axis=0), SMOOTHING, mode="nearest"
        )
        axis.plot(x, y, label=f"{method} ({len(runs)} seed{'s' if len(runs) > 1 else ''})")
    axis.set_xscale("log")
    axis.set_xlabel("cost (uniform iterations)")
    axis.set_ylabel(
        "validation score" + (" (%)" if percent else "") + f", rolling mean of {SMOOTHING}"
    )
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    return save_figure(figure, path)
