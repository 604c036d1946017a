"""Meta-test evaluation: mean score over many tasks with a 95% confidence interval, and the
objective's named metrics per task."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from tqdm import tqdm

from metasched.files import atomic_open, atomic_write, dumps
from metasched.intervals import format_score, normal_interval
from metasched.learners.functional import Params
from metasched.learners.objectives import Objective
from metasched.learners.results import TaskResults
from metasched.tasks.episode import Episode, TaskSource
from metasched.training.ranks import OneProcess, Ranks

R2_SUCCESS = 0.3  # pQSAR's threshold for a useful assay model (squared Pearson correlation)


class TaskEvaluator(Protocol):
    """A meta-learner, or a per-task baseline with the same evaluation call."""

    def evaluate(self, params: Params, episodes: list[Episode]) -> TaskResults: ...


@dataclass(frozen=True)
class EvalResult:
    """Per-task scores and query losses after adaptation, the objective's per-task metrics
    (NaN where undefined) and each task's source (class indices, or the assay) and its name
    (the assay id; empty for classes)."""

    scores: np.ndarray
    losses: np.ndarray
    metrics: dict[str, np.ndarray] = field(default_factory=dict)
    sources: list[tuple[int, ...]] = field(default_factory=list)
    source_names: list[str] = field(default_factory=list)

    @property
    def mean(self) -> float:
        return float(self.scores.mean())

    @property
    def ci95(self) -> float:
        return normal_interval(self.scores)

    @property
    def loss(self) -> float:
        return float(self.losses.mean())

    def percent(self) -> str:
        """``"95.12 ± 0.41%"``."""
        return format_score(self.mean, self.ci95, True)

    def metric_summary(self) -> dict[str, Any]:
        """Each metric's mean, median, 95% interval and undefined count over the tasks; for
        ``pearson_r2`` also how many tasks, and how many sources (assays) on average, exceed
        :data:`R2_SUCCESS`."""
        summary: dict[str, Any] = {}
        for name, values in self.metrics.items():
            finite = values[np.isfinite(values)]
            summary[name] = {
                "mean": float(finite.mean()) if len(finite) else None,
                "median": float(np.median(finite)) if len(finite) else None,
                "ci95": normal_interval(values) if len(finite) > 1 else None,
                "undefined": int(len(values) - len(finite)),
            }
        if "pearson_r2" in self.metrics:
            r2 = self.metrics["pearson_r2"]
            by_source: dict[tuple[int, ...], list[float]] = {}
            for source, value in zip(self.sources, r2):
                if np.isfinite(value):
                    by_source.setdefault(source, []).append(float(value))
            means = [float(np.mean(v)) for v in by_source.values()]
            summary["pearson_r2"]["tasks_above_0.3"] = int((r2 > R2_SUCCESS).sum())
            summary["pearson_r2"]["assays"] = len(means)
            summary["pearson_r2"]["assays_above_0.3"] = int(sum(m > R2_SUCCESS for m in means))
        return summary


def evaluate(
    learner: TaskEvaluator,
    params: Params,
    tasks: TaskSource,
    num_tasks: int,
    rng: np.random.Generator,
    device: torch.device,
    description: str | None = None,
    ranks: Ranks | None = None,
) -> EvalResult:
    """Adapts to ``num_tasks`` episodes (eval inner loop) and scores each query set.

    ``learner`` is a :class:`MetaLearner` or anything with the same ``evaluate(params,
    episodes)`` (a per-task baseline such as the random forest). Episode ``i`` is drawn with
    index ``i``, so a source may cover its assays in turn. With several ranks, every rank
    draws every episode (the same stream) and evaluates its share; the rows are gathered.
    """
    ranks = ranks or OneProcess()
    mine = ranks.share(num_tasks)
    parts, sources, names = [], [], []
    for i in tqdm(range(num_tasks), desc=description, disable=description is None, leave=False):
        episode = tasks.sample(rng, i)
        if i in mine:
            parts.append(learner.evaluate(params, [episode.to(device)]))
        sources.append(episode.source)
        names.append(episode.source_name)
    empty = TaskResults(torch.zeros(0), torch.zeros(0), metrics={})
    results = ranks.gather_results(TaskResults.cat(parts) if parts else empty, num_tasks)
    metrics = {name: v.double().cpu().numpy() for name, v in (results.metrics or {}).items()}
    scores = results.scores.double().cpu().numpy()
    return EvalResult(scores, results.losses.double().cpu().numpy(), metrics, sources, names)


def write_test_results(
    run_dir: Path,
    results: dict[str, tuple[int, EvalResult]],
    objective: Objective,
    extra: dict[str, Any],
) -> dict[str, Any]:
    """Writes ``summary.json`` and the per-task ``test_tasks.csv`` of a run's final test.

    Args:
        run_dir: where to write.
        results: ``"best"`` and ``"final"``: (iteration, result) on the same test tasks.
        objective: names the score.
        extra: more top-level summary entries (wall times).

    Returns:
        The summary.
    """
    best, last = results["best"][1], results["final"][1]
    summary: dict[str, Any] = {
        "run_dir": str(run_dir),
        "test_tasks": len(best.scores),
        **extra,
        "score_name": objective.score_name,
        "score_percent": objective.percent,
    }
    for name, (iteration, result) in results.items():
        summary[name] = {
            "iteration": iteration,
            "score": result.mean,
            "ci95": result.ci95,
            "loss": result.loss,
        }
        if result.metrics:
            summary[name]["metrics"] = result.metric_summary()
    atomic_write(run_dir / "summary.json", dumps(summary, indent=2))
    names = list(best.metrics)
    with atomic_open(run_dir / "test_tasks.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        columns = ["task", "source", "score_best", "loss_best", "score_final", "loss_final"]
        writer.writerow(columns + [f"{m}_{c}" for c in ("best", "final") for m in names])
        for i in range(len(best.scores)):
            source = best.source_names[i] if best.source_names else ""
            source = source or " ".join(str(s) for s in best.sources[i])
            row = [i, source, best.scores[i], best.losses[i], last.scores[i], last.losses[i]]
            writer.writerow(row + [r.metrics[m][i] for r in (best, last) for m in names])
    return summary
