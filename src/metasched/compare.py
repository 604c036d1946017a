"""``metasched compare``: several schedulers, several seeds, one table.

Every method starts from the same warm start (``--pretrain``: one clean run, trained first),
sees the same data and takes the same number of meta-updates (``train.iterations``). Runs go
to ``OUT/<method>-seed<s>``; a finished run is reused only when its stored config and results
versions match the current ones (:mod:`metasched.training.provenance`), an unfinished one
with matching config and versions is resumed, and anything else is moved to ``OUT/stale/``
(never deleted) and run again. The table (Markdown and CSV) and a plot go to
``OUT/results.{md,csv,png}``.

Methods are scheduler names (``metasched data``-style list: :data:`SCHEDULERS`) or variants:
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import shutil
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing import get_context
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, cast

import numpy as np
import yaml

from metasched.config import Config, config_from_dict, load_config, read_config_file
from metasched.errors import (
    ComparisonInterrupted,
    MetaschedError,
    TrainingAborted,
    TrainingInterrupted,
)
from metasched.files import atomic_open, atomic_write, save_figure
from metasched.schedulers import SCHEDULERS

#: Named variants: a scheduler plus overrides.
VARIANTS: dict[str, tuple[str, list[str], str]] = {
    "ats-loss": ("ats", ["scheduler.ats.inputs=[loss, progress]"], "ATS reading the loss only"),
    "ats-gradients": (
        "ats",
        ["scheduler.ats.inputs=[gradients, progress]"],
        "ATS reading the gradient similarity only",
    ),
    "ats-noprogress": ("ats", ["scheduler.ats.inputs=[loss, gradients]"], "ATS without progress"),
    "ats-faithful": (
        "ats",
        [
            "scheduler.ats.faithful=true",
            "scheduler.ats.lookahead_lr=0.01",
            "task.reward_split=train-16",
        ],
        "the reference code's ATS (network, reward, reward tasks from training classes 0..15)",
    ),
    "ats-lite": ("ats", ["scheduler.gradient_layers=last"], "ATS on the last layers' gradients"),
    "ats-bf16": ("ats", ["scheduler.pool_precision=bf16"], "ATS measuring the pool in bfloat16"),
    "bass-centred": ("bass", ["scheduler.bass.centred=true"], "BASS with centred contexts"),
    "agreement-last": (
        "agreement",
        ["scheduler.gradient_layers=last"],
        "gradient agreement of the last backbone layer and the head only",
    ),
    "bass-val": (
        "bass",
        ["scheduler.bass.reward_source=reward"],
        "BASS rewarded on clean reward-split tasks",
    ),
}
PATTERNS = (
    "forest: a random forest fitted on each test task's support alone (assay data only)",
    "uniform-reward: uniform sampling plus clean reward-split tasks at the rate ATS draws them",
    "uniform-x<k>: uniform sampling with k times the meta-updates (and validation interval)",
)
__doc__ = (__doc__ or "") + "\n".join(
    [f"``{name}``: {text}." for name, (_, _, text) in VARIANTS.items()]
    + [f"``{p.split(':')[0]}``:{p.split(':', 1)[1]}." for p in PATTERNS]
)
PRETRAIN_SECTIONS = ("data", "model", "learner")
FOREST = "forest"
PRETRAIN_TASK_KEYS = ("n_way", "k_shot", "q_query")


@dataclass(frozen=True)
class Job:
    """One run of a comparison."""

    method: str
    seed: int
    config: Config
    run_dir: Path


def method_overrides(method: str, base: Config) -> list[str]:
    """The overrides that turn the base config into ``method``'s runs."""
    if method in VARIANTS:
        name, extra, _ = VARIANTS[method]
        return [f"scheduler.name={name}", *extra]
    if method == FOREST:
        return ["scheduler.name=uniform"]  # no meta-training: only the test tasks matter
    if method == "uniform-reward":
        rate = reward_task_rate(base)
        return ["scheduler.name=uniform", f"train.reward_tasks_per_update={rate}"]
    match = re.fullmatch(r"uniform-x(\d+)", method)
    if match:
        k = int(match.group(1))
        train = base.train
        return [
            "scheduler.name=uniform",
            f"train.iterations={train.iterations * k}",
            f"train.val_every={train.val_every * k}",
            f"train.checkpoint_every={train.checkpoint_every * k}",
        ]
    if method in SCHEDULERS:
        return [f"scheduler.name={method}"]
    known = [*SCHEDULERS, *VARIANTS, FOREST, "uniform-reward", "uniform-x<k>"]
    raise MetaschedError(f"unknown method {method!r} for compare; use one of {', '.join(known)}")


