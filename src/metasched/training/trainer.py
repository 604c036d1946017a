"""The meta-training loop: candidates, scheduler, meta-update, validation, checkpoints, test."""

from __future__ import annotations

import csv
import json
import math
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from tqdm import tqdm

from metasched.config import Config, config_from_dict
from metasched.errors import MetaschedError, TrainingInterrupted
from metasched.schedulers import TaskScheduler, UniformScheduler
from metasched.training.checkpoint import load_checkpoint, save_checkpoint
from metasched.training.components import STREAMS, Components, build_components
from metasched.training.evaluation import EvalResult, evaluate
from metasched.training.metrics import MetricsLog

LAST, BEST = "last.pt", "best.pt"


@contextmanager
def deferred_interrupt() -> Iterator[Callable[[], bool]]:
    """Turns the first Ctrl-C into a flag the loop checks between iterations; a second
    Ctrl-C aborts at once (the last checkpoint on disk stays intact either way)."""
    hit = [False]

    def handler(signum: int, frame: object) -> None:
        if hit[0]:
            raise KeyboardInterrupt
        hit[0] = True
        tqdm.write("interrupt: saving a checkpoint after this iteration (Ctrl-C again to abort)")

    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield lambda: hit[0]
    finally:
        signal.signal(signal.SIGINT, previous)


def build_scheduler(config: Config) -> TaskScheduler:
    """The task scheduler named by ``scheduler.name``."""
    if config.scheduler.name == "uniform":
        return UniformScheduler()
    raise MetaschedError(f"unknown scheduler.name={config.scheduler.name!r}; use uniform")


@dataclass
class TrainState:
    """Progress that a checkpoint must restore besides the model and optimiser."""

    iteration: int = 0
    best_score: float = -math.inf
    best_iteration: int = 0


