"""``metasched benchmark``: few-shot activity regression as FS-Mol's regression work runs it.

For every held-out assay (the data set's meta-test split: FS-Mol's ``test/`` folder, or the
train assays the compact CSV holds out) and every support size K the assay allows (K plus at
least ``MIN_QUERY`` compounds), ``draws`` random supports of K compounds; the rest of the
assay is the query. The draws are seeded by the assay's id, the size and the draw, so every
method, run and baseline sees the same supports. Each method predicts every query; the
metrics are FS-Mol's out-of-sample R² (1 - SSE / Σ(y - ȳ_support)²), pearson R² and RMSE on
the assay's scale, averaged over an assay's draws, then summarised over assays (mean and
median) and paired with the per-assay random forest (mean difference with a 95% interval
over assays, share of assays ahead). GP learners also report the coverage of their central
68% and 95% predictive intervals.

Outputs in ``OUT``: ``benchmark.md`` (the table and the command), ``benchmark.csv`` (one line
per method, assay and size) and ``benchmark.png`` (mean R²_os against K).

Example:
    metasched benchmark runs/fsmol-gp runs/fsmol-anil --baselines forest,gp \\
        --sizes 16,32,64,128 --draws 10 --out runs/benchmark
"""

from __future__ import annotations

import csv
import math
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from metasched.config import Config, config_from_dict
from metasched.data.pool import AssayPool
from metasched.data.registry import load_dataset
from metasched.domains import domain_of
from metasched.domains.base import PerTaskBaseline
from metasched.errors import MetaschedError
from metasched.files import atomic_open, atomic_write, save_figure
from metasched.intervals import t_interval
from metasched.learners import MetaLearner
from metasched.tasks.assay_sampler import AssaySampler
from metasched.tasks.episode import Episode

MIN_QUERY = 16
SEED = 20231  # the benchmark's own stream: its draws do not depend on any run's seed
METRICS = ("oos_r2", "pearson_r2", "rmse", "coverage_68", "coverage_95")
REFERENCE = "forest"


@dataclass(frozen=True)
class Draw:
    """One support draw: rows of the pool for the support and for the query."""

    assay: int
    size: int
    draw: int
    support: np.ndarray
    query: np.ndarray


def benchmark_draws(
    pool: AssayPool, sizes: list[int], count: int, min_query: int = MIN_QUERY
) -> list[Draw]:
    """Every (assay, size, draw) the protocol evaluates (an assay takes the sizes that leave
    ``min_query`` compounds or more for the query), seeded by the assay's id."""
    draws = []
    for assay in range(pool.num_assays):
        rows = pool.rows(assay)
        identity = zlib.crc32(pool.assay_ids[assay].encode())
        for size in sizes:
            if len(rows) < size + min_query:
                continue
            for draw in range(count):
                order = np.random.default_rng([SEED, identity, size, draw]).permutation(rows)
                draws.append(Draw(assay, size, draw, np.sort(order[:size]), np.sort(order[size:])))
    return draws


@dataclass(frozen=True)
class Method:
    """A predictor under benchmark: a trained run's learner, or a per-task baseline."""

    name: str
    evaluate: Callable[[Episode], dict[str, float]]


def trained_learner(run: Path, overrides: list[str]) -> tuple[MetaLearner, Config]:
    """A trained run's learner on the CPU with its best-on-validation weights (``best.pt``,
    else ``last.pt``), and its config with ``overrides``."""
    from metasched.training.checkpoint import load_checkpoint, load_model_weights
    from metasched.training.components import build_learner

    path = run / "best.pt" if (run / "best.pt").is_file() else run / "last.pt"
    payload = load_checkpoint(path)
    config = config_from_dict(payload["config"], overrides)
    model = domain_of(config).model(config)
    learner = build_learner(config, model, torch.device("cpu"))
    load_model_weights(model, payload["model"], path)
    return learner, config


def run_method(run: Path, overrides: list[str]) -> tuple[Method, Config]:
    """A trained run's learner (:func:`trained_learner`) as a benchmark method."""
    learner, config = trained_learner(run, overrides)
    params = learner.parameters()

    def evaluate(episode: Episode) -> dict[str, float]:
        results = learner.evaluate(params, [episode])
        return {k: float(v[0]) for k, v in (results.metrics or {}).items()}

    return Method(run.name, evaluate), config


