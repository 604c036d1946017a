"""The meta-training loop: candidates, scheduler, meta-update, validation, checkpoints, test."""

from __future__ import annotations

import math
import signal
import threading
import time
import warnings
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

from metasched.allocator import retain_freed_cpu_memory
from metasched.config import Config, config_from_dict
from metasched.cpu import bf16_advice
from metasched.errors import Diverged, MetaschedError, TrainingAborted, TrainingInterrupted
from metasched.files import atomic_write, os_error, remove_stale_temporaries
from metasched.learners.base import Params, TaskResults
from metasched.schedulers import Feature, Pool, Trained
from metasched.schedulers.ats import entropy
from metasched.tasks.episode import Episode
from metasched.training.checkpoint import (
    load_checkpoint,
    load_model_weights,
    newest_checkpoint,
    older_copies,
    save_checkpoint,
)
from metasched.training.components import STREAMS, Components, build_components
from metasched.training.evaluation import EvalResult, evaluate, write_test_results
from metasched.training.gradients import CandidateGradients, ChosenOutcome, Gradient, clipped
from metasched.training.metrics import MetricsLog
from metasched.training.provenance import record_start
from metasched.training.ranks import Ranks, current_ranks
from metasched.training.services import LoopServices

LAST, BEST = "last.pt", "best.pt"
RUN_FILES = {"config.yaml", "metrics.jsonl", "provenance.json", BEST}  # a run's own before last.pt
SKIPS_IN_A_ROW = 20  # train.on_nonfinite=skip: this many iterations without an update stop


@contextmanager
def deferred_interrupt() -> Iterator[Callable[[], bool]]:
    """Turns the first Ctrl-C or SIGTERM (what ``kill`` and job schedulers send) into a flag
    the loop checks between iterations; a second one aborts at once (the last checkpoint on
    disk stays intact either way)."""
    hit = [False]

    def handler(signum: int, frame: object) -> None:
        if hit[0]:
            raise KeyboardInterrupt
        hit[0] = True
        name = signal.Signals(signum).name
        tqdm.write(f"{name}: saving a checkpoint after this iteration ({name} again to abort)")

    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield lambda: hit[0]
    finally:
        for number, action in previous.items():
            signal.signal(number, action)


