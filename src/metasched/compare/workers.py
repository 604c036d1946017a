"""Running a comparison's jobs: one after another in this process, or in worker processes
that stop cleanly on Ctrl-C, SIGTERM or the death of the parent."""

from __future__ import annotations

import signal
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing import get_context
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, cast

from metasched.compare.methods import JobPayload
from metasched.compare.reuse import stored_state
from metasched.config import config_from_dict
from metasched.errors import (
    ComparisonInterrupted,
    MetaschedError,
    TrainingAborted,
    TrainingInterrupted,
)
from metasched.training.baselines import run_baseline
from metasched.training.signals import die_with_parent, first_signal_stops


def run_job(job: JobPayload, stop: Callable[[], bool] | None = None) -> tuple[str, float]:
    """Runs one job in this process (``threads`` threads); returns (run_dir, seconds).
    ``stop`` is checked after each iteration: when true, the run saves and stops."""
    import torch

    from metasched.training.trainer import Trainer

    values, run_dir_text, threads, baseline = job
    torch.set_num_threads(threads)
    run_dir = Path(run_dir_text)
    config = config_from_dict(values)
    state, _ = stored_state(run_dir, config, baseline)
    start = time.perf_counter()
    if baseline:
        run_baseline(baseline, config, run_dir)
    else:
        trainer = Trainer.resume(run_dir) if state == "resume" else Trainer.create(config, run_dir)
        trainer.fit(progress=False, stop=stop)
    seconds = time.perf_counter() - start
    print(f"done {run_dir} in {seconds / 60:.1f} min", flush=True)
    return str(run_dir), seconds


def run_in_processes(payload: list[JobPayload], workers: int) -> None:
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

    def ask_every_run(name: str) -> None:
        stop.set()
        print(f"{name}: asking every run to save and stop", flush=True)

    with first_signal_stops(ask_every_run):
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


def _job_process(job: JobPayload, stop: Any, reports: Any) -> None:
    """A job's process: runs it and reports how it failed, if it did."""
    die_with_parent()
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
def exit_on_sigterm() -> Iterator[None]:
    """SIGTERM (``kill``) exits through the ``with`` blocks, so the pool's workers are
    terminated instead of running on, orphaned, beside the next comparison."""

    def leave(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, leave)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