def baseline_method(name: str, config: Config) -> Method:
    """Per-task baseline ``name`` of the config's domain."""
    domain = domain_of(config)
    if name not in domain.baselines:
        known = ", ".join(domain.baselines) or "none"
        raise MetaschedError(f"--baselines: {name!r} is not a {domain.name} baseline; use {known}")
    baseline: PerTaskBaseline = domain.baselines[name](config)

    def evaluate(episode: Episode) -> dict[str, float]:
        results = baseline.evaluate({}, [episode])
        return {k: float(v[0]) for k, v in (results.metrics or {}).items()}

    return Method(name, evaluate)


def check_protocol(sizes: list[int], draws: int, min_query: int) -> None:
    """Refuses support sizes, draws or a query floor that cannot make a benchmark."""
    if not sizes or min(sizes) < 1 or draws < 1:
        raise MetaschedError("--sizes must list positive support sizes and --draws be >= 1")
    if min_query < 1:
        raise MetaschedError(
            f"--min-query {min_query}: every draw needs a query; give 1 or more (default 16)"
        )


def benchmark_episodes(pool: AssayPool, config: Config) -> AssaySampler:
    """The episodes of held-out assays as ``config``'s runs were trained on them: targets
    scaled by its ``task.assays`` settings, no noise."""
    spec = config.task.assays
    return AssaySampler(pool, 1, 10**9, 1, standardise=spec.standardise, min_scale=spec.min_scale)


def _scaling(config: Config) -> tuple[bool, float]:
    return config.task.assays.standardise, config.task.assays.min_scale


def run_benchmark(
    runs: list[Path],
    baselines: list[str],
    sizes: list[int],
    draws: int,
    out: Path,
    overrides: list[str] | None = None,
    progress: bool = True,
    min_query: int = MIN_QUERY,
) -> tuple[str, list[Path]]:
    """Evaluates every run and baseline on the protocol's draws; writes the outputs and
    returns the Markdown table and the written files."""
    overrides = list(overrides or [])
    if not runs:
        raise MetaschedError("give at least one trained run directory to benchmark")
    check_protocol(sizes, draws, min_query)
    methods, configs = [], []
    for run in runs:
        method, config = run_method(run, overrides)
        methods.append(method)
        configs.append(config)
    config = configs[0]
    if any(c.data != config.data for c in configs):
        raise MetaschedError(
            "the runs were trained on different data settings; benchmark them apart"
        )
    if any(_scaling(c) != _scaling(config) for c in configs):
        raise MetaschedError(
            "the runs scale their targets differently (task.assays.standardise, min_scale);"
            " benchmark them apart"
        )
    if domain_of(config).objective.percent:
        raise MetaschedError(f"{runs[0]} is not an assay run; the benchmark is for assay data")
    methods += [baseline_method(name, config) for name in baselines]
    pool = load_dataset(config.data).test
    episodes = benchmark_episodes(pool, config)
    plan = benchmark_draws(pool, sorted(sizes), draws, min_query)
    if not plan:
        raise MetaschedError(
            f"no held-out assay has {min(sizes)} + {min_query} compounds; give smaller --sizes"
        )
    rows: list[dict[str, Any]] = []
    seconds = dict.fromkeys((m.name for m in methods), 0.0)
    with torch.no_grad():
        for item in tqdm(plan, desc="benchmark draws", disable=not progress):
            episode = episodes.episode(item.assay, item.support, item.query)
            for method in methods:
                start = time.perf_counter()
                with torch.enable_grad():
                    values = method.evaluate(episode)
                seconds[method.name] += time.perf_counter() - start
                rows.append(
                    {"method": method.name, "assay": pool.assay_ids[item.assay],
                     "size": item.size, "draw": item.draw, **values}
                )  # fmt: skip
    table = benchmark_table(rows, [m.name for m in methods], sorted(sizes), seconds)
    command = (
        "metasched benchmark "
        + " ".join(str(r) for r in runs)
        + (f" --baselines {','.join(baselines)}" if baselines else "")
        + f" --sizes {','.join(str(s) for s in sorted(sizes))} --draws {draws} --out {out}"
        + "".join(f" --set {o}" for o in overrides)
    )
    out.mkdir(parents=True, exist_ok=True)
    markdown = out / "benchmark.md"
    held_out = len({r["assay"] for r in rows})
    atomic_write(
        markdown,
        f"```bash\n{command}\n```\n\n{held_out} held-out assays, {draws} supports per assay"
        f" and size, the rest of the assay as the query.\n\n{table}\n",
    )
    path = out / "benchmark.csv"
    per_assay = assay_means(rows)
    with atomic_open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["method", "assay", "size", "draws", *METRICS])
        for (name, assay, size), values in sorted(per_assay.items()):
            writer.writerow(
                [name, assay, size, values["draws"],
                 *(f"{values[m]:.4f}" if m in values else "" for m in METRICS)]
            )  # fmt: skip
    return table, [
        markdown,
        path,
        plot_sizes(per_assay, [m.name for m in methods], out / "benchmark.png"),
    ]


