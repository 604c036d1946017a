"""Plots and a results table from run directories (``metasched report``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from metasched.data.registry import DATASETS
from metasched.domains import domain_of_data
from metasched.files import save_figure
from metasched.intervals import format_score
from metasched.learners.objectives import Classification, score_label
from metasched.training.metrics import RunRecords, load_run


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average that ignores missing values (NaN)."""
    out = np.full(len(values), np.nan)
    for i in range(len(values)):
        chunk = values[max(0, i - window + 1) : i + 1]
        if np.isfinite(chunk).any():
            out[i] = np.nanmean(chunk)
    return out


def _series(run: RunRecords, kind: str, key: str) -> tuple[np.ndarray, np.ndarray]:
    """(meta-updates, values): iterations shifted so that 0 ends the scheduler warm-up."""
    records = run.train if kind == "train" else run.val
    warmup = sum(r.get("phase") == "warmup" for r in run.train)  # any scheduler's warm-up
    x = np.array([r["iteration"] - warmup for r in records], dtype=float)
    y = np.array([np.nan if r.get(key) is None else r[key] for r in records], dtype=float)
    return x, y


def score_of(run: RunRecords) -> tuple[str, bool]:
    """A run's score, as printed (``accuracy``, ``pearson R²``), and whether in percent: its
    summary's, or its data set's domain's while it has none."""
    if run.summary is not None:
        name = run.summary.get("score_name", "accuracy")
        return score_label(name), run.summary.get("score_percent", True)
    name = str(run.config.get("data", {}).get("name"))
    objective = domain_of_data(name).objective if name in DATASETS else Classification()
    return score_label(objective.score_name), objective.percent


def by_score(runs: list[RunRecords]) -> dict[tuple[str, bool], list[RunRecords]]:
    """The runs grouped by their score (:func:`score_of`), in order of first appearance, so
    that runs of different domains are never tabulated or plotted in one another's words."""
    groups: dict[tuple[str, bool], list[RunRecords]] = {}
    for run in runs:
        groups.setdefault(score_of(run), []).append(run)
    return groups


def plot_scores(runs: list[RunRecords], path: Path, label: str) -> None:
    """Training query score (smoothed) and validation score against iterations."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for run in runs:
        x, y = _series(run, "train", "score")
        left.plot(x, smooth(y, 25), label=run.name)
        x, y = _series(run, "val", "score")
        right.plot(x, y, marker="o", markersize=3, label=run.name)
    left.set(title=f"training tasks: query {label} after adaptation", xlabel="meta-updates")
    right.set(title=f"validation tasks: {label}", xlabel="meta-updates")
    for axis in (left, right):
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    save_figure(figure, path)


def plot_scheduler(runs: list[RunRecords], path: Path) -> None:
    """Mean policy probability of clean vs noisy candidates, entropy, reward and baseline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 3, figsize=(15, 4))
    for run in runs:
        x, clean = _series(run, "train", "p_clean")
        _, noisy = _series(run, "train", "p_noisy")
        (line,) = axes[0].plot(x, smooth(clean, 25), label=f"{run.name}: clean")
        axes[0].plot(x, smooth(noisy, 25), "--", color=line.get_color(), label=f"{run.name}: noisy")
        _, ent = _series(run, "train", "entropy")
        axes[1].plot(x, smooth(ent, 25), label=run.name)
        _, reward = _series(run, "train", "reward")
        _, baseline = _series(run, "train", "baseline")
        axes[2].plot(x, smooth(reward, 25), color=line.get_color(), label=f"{run.name}: reward")
        axes[2].plot(x, baseline, ":", color=line.get_color(), label=f"{run.name}: baseline")
    for axis in axes:
        axis.axvline(0, color="grey", linewidth=0.8)  # the end of the warm-up
    label = "meta-updates (negative: scheduler warm-up)"
    axes[0].set(title="mean sampling probability (temperature 1)", xlabel=label)
    axes[1].set(title="policy entropy (nats)", xlabel=label)
    axes[2].set(title="REINFORCE reward and baseline", xlabel=label)
    for axis in axes:
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    save_figure(figure, path)


def results_table(runs: list[RunRecords]) -> str:
    """A Markdown table of each run's test score (best on validation, and final); one table
    per kind of score when the runs have several."""
    tables = []
    for (label, percent), group in by_score(runs).items():
        lines = [
            f"| run | scheduler | test {label} (best on val) | test {label} (final) |",
            "|---|---|---|---|",
        ]
        for run in group:
            scheduler = run.config.get("scheduler", {}).get("name", "?")
            if run.summary is None:
                lines.append(f"| {run.name} | {scheduler} | (not finished) | |")
                continue
            cells = [
                format_score(run.summary[k]["score"], run.summary[k]["ci95"], percent)
                for k in ("best", "final")
            ]
            lines.append(f"| {run.name} | {scheduler} | {cells[0]} | {cells[1]} |")
        tables.append("\n".join(lines))
    return "\n\n".join(tables)


def write_report(run_dirs: list[Path], out: Path) -> tuple[str, list[Path]]:
    """Draws the plots into ``out`` (one score plot per kind of score: ``accuracy.png``,
    ``score.png``); returns the results table and the plot paths."""
    runs = [load_run(d) for d in run_dirs]
    out.mkdir(parents=True, exist_ok=True)
    plots: list[Path] = []
    for (label, percent), group in by_score(runs).items():
        name = "accuracy.png" if percent else "score.png"
        if out / name in plots:
            name = f"score-{len(plots)}.png"
        plots.append(out / name)
        plot_scores(group, plots[-1], label)
    scheduled = [r for r in runs if any(t.get("p_clean") is not None for t in r.train)]
    if scheduled:
        plots.append(out / "scheduler.png")
        plot_scheduler(scheduled, plots[-1])
    return results_table(runs), plots