@dataclass
class TrainState:
    """Progress that a checkpoint must restore besides the model and optimiser."""

    iteration: int = 0
    best_score: float = -math.inf
    best_iteration: int = 0
    updates: int = 0
    seconds: float = 0.0  # wall time of training and validation, across resumes


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
        self.state = TrainState()
        self._clock = time.perf_counter()  # wall time since the state's ``seconds``
        self.metrics = MetricsLog(self.run_dir / "metrics.jsonl")
        self.saved_iteration: int | None = None  # that of the newest last.pt
        self.resumed_from: Path | None = None
        self._skipped_in_a_row = 0
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
        """Checks that ``run_dir`` may take a new run, then writes its config and provenance."""
        if run_dir.exists() and not run_dir.is_dir():
            raise MetaschedError(f"run directory {str(run_dir)!r} is a file; choose another")
        if (run_dir / LAST).exists() or older_copies(run_dir / LAST):
            raise MetaschedError(
                f"{str(run_dir)!r} already holds a run; continue it with --resume {run_dir}"
                " or choose another --run-dir"
            )
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(run_dir)
            foreign = sorted(p.name for p in run_dir.iterdir() if p.name not in RUN_FILES)
            if foreign:
                raise MetaschedError(
                    f"run directory {str(run_dir)!r} holds other files ({', '.join(foreign[:3])});"
                    " choose a new or empty directory"
                )
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
        try:
            remove_stale_temporaries(run_dir)
        except OSError as error:
            raise os_error(error) from error
        path, payload = newest_checkpoint(run_dir / LAST)
        config = config_from_dict(payload["config"], overrides)
        before = config_from_dict(payload["config"])  # settings added since: their defaults
        stored = before.to_dict()
        changed = {k for k, v in config.to_dict().items() if stored.get(k) != v}
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
        main = current_ranks().is_main
        if main:
            record_start(run_dir, config)
        trainer = cls(config, run_dir)
        trainer.load_state(payload)
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
            "model": self.parts.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": self.rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
        }

    def load_state(self, payload: dict[str, Any]) -> None:
        self.parts.model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        for group in self.optimizer.param_groups:  # the saved state holds the old rate
            group["lr"] = self.config.train.meta_lr
        self.scheduler.load_state_dict(payload["scheduler"])
        self.rng.bit_generator.state = payload["rng"]
        torch.set_rng_state(payload["torch_rng"])
        iteration = payload["iteration"]
        self.state = TrainState(
            iteration,
            payload["best_score"],
            payload["best_iteration"],
            payload.get("updates", max(0, iteration - self.warmup)),
            payload.get("seconds", 0.0),
        )
        self._clock = time.perf_counter()

    # ------------------------------------------------------------------------------------------
    # The loop.

    @property
    def progress(self) -> float:
        """The fraction of meta-updates done (0 throughout a scheduler's warm-up)."""
        return self.state.updates / self.config.train.iterations

    def train_step(self) -> dict[str, Any]:
        """One iteration: measure the pool, let the scheduler choose, update the meta-model."""
        start = time.perf_counter()
        batch = self.config.train.meta_batch_size
        candidates = self._draw_candidates(batch)
        noisy = np.array([c.noisy for c in candidates])
        params = self.parts.learner.parameters()
        measured, graphs, kept, pool = self._measure(candidates, params)
        gradients = CandidateGradients(
            self.parts.learner, params, candidates, measured, graphs, kept, self.ranks
        )
        services = LoopServices(
            self.parts.learner,
            params,
            gradients,
            self.parts.samplers["reward"],
            self.rng,
            self.parts.device,
            pool.contexts,
            self.config.train.clip_grad_norm,
        )
        selection = self.scheduler.choose(pool, batch, self.rng, services)
        if selection.policy is not None and not torch.isfinite(selection.policy).all():
            raise self._diverged("the scheduler's probabilities are not finite", params)
        record: dict[str, Any] = {"phase": "train" if selection.update == "step" else "warmup"}
        record.update(selection.diagnostics)
        if selection.policy is not None:
            record.update(_probability_diagnostics(selection.policy, noisy))
        chosen, weights = selection.indices, selection.weights
        trained_noisy = list(noisy[chosen])
        skewed = np.array([c.skewed for c in candidates])
        trained_skewed = list(skewed[chosen])
        if selection.update == "step":
            extra = self._reward_tasks_for_update()
            if extra:
                added = gradients.add(extra)
                chosen = np.concatenate([chosen, added])
                trained_noisy += [False] * len(added)
                trained_skewed += [False] * len(added)
                if weights is not None:  # the added tasks weigh as much as an average one
                    weights = np.concatenate([weights, np.full(len(added), 1 / batch)])
                    weights = weights / weights.sum()
                record["reward_tasks_trained"] = len(added)
        combined = gradients.combine(chosen, weights)
        outcome: ChosenOutcome | None = combined
        if not _finite(combined):
            outcome, chosen, weights = self._without_nonfinite(
                gradients, combined, chosen, weights, params, record
            )
        if outcome is None:
            pass  # every chosen task gave a NaN or infinity and was skipped: no update
        elif selection.update == "step":
            self._adam_step(params, outcome.gradient)
            self.state.updates += 1
            trained = Trained(chosen, outcome.losses, outcome.scores, self.progress)
            record.update(self.scheduler.observe(trained))
        elif selection.update == "step_and_restore":
            self._restored_step(params, outcome.gradient)
        reward_tasks = services.reward_tasks_drawn
        if reward_tasks:
            record["reward_tasks"] = reward_tasks
        if self.config.task.skew_fraction > 0:
            record.update(skewed=float(np.mean(trained_skewed)), pool_skewed=float(skewed.mean()))
        record.update(
            loss=None if outcome is None else outcome.loss,
            score=None if outcome is None else outcome.score,
            noisy=float(np.mean(trained_noisy)),
            pool_noisy=float(noisy.mean()),
            chosen=[int(i) for i in chosen],
            seconds=time.perf_counter() - start,
        )
        return record

    def _without_nonfinite(
        self,
        gradients: CandidateGradients,
        outcome: ChosenOutcome,
        chosen: np.ndarray,
        weights: np.ndarray | None,
        params: Params,
        record: dict[str, Any],
    ) -> tuple[ChosenOutcome | None, np.ndarray, np.ndarray | None]:
        """Stops the run at a NaN or infinite loss or meta-gradient, or, with
        ``train.on_nonfinite=skip``, drops the tasks that gave one (None: all of them)."""
        bad = ~np.isfinite(outcome.losses)
        if self.config.train.on_nonfinite == "stop":
            what = (
                f"the query loss of {bad.sum()} of {len(bad)} chosen tasks is not finite"
                if bad.any()
                else "the meta-gradient is not finite"
            )
            raise self._diverged(what, params)
        kept: ChosenOutcome | None = None
        if bad.any() and not bad.all():
            chosen = chosen[~bad]
            if weights is not None:
                weights = weights[~bad] / weights[~bad].sum()
            kept = gradients.combine(chosen, weights)
            kept = kept if _finite(kept) else None
        record["skipped_tasks"] = len(bad) if kept is None else int(bad.sum())
        self._skipped_in_a_row = self._skipped_in_a_row + 1 if kept is None else 0
        if self._skipped_in_a_row >= SKIPS_IN_A_ROW:
            raise self._diverged(
                f"every chosen task gave a NaN or infinity for {SKIPS_IN_A_ROW} iterations", params
            )
        return kept, chosen, weights

    def _diverged(self, what: str, params: Params) -> Diverged:
        """The error for a non-finite quantity at this iteration, with its likely cause."""
        config = self.config
        finite = all(bool(torch.isfinite(p).all()) for p in params.values())
        largest = max(float(p.detach().abs().max()) for p in params.values()) if finite else 0
        if not finite or largest > 1e6:
            state = "not finite" if not finite else f"as large as {largest:.3g}"
            setting = f"train.meta_lr={config.train.meta_lr / 100:g}"
            cause = f"the meta-update's step is too large (θ0 is {state}): lower it, {setting}"
        elif config.learner.algorithm == "ridge":
            setting = f"learner.ridge_penalty={config.learner.ridge_penalty * 10:g}"
            cause = f"the closed-form head is ill-conditioned at this θ0: raise {setting}"
        else:
            setting = f"learner.inner_lr={config.learner.inner_lr / 10:g}"
            cause = (
                f"the inner loop ran away from a finite θ0 (learner.inner_lr="
                f"{config.learner.inner_lr:g}): lower it, {setting}, or clip the meta-update"
                " (train.clip_grad_norm=1)"
            )
        return Diverged(what, cause)

    def _measure(
        self, candidates: list[Episode], params: Params
    ) -> tuple[TaskResults | None, dict[int, torch.Tensor], set[int], Pool]:
        """The features the scheduler declared, and nothing else: each rank measures its
        share of the candidates, and every rank gets every row. Also returns this rank's kept
        graphs by candidate, and which candidates some rank kept a graph of."""
        features = self.scheduler.features
        spec = self.config.scheduler
        learner, ranks = self.parts.learner, self.ranks
        measured, graphs, kept = None, {}, set()
        if features & (Feature.LOSSES | Feature.GRADIENTS):
            bf16 = spec.pool_precision == "bf16"
            # Grouped measurement runs the pool as one batch: backpropagating through it for two
            # chosen tasks would cost more than recomputing them, so its graphs are not kept.
            keep = spec.reuse_graphs and not bf16 and learner.batching == "loop"
            share = ranks.share(len(candidates))
            with torch.autocast(self.parts.device.type, torch.bfloat16, enabled=bf16):
                budget = spec.graph_memory_gb
                mine = learner.measure_pool(
                    params,
                    [candidates[i] for i in share],
                    keep,
                    gradients=bool(features & Feature.GRADIENTS),
                    graph_budget=None if budget is None else int(budget * 2**30),
                )
            graphs = dict(zip(share, mine.graphs or ()))
            flags = torch.full((len(share),), float(mine.graphs is not None))
            kept_flags = ranks.gather_rows(flags if len(share) else None, len(candidates))
            kept = {i for i, flag in enumerate(kept_flags.tolist()) if flag}
            measured = ranks.gather_results(mine, len(candidates))
        pool = Pool(  # the schedulers' networks are tiny: they live on the CPU
            size=len(candidates),
            progress=self.progress,
            iteration=self.state.iteration,
            total_iterations=self.total,
            stats=measured.stats.to("cpu") if measured and measured.stats else None,
            embeddings=ranks.map_rows(lambda c: learner.embed(params, [c])[0], candidates).cpu()
            if features & Feature.EMBEDDINGS
            else None,
            contexts=ranks.map_rows(
                lambda c: learner.two_step_parameters(params, c), candidates
            ).cpu()
            if features & Feature.CONTEXTS
            else None,
            classes=np.array([c.source for c in candidates])
            if features & Feature.CLASSES
            else None,
            noisy=np.array([c.noisy for c in candidates])
            if features & Feature.NOISE_FLAGS
            else None,
        )
        return measured, graphs, kept, pool

    def _reward_tasks_for_update(self) -> list[Episode]:
        """Clean reward-split tasks for this meta-update: ``train.reward_tasks_per_update`` on
        average, the fractions carried over deterministically."""
        rate = self.config.train.reward_tasks_per_update
        done = self.state.updates
        count = math.floor((done + 1) * rate + 1e-9) - math.floor(done * rate + 1e-9)
        sampler = self.parts.samplers["reward"]
        return [sampler.sample(self.rng).to(self.parts.device) for _ in range(count)]

    def _draw_candidates(self, batch: int) -> list[Episode]:
        """The pool; for the oracle, extended until it holds ``batch`` clean candidates."""
        sampler = self.parts.samplers["train"]
        candidates = [
            sampler.sample(self.rng) for _ in range(self.config.scheduler.pool_size or batch)
        ]
        while (
            self.scheduler.needs_clean_candidates and sum(not c.noisy for c in candidates) < batch
        ):
            candidates.append(sampler.sample(self.rng))
        return [c.to(self.parts.device) for c in candidates]

    def _save_last(self) -> None:
        """Writes ``last.pt``, keeping ``train.keep_checkpoints`` of them; never a model that
        is no longer finite (the run stops instead, the older checkpoints intact)."""
        params = self.parts.learner.parameters()
        if not all(bool(torch.isfinite(p).all()) for p in params.values()):
            raise self._diverged("the meta-model's weights are not finite", params)
        if self.ranks.is_main:
            payload = self.checkpoint_payload()
            save_checkpoint(self.run_dir / LAST, payload, self.config.train.keep_checkpoints)
        self.saved_iteration = self.state.iteration

    def learning_rate(self) -> float:
        """The meta-learning rate of the next meta-update (``train.lr_schedule``)."""
        train = self.config.train
        done = self.state.updates / train.iterations
        if train.lr_schedule == "cosine":
            return train.meta_lr * 0.5 * (1 + math.cos(math.pi * done))
        if train.lr_schedule == "linear":
            return train.meta_lr * (1 - done)
        return train.meta_lr

    def _adam_step(self, params: Params, gradient: Gradient) -> None:
        """One Adam step on θ0 along ``gradient`` (parameters without one are left alone)."""
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate()
        self.optimizer.zero_grad(set_to_none=True)
        for p, g in zip(params.values(), clipped(gradient, self.config.train.clip_grad_norm)):
            p.grad = g
        self.optimizer.step()

    def _restored_step(self, params: Params, gradient: Gradient) -> None:
        """The reference's warm-up: an Adam step on θ0, then θ0 restored (the moments stay)."""
        saved = {name: p.detach().clone() for name, p in params.items()}
        self._adam_step(params, gradient)
        with torch.no_grad():
            for name, p in params.items():
                p.copy_(saved[name])

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
            with deferred_interrupt() as interrupted:
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
            while self.state.updates < train.iterations:
                before = self.state.updates
                self._iteration_done = False
                record = self.train_step()
                self.state.iteration += 1
                self._iteration_done = True
                it = self.state.iteration
                if self.ranks.is_main:
                    self.metrics.append("train", it, **record)
                if record["loss"] is not None:
                    recent.append((record["loss"], record["score"]))
                updates = self.state.updates
                done = updates == train.iterations
                milestone = updates > before and updates in train.test_at and not done
                if updates > before and (updates % train.val_every == 0 or done or milestone):
                    self._validate()
                if milestone:
                    self._test_milestone()
                if it % train.checkpoint_every == 0 or done:
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

    def _validate(self) -> None:
        result = self.evaluate_split("val", self.config.train.val_tasks)
        it = self.state.iteration
        if not math.isfinite(result.loss):
            raise self._diverged(
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
        if result.mean > self.state.best_score:
            self.state.best_score, self.state.best_iteration = result.mean, it
            if self.ranks.is_main:
                save_checkpoint(self.run_dir / BEST, self.checkpoint_payload())  # one, not rotated

    def _test_milestone(self) -> None:
        """Tests the current and the best-so-far meta-models at a ``train.test_at`` count."""
        num_tasks = self.config.train.test_tasks
        current = self.evaluate_split("test", num_tasks)
        best = current
        if self.state.best_iteration not in (0, self.state.iteration):
            weights = {k: v.clone() for k, v in self.parts.model.state_dict().items()}
            self.ranks.barrier()  # rank 0 wrote best.pt
            self.parts.model.load_state_dict(load_checkpoint(self.run_dir / BEST)["model"])
            best = self.evaluate_split("test", num_tasks)
            self.parts.model.load_state_dict(weights)
        if self.ranks.is_main:
            self.metrics.append(
                "milestone",
                self.state.iteration,
                updates=self.state.updates,
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
            self.ranks.barrier()  # rank 0 wrote best.pt
            self.parts.model.load_state_dict(load_checkpoint(self.run_dir / BEST)["model"])
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


def _scored(result: EvalResult) -> dict[str, float]:
    return {"score": result.mean, "ci95": result.ci95, "loss": result.loss}


def _finite(outcome: ChosenOutcome) -> bool:
    """Whether the chosen tasks' losses and their meta-gradient are all finite."""
    present = [g for g in outcome.gradient if g is not None]
    norm = torch.nn.utils.get_total_norm(present) if present else torch.zeros(())
    return bool(np.isfinite(outcome.losses).all()) and bool(torch.isfinite(norm))


def _probability_diagnostics(probabilities: torch.Tensor, noisy: np.ndarray) -> dict[str, Any]:
    """Mean policy probability of noisy and of clean candidates, and the policy's entropy."""
    p = probabilities.detach().cpu().numpy()
    return {
        "p_noisy": float(p[noisy].mean()) if noisy.any() else None,
        "p_clean": float(p[~noisy].mean()) if (~noisy).any() else None,
        "entropy": entropy(probabilities),
    }
