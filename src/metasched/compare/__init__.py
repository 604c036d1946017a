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

from collections.abc import Callable
from pathlib import Path

from metasched.compare.budget_report import write_budget_outputs
from metasched.compare.budgets import BudgetJob, budget_jobs, reachable_budgets
from metasched.compare.costs import load_costs, method_costs
from metasched.compare.methods import (
    PATTERNS,
    VARIANTS,
    Job,
    build_jobs,
    method_overrides,
    pretrain_config,
    reference_method,
    reward_task_rate,
)
from metasched.compare.reuse import finished, prepare, stored_state
from metasched.compare.tables import render_markdown, summarise, write_outputs
from metasched.compare.workers import exit_on_sigterm, run_in_processes, run_job
from metasched.config import Config, load_config
from metasched.domains import domain_of
from metasched.errors import (
    ComparisonInterrupted,
    MetaschedError,
    TrainingAborted,
    TrainingInterrupted,
)
from metasched.training.cost import IterationCost

__doc__ = (__doc__ or "") + "\n".join(
    [f"``{name}``: {text}." for name, (_, _, text) in VARIANTS.items()]
    + [f"``{p.split(':')[0]}``:{p.split(':', 1)[1]}." for p in PATTERNS]
)


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
    budgets: list[float] | None = None,
    tables_only: bool = False,
) -> tuple[str, list[Path]]:
    """Runs (or reuses) every method for every seed and writes the table; returns the
    Markdown table and the written files. With ``budgets`` (multiples of the uniform run's
    cost) every method stops at each budget's compute (:mod:`metasched.compare.budgets`).
    With ``tables_only`` nothing runs: the tables hold the runs that finished, so that a study
    made by several comparisons (or still running) gets one table of all its methods."""
    overrides = list(overrides or [])
    command = command_line(preset, methods, seeds, out, overrides, pretrain, budgets)
    if not tables_only:
        out.mkdir(parents=True, exist_ok=True)
    if pretrain:
        if not tables_only:
            main = load_config(preset, overrides)
            warm = Job("pretrain", main.seed, pretrain_config(pretrain, main), out / "pretrain")
            for job in prepare([warm], out, say):
                run_job(job.payload(max(threads, workers)))
        overrides.append(f"train.init_from={out / 'pretrain' / 'best.pt'}")
    jobs = build_jobs(preset, methods, seeds, out, overrides)
    planned: list[BudgetJob] = []
    costs: dict[str, IterationCost] = {}
    units = 0
    if budgets:
        first = {j.method: j.config for j in jobs if not j.baseline and j.seed == seeds[0]}
        if tables_only:  # a method's runs are read with the cost they were run with
            costs = load_costs(out)
            for name in sorted(first.keys() - costs.keys()):
                say(f"{name}: no measured cost in {out / 'costs.json'}; left out of the tables")
            jobs = [j for j in jobs if j.baseline or j.method in costs]
        else:
            reference = uniform_reference(preset, overrides, seeds[0])
            costs = method_costs(first, reference, out, say, threads)
        train = load_config(preset, overrides).train
        units = train.iterations
        planned = budget_jobs(jobs, budgets, train, costs)
        jobs = [p.job for p in planned]
    reachable = reachable_budgets(planned)  # before unfinished runs leave the plan
    if tables_only:
        jobs = finished(jobs, say)
        if not jobs:
            raise MetaschedError(
                f"no run of these methods and seeds has finished in {out}; run the comparison"
                " without --tables-only"
            )
        kept = {j.run_dir for j in jobs}
        planned = [p for p in planned if p.job.run_dir in kept]
        return _write_tables(
            jobs, planned, reachable, costs, budgets, out, methods, command, units, pretrain
        )
    todo = prepare(jobs, out, say)
    # seed by seed, so that every method's first seed is done early; long runs first in each
    todo.sort(key=lambda j: (j.seed, -_expected_cost(j.config)))
    payload = [j.payload(threads) for j in todo]
    try:
        if workers > 1 and len(payload) > 1:
            run_in_processes(payload, workers)
        else:
            with exit_on_sigterm():
                for item in payload:
                    run_job(item)
    except (TrainingInterrupted, TrainingAborted, KeyboardInterrupt, SystemExit) as stopped:
        # A run's own message names one run; the user reruns the whole comparison.
        raise ComparisonInterrupted(out) from stopped
    return _write_tables(
        jobs, planned, reachable, costs, budgets, out, methods, command, units, pretrain
    )


def _write_tables(
    jobs: list[Job],
    planned: list[BudgetJob],
    reachable: dict[str, set[float]],
    costs: dict[str, IterationCost],
    budgets: list[float] | None,
    out: Path,
    methods: list[str],
    command: str,
    units: int,
    pretrain: str | None,
) -> tuple[str, list[Path]]:
    """The comparison's table and files: at each budget, or after the same meta-updates."""
    if budgets:
        percent = domain_of(jobs[0].config).objective.percent
        files = write_budget_outputs(
            planned,
            costs,
            budgets,
            out,
            percent,
            reference_method(methods),
            command,
            units,
            reachable,
        )
        return files[0].read_text(), files
    table = summarise(jobs, out / "pretrain" if pretrain else None)
    return render_markdown(table), write_outputs(table, out, command)


def holds_runs(out: Path) -> bool:
    """Whether ``out`` is a comparison's directory (one of its entries holds a run)."""
    return any((entry / "provenance.json").is_file() for entry in out.iterdir() if entry.is_dir())


def uniform_reference(preset: str, overrides: list[str], seed: int) -> Config:
    """Plain uniform sampling (pool = meta-batch) on the comparison's data, model and warm
    start: the unit of cost."""
    base = load_config(preset, overrides)
    return load_config(
        preset,
        [
            *overrides,
            "scheduler.name=uniform",
            f"scheduler.pool_size={base.train.meta_batch_size}",
            "train.lr_schedule=constant",
            f"seed={seed}",
        ],
    )


def command_line(
    preset: str,
    methods: list[str],
    seeds: list[int],
    out: Path,
    overrides: list[str],
    pretrain: str | None,
    budgets: list[float] | None,
) -> str:
    """The ``metasched compare`` command that makes this comparison."""
    return (
        f"metasched compare --config {preset} --schedulers {','.join(methods)}"
        f" --seeds {len(seeds)} --out {out}"
        + (f" --pretrain {pretrain}" if pretrain else "")
        + (f" --budget {','.join(f'{b:g}x' for b in budgets)}" if budgets else "")
        + "".join(f" --set {o}" for o in overrides)
    )


def _expected_cost(config: Config) -> float:
    """A rough cost, to start long runs first (only the order): meta-updates times the
    candidates drawn per task trained."""
    batch = config.train.meta_batch_size
    return (config.scheduler.pool_size or batch) / batch * config.train.iterations


__all__ = [
    "VARIANTS",
    "Job",
    "build_jobs",
    "holds_runs",
    "method_overrides",
    "reward_task_rate",
    "run_comparison",
    "stored_state",
]