def reward_task_rate(base: Config) -> float:
    """Clean reward tasks ATS draws per meta-update in the base config: R (W + I) / I."""
    ats = base.scheduler.options.get("ats") or SCHEDULERS["ats"].Options()
    per_iteration = ats.reward_tasks or base.train.meta_batch_size
    iterations = base.train.iterations
    return per_iteration * (ats.warmup + iterations) / iterations


def build_jobs(
    preset: str, methods: list[str], seeds: list[int], out: Path, overrides: list[str]
) -> list[Job]:
    """The runs of a comparison, their configs checked before anything runs."""
    base = load_config(preset, overrides)
    jobs = []
    for method in methods:
        extra = method_overrides(method, base)
        config = load_config(preset, [*overrides, *extra])
        scheduler = SCHEDULERS[config.scheduler.name]
        if not scheduler.needs_larger_pool:  # its draw is uniform: a bigger pool only costs
            config = load_config(
                preset,
                [*overrides, *extra, f"scheduler.pool_size={config.train.meta_batch_size}"],
            )
        for seed in seeds:
            seeded = config_from_dict(config.to_dict(), [f"seed={seed}"])
            jobs.append(Job(method, seed, seeded, out / f"{method}-seed{seed}"))
    return jobs


def pretrain_config(preset: str, main: Config) -> Config:
    """The warm start's config: ``preset`` with the main config's data, model, learner and
    task shape, so its checkpoint fits every run."""
    main_values = main.to_dict()
    values = read_config_file(preset)
    for section in PRETRAIN_SECTIONS:
        values[section] = main_values[section]
    task = dict(values.get("task") or {})
    task.update({k: main_values["task"][k] for k in PRETRAIN_TASK_KEYS})
    values["task"] = task
    values["seed"] = main.seed
    return config_from_dict(values)


# ----------------------------------------------------------------------------------------------
# Running, reusing, resuming.


def stored_state(run_dir: Path, config: Config) -> tuple[str, str]:
    """(``done`` | ``resume`` | ``new`` | ``stale``, why) for a run directory.

    A run is current when its stored config, read with today's defaults for settings added
    since, uses the same settings as ``config`` and every start of it ran the current results
    versions (:mod:`metasched.training.provenance`).
    """
    from metasched.training.checkpoint import older_copies
    from metasched.training.provenance import version_mismatch

    if not run_dir.exists():
        return "new", ""
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        return "stale", "it holds no config.yaml"
    try:
        stored = config_from_dict(yaml.safe_load(config_path.read_text())).to_dict()
    except (yaml.YAMLError, MetaschedError):
        return "stale", "its config.yaml is unreadable"
    expected = config.to_dict()
    if _used_settings(stored) != _used_settings(expected):
        keys = _differing_keys(_used_settings(stored), _used_settings(expected))
        return "stale", f"its config differs in {', '.join(keys[:4])}"
    why = version_mismatch(run_dir, config)
    if why:
        return "stale", why
    if (run_dir / "summary.json").is_file():
        return "done", ""
    if _is_forest(run_dir):
        return "stale", "it did not finish"
    if (run_dir / "last.pt").is_file() or older_copies(run_dir / "last.pt"):
        return "resume", ""
    return "stale", "it holds no checkpoint"