class Trainer:
    """Meta-trains a learner on episodes chosen by a task scheduler.

    Each iteration draws ``scheduler.pool_size`` candidate episodes (the meta-batch size by
    default), lets the scheduler choose ``train.meta_batch_size`` of them, and takes one Adam
    step on the mean query loss after adaptation. Every ``train.val_every`` iterations the
    meta-model is scored on a fixed set of validation tasks and the best one is kept.

    Args:
        config: the run's settings.
        run_dir: where checkpoints, metrics and results go.
        components: prebuilt data/model/learner (built from ``config`` when omitted).
    """

    def __init__(self, config: Config, run_dir: Path, components: Components | None = None):
        self.config = config
        self.run_dir = Path(run_dir)
        self.parts = components or build_components(config)
        self.optimizer = torch.optim.Adam(self.parts.model.parameters(), lr=config.train.meta_lr)
        self.scheduler = build_scheduler(config)
        self.rng = np.random.default_rng([config.seed, STREAMS["train"]])
        self.state = TrainState()
        self.metrics = MetricsLog(self.run_dir / "metrics.jsonl")

    # ------------------------------------------------------------------------------------------
    # Starting and resuming.

    @classmethod
    def create(cls, config: Config, run_dir: Path) -> Trainer:
        """A new run in ``run_dir``, which must not hold one already."""
        if (run_dir / LAST).exists():
            raise MetaschedError(
                f"{str(run_dir)!r} already holds a run; continue it with --resume {run_dir}"
                " or choose another --run-dir"
            )
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "metrics.jsonl").unlink(missing_ok=True)
        (run_dir / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
        return cls(config, run_dir)

    @classmethod
    def resume(cls, run_dir: Path, overrides: list[str] | None = None) -> Trainer:
        """Continues the run in ``run_dir`` from its last checkpoint, exactly.

        Only ``train.*`` settings (iterations, validation and checkpoint intervals, device)
        may change on resume.
        """
        payload = load_checkpoint(run_dir / LAST)
        config = config_from_dict(payload["config"], overrides)
        changed = {k for k, v in config.to_dict().items() if payload["config"].get(k) != v}
        if changed - {"train"}:
            raise MetaschedError(
                f"cannot change {', '.join(sorted(changed - {'train'}))} when resuming;"
                " only train.* settings may change (start a new run instead)"
            )
        trainer = cls(config, run_dir)
        trainer.load_state(payload)
        trainer.metrics.truncate_after(trainer.state.iteration)
        return trainer

    def checkpoint_payload(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "iteration": self.state.iteration,
            "best_score": self.state.best_score,
            "best_iteration": self.state.best_iteration,
            "model": self.parts.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": self.rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
        }

    def load_state(self, payload: dict[str, Any]) -> None:
        self.parts.model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        self.rng.bit_generator.state = payload["rng"]
        torch.set_rng_state(payload["torch_rng"])
        self.state = TrainState(
            payload["iteration"], payload["best_score"], payload["best_iteration"]
        )

    # ------------------------------------------------------------------------------------------
    # The loop.

    def train_step(self) -> dict[str, float]:
        """One meta-update; returns its training loss, score and fraction of noisy tasks."""
        start = time.perf_counter()
        batch = self.config.train.meta_batch_size
        pool_size = self.config.scheduler.pool_size or batch
        candidates = [self.parts.samplers["train"].sample(self.rng) for _ in range(pool_size)]
        selection = self.scheduler.select(pool_size, batch, self.rng)
        params = self.parts.learner.parameters()
        self.optimizer.zero_grad(set_to_none=True)
        losses, scores = [], []
        for index in selection.indices:
            episode = candidates[int(index)].to(self.parts.device)
            outcome = self.parts.learner.query_outcome(params, episode)
            (outcome.loss / batch).backward()
            losses.append(outcome.loss.item())
            scores.append(outcome.score.item())
        self.optimizer.step()
        return {
            "loss": float(np.mean(losses)),
            "score": float(np.mean(scores)),
            "noisy": float(np.mean([candidates[int(i)].noisy for i in selection.indices])),
            "seconds": time.perf_counter() - start,
        }

    def evaluate_split(self, split: str, num_tasks: int, show: bool = False) -> EvalResult:
        """Scores the current meta-model on ``num_tasks`` fixed tasks of ``split``."""
        rng = np.random.default_rng([self.config.seed, STREAMS[split]])
        return evaluate(
            self.parts.learner,
            self.parts.learner.parameters(),
            self.parts.samplers[split],
            num_tasks,
            rng,
            self.parts.device,
            f"{split} tasks" if show else None,
        )

    def fit(self, progress: bool = True) -> dict[str, Any]:
        """Trains to ``train.iterations``, then tests; returns the summary."""
        train = self.config.train
        recent: deque[tuple[float, float]] = deque(maxlen=50)
        with (
            deferred_interrupt() as interrupted,
            tqdm(
                total=train.iterations,
                initial=self.state.iteration,
                desc="meta-training",
                disable=not progress,
                dynamic_ncols=True,
            ) as bar,
        ):
            while self.state.iteration < train.iterations:
                record = self.train_step()
                self.state.iteration += 1
                it = self.state.iteration
                self.metrics.append("train", it, **record)
                recent.append((record["loss"], record["score"]))
                if it % train.val_every == 0 or it == train.iterations:
                    self._validate()
                if it % train.checkpoint_every == 0 or it == train.iterations:
                    save_checkpoint(self.run_dir / LAST, self.checkpoint_payload())
                bar.update(1)
                bar.set_postfix(
                    loss=f"{np.mean([r[0] for r in recent]):.3f}",
                    acc=f"{np.mean([r[1] for r in recent]):.3f}",
                    best_val=f"{self.state.best_score:.3f}",
                )
                if interrupted():
                    save_checkpoint(self.run_dir / LAST, self.checkpoint_payload())
                    raise TrainingInterrupted(self.run_dir, it)
        return self.test(progress)

    def _validate(self) -> None:
        result = self.evaluate_split("val", self.config.train.val_tasks)
        it = self.state.iteration
        self.metrics.append("val", it, score=result.mean, ci95=result.ci95, loss=result.loss)
        if result.mean > self.state.best_score:
            self.state.best_score, self.state.best_iteration = result.mean, it
            save_checkpoint(self.run_dir / BEST, self.checkpoint_payload())

    # ------------------------------------------------------------------------------------------
    # The final test.

    def test(self, progress: bool = True) -> dict[str, Any]:
        """Tests the final and the best-on-validation meta-models on ``train.test_tasks`` tasks
        (the same tasks for both), writes ``summary.json`` and ``test_tasks.csv``."""
        num_tasks = self.config.train.test_tasks
        final = self.evaluate_split("test", num_tasks, progress)
        results = {"final": (self.state.iteration, final)}
        if self.state.best_iteration not in (0, self.state.iteration):
            current = {k: v.clone() for k, v in self.parts.model.state_dict().items()}
            self.parts.model.load_state_dict(load_checkpoint(self.run_dir / BEST)["model"])
            results["best"] = (
                self.state.best_iteration,
                self.evaluate_split("test", num_tasks, progress),
            )
            self.parts.model.load_state_dict(current)
        else:
            results["best"] = results["final"]
        summary: dict[str, Any] = {"run_dir": str(self.run_dir), "test_tasks": num_tasks}
        for name, (iteration, result) in results.items():
            summary[name] = {
                "iteration": iteration,
                "score": result.mean,
                "ci95": result.ci95,
                "loss": result.loss,
            }
            self.metrics.append(
                "test",
                iteration,
                checkpoint=name,
                **{k: v for k, v in summary[name].items() if k != "iteration"},
            )
        (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        with open(self.run_dir / "test_tasks.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["task", "score_best", "loss_best", "score_final", "loss_final"])
            best, last = results["best"][1], results["final"][1]
            for i in range(num_tasks):
                writer.writerow([i, best.scores[i], best.losses[i], last.scores[i], last.losses[i]])
        return summary
