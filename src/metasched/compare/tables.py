"""A comparison's table: each method's test score over seeds, with the controls' columns, as
Markdown, CSV and a plot."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from metasched.compare.methods import GAP_ENDS, Job
from metasched.errors import MetaschedError
from metasched.files import atomic_open, atomic_write, save_figure
from metasched.intervals import t_interval
from metasched.training.metrics import load_run


@dataclass(frozen=True)
class Row:
    """One method's results over its seeds."""

    method: str
    seeds: list[int]
    best: list[float]
    best_ci: list[float]
    final: list[float]
    noisy_trained: list[float]
    skewed_trained: list[float]
    minutes: list[float]
    reward_tasks: list[int]
    oos_r2: list[float]

    @property
    def mean(self) -> float:
        return float(np.mean(self.best))

    @property
    def half_width(self) -> float:
        """95% Student-t interval of the mean over seeds (NaN for one seed)."""
        return t_interval(self.best)


@dataclass(frozen=True)
class Table:
    """Every method's row; scores are in percent when ``percent`` (accuracy), else plain."""

    rows: list[Row]
    warm_start: tuple[float, float] | None
    score_name: str = "accuracy"
    percent: bool = True

    @property
    def label(self) -> str:
        from metasched.learners.objectives import score_label

        return score_label(self.score_name)

    def number(self, value: float) -> str:
        """A score as the table prints it: ``95.12%`` or ``0.312``."""
        return f"{value:.2f}%" if self.percent else f"{value:.3f}"

    def row(self, method: str) -> Row | None:
        return next((r for r in self.rows if r.method == method), None)

    def gap(self, row: Row) -> float:
        """The fraction of the uniform-to-oracle gap recovered (NaN without both)."""
        uniform, oracle = (self.row(name) for name in GAP_ENDS)
        if uniform is None or oracle is None or oracle.mean == uniform.mean:
            return math.nan
        return (row.mean - uniform.mean) / (oracle.mean - uniform.mean)


def summarise(jobs: list[Job], pretrain_dir: Path | None) -> Table:
    """Reads every finished run of the comparison."""
    runs = {
        job.run_dir: load_run(job.run_dir, records_required=False)
        for job in jobs
        if (job.run_dir / "summary.json").is_file()
    }
    names = {
        (run.summary.get("score_name", "accuracy"), run.summary.get("score_percent", True))
        for run in runs.values()
        if run.summary is not None
    }
    if len(names) > 1:
        raise MetaschedError(f"the runs mix scores {sorted(names)}; compare one domain at a time")
    score_name, percent = names.pop() if names else ("accuracy", True)
    scale = 100.0 if percent else 1.0
    rows = []
    for method in dict.fromkeys(j.method for j in jobs):
        values: dict[str, list[Any]] = {k: [] for k in Row.__dataclass_fields__ if k != "method"}
        for job in (j for j in jobs if j.method == method and j.run_dir in runs):
            run = runs[job.run_dir]
            summary = run.summary or {}
            train = [r for r in run.train if r.get("phase") == "train"]
            values["seeds"].append(job.seed)
            values["best"].append(scale * summary["best"]["score"])
            values["best_ci"].append(scale * summary["best"]["ci95"])
            values["final"].append(scale * summary["final"]["score"])
            oos = summary["best"].get("metrics", {}).get("oos_r2", {}).get("mean")
            values["oos_r2"].append(math.nan if oos is None else oos)
            noisy = [r["noisy"] for r in train]
            values["noisy_trained"].append(float(np.mean(noisy)) if noisy else math.nan)
            skew = [r["skewed"] for r in train if "skewed" in r]
            values["skewed_trained"].append(float(np.mean(skew)) if skew else math.nan)
            values["minutes"].append(run.wall_seconds / 60)
            values["reward_tasks"].append(  # clean reward-split tasks seen, scored or trained on
                sum(r.get("reward_tasks", 0) + r.get("reward_tasks_trained", 0) for r in run.train)
            )
        if values["seeds"]:
            rows.append(Row(method, **values))
    warm = None
    if pretrain_dir is not None and (pretrain_dir / "summary.json").is_file():
        best = json.loads((pretrain_dir / "summary.json").read_text())["best"]
        warm = (scale * best["score"], scale * best["ci95"])
    return Table(rows, warm, score_name, percent)