def _used_settings(values: Any) -> Any:
    """A stored config without the sections of schedulers it does not run: those cannot change
    its results (as its results version counts only its own scheduler)."""
    if not isinstance(values, dict) or not isinstance(values.get("scheduler"), dict):
        return values
    scheduler = values["scheduler"]
    used = {k: v for k, v in scheduler.items() if k not in SCHEDULERS or k == scheduler.get("name")}
    return {**values, "scheduler": used}


def _is_forest(run_dir: Path) -> bool:
    """Whether a run directory (named ``<method>-seed<s>``) holds the forest baseline."""
    return run_dir.name.startswith(f"{FOREST}-seed")


def _differing_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        keys = []
        for key in sorted(set(a) | set(b), key=str):
            keys += _differing_keys(a.get(key), b.get(key), f"{prefix}{key}.")
        return keys
    return [] if a == b else [prefix.rstrip(".")]


def set_aside(run_dir: Path, out: Path) -> Path:
    """Moves a stale run into ``out/stale`` under a fresh name."""
    stale = out / "stale"
    stale.mkdir(parents=True, exist_ok=True)
    target = stale / run_dir.name
    n = 1
    while target.exists():
        target = stale / f"{run_dir.name}.{n}"
        n += 1
    shutil.move(str(run_dir), target)
    return target


def run_job(
    job: tuple[dict[str, Any], str, int], stop: Callable[[], bool] | None = None
) -> tuple[str, float]:
    """Trains one run in this process (``threads`` threads); returns (run_dir, seconds).
    ``stop`` is checked after each iteration: when true, the run saves and stops."""
    import torch

    from metasched.training.baselines import run_forest
    from metasched.training.trainer import Trainer

    values, run_dir_text, threads = job
    torch.set_num_threads(threads)
    run_dir = Path(run_dir_text)
    config = config_from_dict(values)
    state, _ = stored_state(run_dir, config)
    start = time.perf_counter()
    if _is_forest(run_dir):
        run_forest(config, run_dir)
    else:
        trainer = Trainer.resume(run_dir) if state == "resume" else Trainer.create(config, run_dir)
        trainer.fit(progress=False, stop=stop)
    seconds = time.perf_counter() - start
    print(f"done {run_dir} in {seconds / 60:.1f} min", flush=True)
    return str(run_dir), seconds


def prepare(jobs: list[Job], out: Path, say: Callable[[str], None]) -> list[Job]:
    """The jobs still to run; stale directories are set aside with a message."""
    todo = []
    for job in jobs:
        state, why = stored_state(job.run_dir, job.config)
        if state == "stale":
            moved = set_aside(job.run_dir, out)
            say(f"{job.run_dir.name}: {why}; moved to {moved} and run again")
            todo.append(job)
        elif state == "done":
            say(f"{job.run_dir.name}: finished with this config and results version; reused")
        else:
            say(f"{job.run_dir.name}: {'resuming' if state == 'resume' else 'to run'}")
            todo.append(job)
    return todo


