"""The meta-training loop: candidates, scheduler, meta-update, validation, checkpoints, test."""

from __future__ import annotations

import math
import time
import warnings
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from tqdm import tqdm

from metasched.allocator import retain_freed_cpu_memory
from metasched.config import Config, config_from_dict
from metasched.cpu import bf16_advice
from metasched.errors import Diverged, MetaschedError, TrainingAborted, TrainingInterrupted
from metasched.files import atomic_write, os_error
from metasched.training.checkpoint import (
    load_checkpoint,
    load_model_weights,
    newest_checkpoint,
    older_copies,
    save_checkpoint,
)
from metasched.training.components import STREAMS, Components, build_components
from metasched.training.cost import charge
from metasched.training.evaluation import EvalResult, evaluate, write_test_results
from metasched.training.metrics import MetricsLog
from metasched.training.provenance import data_mismatch, record_start
from metasched.training.ranks import Ranks, current_ranks
from metasched.training.run_dir import claim_existing, claim_new
from metasched.training.signals import first_signal_stops
from metasched.training.step import MetaStep, TrainState, fraction_done

LAST, BEST = "last.pt", "best.pt"


class Trainer:
    """Meta-trains a learner on episodes chosen by a task scheduler.

    Each iteration draws ``scheduler.pool_size`` candidate episodes (the meta-batch size by
    default), measures what the scheduler declares it needs (:class:`Feature`), lets it choose
    ``train.meta_batch_size`` of them (with :class:`LoopServices` at hand), and takes one Adam
    step on their (weighted) mean query loss after adaptation. The loop knows no scheduler: a
    scheduler's warm-up is iterations whose selection skips the update. ``train.iterations``
    counts meta-updates, so every scheduler gets the same number of them. Every
    ``train.val_every`` meta-updates the meta-model is scored on a fixed set of validation
    tasks and the best one is kept.

    Args:
        config: the run's settings.
        run_dir: where checkpoints, metrics and results go.
        components: prebuilt data/model/learner (built from ``config`` when omitted).
        ranks: the processes that share each iteration's tasks (``torch.distributed``; one
            process when omitted and no process group is initialised). Every rank holds the
            same meta-model, scheduler and random streams; only rank 0 writes.
    """

    def __init__(
        self,
        config: Config,
        run_dir: Path,
        components: Components | None = None,
        ranks: Ranks | None = None,
    ):
        self.config = config
        self.ranks = ranks or current_ranks()
        self.run_dir = Path(run_dir)
        self.parts = components or build_components(config)
        if self.parts.device.type == "cpu" and config.train.retain_memory:
            retain_freed_cpu_memory()
        advice = bf16_advice(self.parts.device.type, config.scheduler.pool_precision)
        if advice:
            warnings.warn(advice, RuntimeWarning, stacklevel=2)
        self.optimizer = torch.optim.Adam(self.parts.model.parameters(), lr=config.train.meta_lr)
        self.scheduler = self.parts.scheduler
        self.warmup = self.scheduler.warmup_iterations
        self.total = self.warmup + config.train.iterations
        self.rng = np.random.default_rng([config.seed, STREAMS["train"]])
        self.step = MetaStep(config, self.parts, self.optimizer, self.ranks, self.rng)
        self.state = TrainState()
        self._clock = time.perf_counter()  # wall time since the state's ``seconds``
        self.metrics = MetricsLog(self.run_dir / "metrics.jsonl")
        self.saved_iteration: int | None = None  # that of the newest last.pt
        self.resumed_from: Path | None = None
        self._iteration_done = True  # False while train_step runs

    # ------------------------------------------------------------------------------------------
    # Starting and resuming.

    @classmethod
    def create(cls, config: Config, run_dir: Path) -> Trainer:
        """A new run in ``run_dir``, which must be new, empty, or a run that saved nothing."""
        if current_ranks().is_main:  # rank 0 prepares the directory and writes
            cls._prepare_run_dir(config, run_dir)
        trainer = cls(config, run_dir)
        if config.train.init_from:
            trainer.initialise_from(Path(config.train.init_from))
        return trainer

    @staticmethod
    def _prepare_run_dir(config: Config, run_dir: Path) -> None:
        """Claims ``run_dir`` for a new run (:mod:`metasched.training.run_dir`), then writes
        its config and provenance."""
        claim_new(run_dir, (run_dir / LAST).exists() or bool(older_copies(run_dir / LAST)))
        try:
            (run_dir / "metrics.jsonl").unlink(missing_ok=True)
        except OSError as error:
            raise os_error(error) from error
        atomic_write(run_dir / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False))
        record_start(run_dir, config)

    def initialise_from(self, path: Path) -> None:
        """Starts θ0 from another run's model (e.g. one pre-trained on clean tasks)."""
        if path.is_dir():
            path = path / BEST
        load_model_weights(self.parts.model, load_checkpoint(path)["model"], path)

    @classmethod
    def resume(cls, run_dir: Path, overrides: list[str] | None = None) -> Trainer:
        """Continues the run in ``run_dir`` from its last checkpoint, exactly.

        It starts from the newest intact checkpoint (``last.pt`` or an older copy, see
        ``train.keep_checkpoints``). Only ``train.*`` settings may change on resume, and each
        takes effect (a new ``train.meta_lr`` reaches the optimiser), except
        ``train.init_from``, which only sets a new run's θ0. Raising ``train.iterations``
        continues the run but is not the run that would have been planned longer: ATS reads
        progress as a fraction of it.
        """
        if not run_dir.is_dir():
            raise MetaschedError(f"{str(run_dir)!r} is not a run directory; check the path")
        path, payload = newest_checkpoint(run_dir / LAST)
        if current_ranks().is_main:  # it holds a run: lock it, then clean up after killed writers
            claim_existing(run_dir)
        config = config_from_dict(payload["config"], overrides)
        before = config_from_dict(payload["config"])  # settings added since: their defaults
        stored = before.to_dict()
        changed = {k for k, v in config.to_dict().items() if stored.get(k) != v}
        if "data" in changed and _only_root_moved(before, config):
            changed.discard("data")  # the same data at another path: checked just below
        if changed - {"train"}:
            raise MetaschedError(
                f"cannot change {', '.join(sorted(changed - {'train'}))} when resuming;"
                " only train.* settings may change (start a new run instead)"
            )
        if config.train.init_from != before.train.init_from:
            raise MetaschedError(
                "train.init_from sets the starting weights of a new run; a resumed run"
                " continues from its own checkpoint (start a new run to change it)"
            )
        if _charged_differently(before.train.budget, config.train.budget):
            raise MetaschedError(
                "a resumed run keeps the per-iteration costs of its train.budget, or its lack of"
                " one (the compute it has spent was counted with them); its total and test_at"
                " may change: start a new run to add, drop or re-cost a budget"
            )
        moved = data_mismatch(run_dir, config)
        if moved:
            raise MetaschedError(
                f"cannot resume: {moved}; resume from the folder the run was started in, or"
                " pass --set data.root=PATH naming the same data"
            )
        main = current_ranks().is_main
        if main:
            record_start(run_dir, config)
        trainer = cls(config, run_dir)
        trainer.load_state(payload, path)
        trainer.saved_iteration, trainer.resumed_from = trainer.state.iteration, path
        if main:
            trainer.metrics.truncate_after(trainer.state.iteration)
        return trainer

    def checkpoint_payload(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "iteration": self.state.iteration,
            "best_score": self.state.best_score,
            "best_iteration": self.state.best_iteration,
            "updates": self.state.updates,
            "seconds": self.state.seconds + time.perf_counter() - self._clock,
            "spent": self.state.spent,
            "skipped_in_a_row": self.step.skipped_in_a_row,  # train.on_nonfinite=skip's count
            "model": self.parts.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": self.rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
            "inputs": self.parts.inputs,
        }

    def load_state(self, payload: dict[str, Any], path: Path | None = None) -> None:
        """Restores a checkpoint's state (checked field by field when it was read); a part that
        does not fit this run (a crafted file) stops the resume in one line naming it."""
        restore = {
            "model": self.parts.model.load_state_dict,
            "optimizer": self.optimizer.load_state_dict,
            "scheduler": self.scheduler.load_state_dict,
            "rng": lambda state: setattr(self.rng.bit_generator, "state", state),
            "torch_rng": torch.set_rng_state,
        }
        for part, load in restore.items():
            try:
                load(payload[part])
            except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as error:
                raise MetaschedError(
                    f"checkpoint {str(path or LAST)!r} holds a {part} state that does not fit"
                    f" this run ({type(error).__name__}); use an older copy (last.pt.1, ...) or"
                    " start again"
                ) from error
        for group in self.optimizer.param_groups:  # the saved state holds the old rate
            group["lr"] = self.config.train.meta_lr
        iteration = payload["iteration"]
        self.state = TrainState(
            iteration,
            payload["best_score"],
            payload["best_iteration"],
            payload.get("updates", max(0, iteration - self.warmup)),
            payload.get("seconds", 0.0),
            payload.get("spent", 0.0),
        )
        self.step.skipped_in_a_row = int(payload.get("skipped_in_a_row", 0))
        self._clock = time.perf_counter()

    # ------------------------------------------------------------------------------------------
    # The loop.

    @property
    def progress(self) -> float:
        """The fraction of training done: of the meta-updates (0 throughout a scheduler's
        warm-up), or of the compute budget when the run has one."""
        return fraction_done(self.config, self.state)

    def _finished(self) -> bool:
        """Whether the run has made its meta-updates or spent its compute budget."""
        budget = self.config.train.budget
        spent = budget is not None and self.state.spent >= budget.total - 1e-9
        return spent or self.state.updates >= self.config.train.iterations

    def train_step(self) -> dict[str, Any]:
        """One iteration: the scheduler's candidates and choice, and the meta-update."""
        return self.step.run(self.state, self.total)

    def _save_last(self) -> None:
        """Writes ``last.pt``, keeping ``train.keep_checkpoints`` of them; never a model that
        is no longer finite (the run stops instead, the older checkpoints intact)."""
        params = self.parts.learner.parameters()
        if not all(bool(torch.isfinite(p).all()) for p in params.values()):
            raise self.step.diverged("the meta-model's weights are not finite", params)
        if self.ranks.is_main:
            payload = self.checkpoint_payload()
            save_checkpoint(self.run_dir / LAST, payload, self.config.train.keep_checkpoints)
        self.saved_iteration = self.state.iteration

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
            f"{split} tasks" if show and self.ranks.is_main else None,
            self.ranks,
        )

    def fit(self, progress: bool = True, stop: Callable[[], bool] | None = None) -> dict[str, Any]:
        """Trains to ``train.iterations``, then tests; returns the summary.

        Args:
            progress: show a progress bar.
            stop: checked after each iteration like Ctrl-C: when true, save and raise
                :class:`TrainingInterrupted` (compare's parent asks its workers this way).
        """
        self._clock = time.perf_counter()
        try:
            with first_signal_stops(_say_saving) as interrupted:
                asked = interrupted if stop is None else lambda: interrupted() or stop()
                self._train(progress, asked)
        except KeyboardInterrupt:
            raise TrainingAborted(self.run_dir, self.saved_iteration) from None
        except Diverged as error:
            at = self.state.iteration + (not self._iteration_done)
            raise Diverged(
                f"training diverged at iteration {at}: {error.what}", self._advice(error.cause)
            ) from None
        return self.test(progress)

    def _train(self, progress: bool, interrupted: Callable[[], bool]) -> None:
        train = self.config.train
        recent: deque[tuple[float, float]] = deque(maxlen=50)
        with tqdm(
            total=self.total,
            initial=self.state.iteration,
            desc="meta-training",
            disable=not progress or not self.ranks.is_main,
            dynamic_ncols=True,
        ) as bar:
            while not self._finished():
                before, spent_before = self.state.updates, self.state.spent
                self._iteration_done = False
                record = self.train_step()
                if train.budget is not None:
                    self.state.spent += charge(record, train.budget)
                self.state.iteration += 1
                self._iteration_done = True
                it = self.state.iteration
                if self.ranks.is_main:
                    self.metrics.append("train", it, **record)
                if record["loss"] is not None:
                    recent.append((record["loss"], record["score"]))
                updates = self.state.updates
                done = self._finished()
                crossed = train.budget is not None and any(
                    spent_before < b <= self.state.spent for b in train.budget.test_at
                )
                milestone = not done and (
                    crossed or (updates > before and updates in train.test_at)
                )
                improved = False
                if updates > before and (updates % train.val_every == 0 or done or milestone):
                    improved = self._validate()
                if milestone:
                    self._test_milestone()
                # A new best.pt is followed by last.pt at once: a resume then knows it as best
                if it % train.checkpoint_every == 0 or done or improved:
                    self._save_last()
                bar.update(1)
                if recent:
                    bar.set_postfix(
                        loss=f"{np.mean([r[0] for r in recent]):.3f}",
                        score=f"{np.mean([r[1] for r in recent]):.3f}",
                        best_val=f"{self.state.best_score:.3f}",
                    )
                if self.ranks.any(interrupted()):  # every rank stops at the same iteration
                    self._save_last()
                    raise TrainingInterrupted(self.run_dir, it)

    def _advice(self, cause: str) -> str:
        """``cause``, and where to go on from: the newest checkpoint, or a new run."""
        if self.saved_iteration is None:
            return f"{cause}; no checkpoint was saved before it, so start the run again"
        return (
            f"{cause}; the last good checkpoint is {self.run_dir / LAST} (iteration"
            f" {self.saved_iteration}): train.* settings can change on --resume, others need a"
            " new run"
        )

    def _validate(self) -> bool:
        """Scores the meta-model on the validation tasks; whether it is the best so far (then
        saved as ``best.pt``)."""
        result = self.evaluate_split("val", self.config.train.val_tasks)
        it = self.state.iteration
        if not math.isfinite(result.loss):
            raise self.step.diverged(
                "the validation loss is not finite", self.parts.learner.parameters()
            )
        if self.ranks.is_main:
            self.metrics.append(
                "val",
                it,
                score=result.mean,
                ci95=result.ci95,
                loss=result.loss,
                updates=self.state.updates,
                wall_seconds=self.state.seconds + time.perf_counter() - self._clock,
            )
        if not result.mean > self.state.best_score:  # (a NaN score is never the best)
            return False
        self.state.best_score, self.state.best_iteration = result.mean, it
        if self.ranks.is_main:
            save_checkpoint(self.run_dir / BEST, self.checkpoint_payload())  # one, not rotated
        return True

    def _best_weights(self) -> dict[str, torch.Tensor]:
        """The best-on-validation model's weights, from ``best.pt``, which must hold the
        iteration the run's state calls best."""
        self.ranks.barrier()  # rank 0 wrote best.pt
        payload = load_checkpoint(self.run_dir / BEST)
        if payload["iteration"] != self.state.best_iteration:
            raise MetaschedError(
                f"{self.run_dir / BEST} holds iteration {payload['iteration']}, not the run's"
                f" best, {self.state.best_iteration} (it stopped between saving best.pt and"
                " last.pt); train the run again"
            )
        return payload["model"]

    def _test_milestone(self) -> None:
        """Tests the current and the best-so-far meta-models at a ``train.test_at`` count."""
        num_tasks = self.config.train.test_tasks
        current = self.evaluate_split("test", num_tasks)
        best = current
        if self.state.best_iteration not in (0, self.state.iteration):
            weights = {k: v.clone() for k, v in self.parts.model.state_dict().items()}
            self.parts.model.load_state_dict(self._best_weights())
            best = self.evaluate_split("test", num_tasks)
            self.parts.model.load_state_dict(weights)
        if self.ranks.is_main:
            self.metrics.append(
                "milestone",
                self.state.iteration,
                updates=self.state.updates,
                **({"spent": self.state.spent} if self.config.train.budget else {}),
                best_iteration=self.state.best_iteration or self.state.iteration,
                **{f"{k}_final": v for k, v in _scored(current).items()},
                **{f"{k}_best": v for k, v in _scored(best).items()},
            )

    # ------------------------------------------------------------------------------------------
    # The final test.

    def test(self, progress: bool = True) -> dict[str, Any]:
        """Tests the final and the best-on-validation meta-models on ``train.test_tasks`` tasks
        (the same tasks for both), writes ``summary.json`` and ``test_tasks.csv``."""
        num_tasks = self.config.train.test_tasks
        training_seconds = self.state.seconds + time.perf_counter() - self._clock
        start = time.perf_counter()
        final = self.evaluate_split("test", num_tasks, progress)
        results = {"final": (self.state.iteration, final)}
        if self.state.best_iteration not in (0, self.state.iteration):
            current = {k: v.clone() for k, v in self.parts.model.state_dict().items()}
            self.parts.model.load_state_dict(self._best_weights())
            results["best"] = (
                self.state.best_iteration,
                self.evaluate_split("test", num_tasks, progress),
            )
            self.parts.model.load_state_dict(current)
        else:
            results["best"] = results["final"]
        if not self.ranks.is_main:
            return {}
        summary = write_test_results(
            self.run_dir,
            results,
            self.parts.learner.objective,
            {"train_seconds": training_seconds, "test_seconds": time.perf_counter() - start},
        )
        for name, (iteration, _) in results.items():
            self.metrics.append(
                "test",
                iteration,
                checkpoint=name,
                **{k: summary[name][k] for k in ("score", "ci95", "loss")},
            )
        return summary


def _only_root_moved(before: Config, after: Config) -> bool:
    """Whether two configs differ in ``data.root`` alone among the data settings."""
    return replace(before.data, root=after.data.root) == after.data


def _say_saving(name: str) -> None:
    tqdm.write(f"{name}: saving a checkpoint after this iteration ({name} again to abort)")


def _scored(result: EvalResult) -> dict[str, float]:
    return {"score": result.mean, "ci95": result.ci95, "loss": result.loss}


def _charged_differently(before: Any, now: Any) -> bool:
    """Whether two ``train.budget`` settings count compute differently (one is missing, or
    their per-iteration costs differ)."""
    if before is None or now is None:
        return before is not now
    return (before.step, before.light, before.warmup) != (now.step, now.light, now.warmup)