def assay_means(rows: list[dict[str, Any]]) -> dict[tuple[str, str, int], dict[str, float]]:
    """Each method's metrics per assay and size, averaged over the draws (NaNs left out)."""
    grouped: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for row in rows:
        grouped.setdefault((row["method"], row["assay"], row["size"]), []).append(row)
    means = {}
    for key, items in grouped.items():
        values: dict[str, float] = {"draws": float(len(items))}
        for metric in METRICS:
            numbers = [r[metric] for r in items if metric in r and math.isfinite(r[metric])]
            if numbers:
                values[metric] = float(np.mean(numbers))
        means[key] = values
    return means


def benchmark_table(
    rows: list[dict[str, Any]], methods: list[str], sizes: list[int], seconds: dict[str, float]
) -> str:
    """Markdown: per method and size the mean and median R²_os over assays, pearson R², RMSE,
    interval coverage where given, and the paired difference in R²_os with the forest."""
    per_assay = assay_means(rows)
    lines = [
        "| method | K | assays | mean R²_os | median R²_os | mean pearson R² | mean RMSE"
        f" | coverage 68% / 95% | R²_os − {REFERENCE} (95% CI) | assays ahead of {REFERENCE} |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for method in methods:
        for size in sizes:
            mine = {a: v for (m, a, s), v in per_assay.items() if m == method and s == size}
            if not mine:
                continue
            oos = [v["oos_r2"] for v in mine.values() if "oos_r2" in v]
            cells = [
                method, str(size), str(len(mine)), f"{np.mean(oos):.3f}", f"{np.median(oos):.3f}",
                f"{np.mean([v['pearson_r2'] for v in mine.values() if 'pearson_r2' in v]):.3f}",
                f"{np.mean([v['rmse'] for v in mine.values()]):.3f}",
            ]  # fmt: skip
            cover = [
                (v["coverage_68"], v["coverage_95"]) for v in mine.values() if "coverage_68" in v
            ]
            cells.append(
                f"{np.mean([c[0] for c in cover]):.2f} / {np.mean([c[1] for c in cover]):.2f}"
                if cover else "–"
            )  # fmt: skip
            base = {a: v for (m, a, s), v in per_assay.items() if m == REFERENCE and s == size}
            shared = [a for a in mine if a in base and "oos_r2" in mine[a] and "oos_r2" in base[a]]
            if method != REFERENCE and shared:
                diff = np.array([mine[a]["oos_r2"] - base[a]["oos_r2"] for a in shared])
                cells += [
                    f"{diff.mean():+.3f} ± {t_interval(diff):.3f}",
                    f"{(diff > 0).mean():.0%}",
                ]
            else:
                cells += ["", ""]
            lines.append("| " + " | ".join(cells) + " |")
    times = ", ".join(f"{m} {s / 60:.1f} min" for m, s in seconds.items())
    return "\n".join(lines) + f"\n\nEvaluation time: {times}."


def plot_sizes(
    per_assay: dict[tuple[str, str, int], dict[str, float]], methods: list[str], path: Path
) -> Path:
    """Mean R²_os over assays against the support size, with 95% intervals, per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    for method in methods:
        sizes = sorted({s for (m, _, s) in per_assay if m == method})
        means, widths = [], []
        for size in sizes:
            oos = [v["oos_r2"] for (m, _, s), v in per_assay.items()
                   if m == method and s == size and "oos_r2" in v]  # fmt: skip
            means.append(np.mean(oos))
            widths.append(t_interval(oos))
        axis.errorbar(sizes, means, yerr=widths, marker="o", capsize=3, label=method)
    axis.set_xscale("log", base=2)
    axis.set_xlabel("support compounds K")
    axis.set_ylabel("mean out-of-sample R² over held-out assays")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    return save_figure(figure, path)