def run_comparison(
    preset: str,
    methods: list[str],
    seeds: list[int],
    out: Path,
    overrides: list[str] | None = None,
    pretrain: str | None = None,
    workers: int = 1,
    threads: int = 1,
    say: Callable[[str], None] = print,
) -> tuple[str, list[Path]]:
    """Runs (or reuses) every method for every seed and writes the table; returns the
    Markdown table and the written files."""
    overrides = list(overrides or [])
    out.mkdir(parents=True, exist_ok=True)
    if pretrain:
        main = load_config(preset, overrides)
        warm = Job("pretrain", main.seed, pretrain_config(pretrain, main), out / "pretrain")
        for job in prepare([warm], out, say):
            run_job((job.config.to_dict(), str(job.run_dir), max(threads, workers)))
        overrides.append(f"train.init_from={out / 'pretrain' / 'best.pt'}")
    jobs = build_jobs(preset, methods, seeds, out, overrides)
    todo = prepare(jobs, out, say)
    todo.sort(key=lambda j: -_expected_cost(j.config))  # long runs first: better packing
    payload = [(j.config.to_dict(), str(j.run_dir), threads) for j in todo]
    try:
        if workers > 1 and len(payload) > 1:
            run_in_processes(payload, workers)
        else:
            with _exit_on_sigterm():
                for item in payload:
                    run_job(item)
    except (TrainingInterrupted, TrainingAborted, KeyboardInterrupt, SystemExit) as stopped:
        # A run's own message names one run; the user reruns the whole comparison.
        raise ComparisonInterrupted(out) from stopped
    table = summarise(jobs, out / "pretrain" if pretrain else None)
    files = write_outputs(table, out, preset, methods, seeds, overrides, pretrain)
    return render_markdown(table), files


def run_in_processes(payload: list[tuple[dict[str, Any], str, int]], workers: int) -> None:
    """Runs each job in a fresh process, ``workers`` at a time.

    The first Ctrl-C or SIGTERM asks the running jobs to save and stop through a shared event
    (the trainer checks it like its own Ctrl-C, so a job that also got the terminal's Ctrl-C is
    not asked twice and does not abort) and starts no new job; a second one kills them, their
    newest checkpoints intact. A run stopped on its own stops the comparison too.

    Raises:
        ComparisonInterrupted: some run was stopped before it finished.
        MetaschedError: a run failed on bad input (the first such message, naming the run).
        RuntimeError: a run crashed; its traceback is on stderr above.
    """
    context = get_context("spawn")
    stop = context.Event()
    reports = context.SimpleQueue()  # (kind, run_dir, message) from each failed job
    pending = list(payload)
    running: dict[int, BaseProcess] = {}  # by sentinel
    failures: list[tuple[str, str, str]] = []
    with _stop_on_first_signal(stop):
        try:
            while pending or running:
                while pending and len(running) < workers and not stop.is_set():
                    process = context.Process(
                        target=_job_process, args=(pending.pop(0), stop, reports)
                    )
                    process.start()
                    running[process.sentinel] = process
                if not running:
                    break
                for ready in wait(list(running), timeout=1.0):
                    running.pop(cast(int, ready)).join()
                while not reports.empty():
                    failures.append(reports.get())
                    if failures[-1][0] == "interrupted":
                        stop.set()
        except KeyboardInterrupt:  # the second signal: no more waiting
            for child in running.values():
                child.kill()
                child.join()
            raise
    if stop.is_set():
        raise ComparisonInterrupted(Path(payload[0][1]).parent)  # runs live in OUT/<name>
    for kind, run_dir, message in failures:
        if kind == "error":
            raise MetaschedError(f"{Path(run_dir).name}: {message}")
    if failures:
        raise RuntimeError(f"run {failures[0][1]} crashed; its traceback is above")


def _job_process(job: tuple[dict[str, Any], str, int], stop: Any, reports: Any) -> None:
    """A job's process: runs it and reports how it failed, if it did."""
    _die_with_parent()
    try:
        run_job(job, stop.is_set)
    except (TrainingInterrupted, TrainingAborted, KeyboardInterrupt):
        reports.put(("interrupted", job[1], ""))
    except MetaschedError as error:
        reports.put(("error", job[1], str(error)))
    except BaseException:
        traceback.print_exc()
        reports.put(("crash", job[1], ""))
        raise SystemExit(1) from None