def render_markdown(table: Table) -> str:
    """The results as a Markdown table (scores of the best-on-validation checkpoints)."""
    lines = []
    digits, unit = (2, "%") if table.percent else (3, "")
    if table.warm_start:
        start, interval = table.warm_start
        lines += [f"warm start: {start:.{digits}f} ± {interval:.{digits}f}{unit}", ""]
    regression = any(math.isfinite(v) for r in table.rows for v in r.oos_r2)
    columns = [
        "method",
        f"test {table.label}, mean ± 95% CI over seeds",
        "per seed (± task CI)",
        "final",
        *(["out-of-sample R²"] if regression else []),
        "gap recovered",
        "noisy (skewed) share trained",
        "wall time per run",
    ]
    lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in table.rows:
        width = f" ± {row.half_width:.{digits}f}" if math.isfinite(row.half_width) else ""
        short = digits - 1
        per_seed = ", ".join(
            f"{b:.{short}f} ± {c:.{short}f}" for b, c in zip(row.best, row.best_ci)
        )
        gap = table.gap(row)
        skewed = float(np.mean(row.skewed_trained))
        noisy = float(np.mean(row.noisy_trained))
        cells = [
            row.method,
            f"{row.mean:.{digits}f}{width}{unit} ({len(row.best)})",
            per_seed,
            table.number(float(np.mean(row.final))),
            *([f"{np.nanmean(row.oos_r2):.3f}"] if regression else []),
            f"{100 * gap:.0f}%" if math.isfinite(gap) else "",
            (f"{noisy:.3f}" if math.isfinite(noisy) else "(trains nothing)")
            + (f" (skewed {skewed:.3f})" if math.isfinite(skewed) else ""),
            f"{np.mean(row.minutes):.1f} min",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_outputs(table: Table, out: Path, command: str) -> list[Path]:
    """``results.md`` (with the command), ``results.csv`` (one line per run) and a plot."""
    markdown = out / "results.md"
    atomic_write(markdown, f"```bash\n{command}\n```\n\n{render_markdown(table)}\n")
    path = out / "results.csv"
    with atomic_open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["method", "seed", "best", "best_ci95", "final", "gap", "noisy_trained",
             "skewed_trained", "minutes", "reward_tasks"]
        )  # fmt: skip
        for row in table.rows:
            for k, seed in enumerate(row.seeds):
                writer.writerow(
                    [row.method, seed, f"{row.best[k]:.4f}", f"{row.best_ci[k]:.4f}",
                     f"{row.final[k]:.4f}", f"{table.gap(row):.4f}",
                     f"{row.noisy_trained[k]:.4f}", f"{row.skewed_trained[k]:.4f}",
                     f"{row.minutes[k]:.2f}", row.reward_tasks[k]]
                )  # fmt: skip
    return [markdown, path, plot(table, out / "results.png")]


def plot(table: Table, path: Path) -> Path:
    """Mean ± 95% CI per method (bars), each seed (dots), wall time per run (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = table.rows
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(10, 0.45 * len(rows) + 1.5), sharey=True, width_ratios=[3, 1]
    )
    y = np.arange(len(rows))
    means = [r.mean for r in rows]
    errors = [r.half_width if math.isfinite(r.half_width) else 0 for r in rows]
    left.barh(y, means, xerr=errors, color="#9ecae1", capsize=3)
    for i, r in enumerate(rows):
        left.plot(r.best, [i] * len(r.best), "o", color="#08519c", markersize=4)
    if table.warm_start:
        left.axvline(table.warm_start[0], color="grey", linestyle="--", label="warm start")
        left.legend(loc="lower right")
    if table.percent:
        low = min(min(r.best) for r in rows) if rows else 0
        left.set_xlim(max(0, low - 5), 100)
    left.set_yticks(y, [r.method for r in rows])
    left.invert_yaxis()
    unit = " (%)" if table.percent else ""
    left.set_xlabel(f"test {table.label}{unit}, best on validation")
    right.barh(y, [np.mean(r.minutes) for r in rows], color="#fdae6b")
    right.set_xlabel("wall time per run (min)")
    return save_figure(fig, path)