@contextmanager
def _stop_on_first_signal(stop: Any) -> Iterator[None]:
    """The first Ctrl-C or SIGTERM sets ``stop``; a second raises KeyboardInterrupt."""

    def handler(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        print(f"{signal.Signals(signum).name}: asking every run to save and stop", flush=True)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, action in previous.items():
            signal.signal(number, action)


def _die_with_parent() -> None:
    """In a worker: ask Linux to send SIGTERM when the comparison's process dies, however it
    dies (SIGKILL included), so no worker trains on, orphaned. Elsewhere a no-op."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    set_parent_death_signal = 1  # PR_SET_PDEATHSIG in <linux/prctl.h>
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(set_parent_death_signal, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


@contextmanager
def _exit_on_sigterm() -> Iterator[None]:
    """SIGTERM (``kill``) exits through the ``with`` blocks, so the pool's workers are
    terminated instead of running on, orphaned, beside the next comparison."""

    def leave(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, leave)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _expected_cost(config: Config) -> float:
    """A rough cost in uniform iterations, to start long runs first (only the order)."""
    from metasched.schedulers import Feature

    scheduler = SCHEDULERS[config.scheduler.name](config.scheduler.settings)
    features = scheduler.features
    per_step = 1.0
    if features & (Feature.LOSSES | Feature.EMBEDDINGS):
        per_step = 3.0
    if features & (Feature.GRADIENTS | Feature.CONTEXTS):
        per_step = 7.0
    return per_step * (config.train.iterations + scheduler.warmup_iterations)


# ----------------------------------------------------------------------------------------------
# The table.


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
        from scipy import stats

        n = len(self.best)
        if n < 2:
            return math.nan
        return float(stats.t.ppf(0.975, n - 1) * np.std(self.best, ddof=1) / math.sqrt(n))


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
        uniform, oracle = self.row("uniform"), self.row("oracle")
        if uniform is None or oracle is None or oracle.mean == uniform.mean:
            return math.nan
        return (row.mean - uniform.mean) / (oracle.mean - uniform.mean)


def summarise(jobs: list[Job], pretrain_dir: Path | None) -> Table:
    """Reads every finished run of the comparison."""
    from metasched.training.metrics import metrics_file, read_metrics

    rows = []
    names = {
        (s.get("score_name", "accuracy"), s.get("score_percent", True))
        for j in jobs
        if (j.run_dir / "summary.json").is_file()
        for s in [json.loads((j.run_dir / "summary.json").read_text())]
    }
    if len(names) > 1:
        raise MetaschedError(f"the runs mix scores {sorted(names)}; compare one domain at a time")
    score_name, percent = names.pop() if names else ("accuracy", True)
    scale = 100.0 if percent else 1.0
    for method in dict.fromkeys(j.method for j in jobs):
        mine = [j for j in jobs if j.method == method]
        values: dict[str, list[Any]] = {k: [] for k in Row.__dataclass_fields__ if k != "method"}
        for job in mine:
            summary_path = job.run_dir / "summary.json"
            if not summary_path.is_file():
                continue
            summary = json.loads(summary_path.read_text())
            metrics = metrics_file(job.run_dir)  # a forest trains nothing: it has none
            records = [r for r in read_metrics(metrics) if r["kind"] == "train"] if metrics else []
            train = [r for r in records if r.get("phase") == "train"]
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
            seconds = summary.get("train_seconds", 0.0) + summary.get("test_seconds", 0.0)
            values["minutes"].append(seconds / 60)
            values["reward_tasks"].append(  # clean reward-split tasks seen, scored or trained on
                sum(r.get("reward_tasks", 0) + r.get("reward_tasks_trained", 0) for r in records)
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


def write_outputs(
    table: Table,
    out: Path,
    preset: str,
    methods: list[str],
    seeds: list[int],
    overrides: list[str],
    pretrain: str | None,
) -> list[Path]:
    """``results.md`` (with the command), ``results.csv`` (one line per run) and a plot."""
    command = (
        f"metasched compare --config {preset} --schedulers {','.join(methods)}"
        f" --seeds {len(seeds)} --out {out}"
        + (f" --pretrain {pretrain}" if pretrain else "")
        + "".join(
            f" --set {o}"
            for o in overrides
            if not (pretrain and o.startswith("train.init_from="))  # added by --pretrain
        )
    )
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
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
    return path
