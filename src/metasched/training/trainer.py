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
from metasched.errors import MetaschedError, TrainingInterrupted
from metasched.learners.base import Params, PoolMeasurements
from metasched.schedulers import Feature, Pool, Trained
from metasched.schedulers.ats import entropy
from metasched.tasks.episode import Episode
from metasched.training.checkpoint import load_checkpoint, save_checkpoint
from metasched.training.components import STREAMS, Components, build_components
from metasched.training.evaluation import EvalResult, evaluate, write_test_results
from metasched.training.gradients import CandidateGradients, Gradient, clipped
from metasched.training.metrics import MetricsLog
from metasched.training.provenance import record_start
from metasched.training.services import LoopServices

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
    """

    def __init__(self, config: Config, run_dir: Path, components: Components | None = None):
        self.config = config
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
        record_start(run_dir, config)
        trainer = cls(config, run_dir)
        if config.train.init_from:
            trainer.initialise_from(Path(config.train.init_from))
        return trainer

    def initialise_from(self, path: Path) -> None:
        """Starts θ0 from another run's model (e.g. one pre-trained on clean tasks)."""
        if path.is_dir():
            path = path / BEST
        weights = load_checkpoint(path)["model"]
        try:
            self.parts.model.load_state_dict(weights)
        except RuntimeError as error:
            raise MetaschedError(
                f"{str(path)!r} holds a different model than this config builds; pass a"
                " checkpoint trained with the same model and task settings"
            ) from error

    @classmethod
    def resume(cls, run_dir: Path, overrides: list[str] | None = None) -> Trainer:
        """Continues the run in ``run_dir`` from its last checkpoint, exactly.

        Only ``train.*`` settings (iterations, validation and checkpoint intervals, device)
        may change on resume. Raising ``train.iterations`` continues the run but is not the
        run that would have been planned longer: ATS reads progress as a fraction of it.
        """
        payload = load_checkpoint(run_dir / LAST)
        config = config_from_dict(payload["config"], overrides)
        stored = config_from_dict(payload["config"]).to_dict()  # settings added since: defaults
        changed = {k for k, v in config.to_dict().items() if stored.get(k) != v}
        if changed - {"train"}:
            raise MetaschedError(
                f"cannot change {', '.join(sorted(changed - {'train'}))} when resuming;"
                " only train.* settings may change (start a new run instead)"
            )
        record_start(run_dir, config)
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
        measured, pool = self._measure(candidates, params)
        gradients = CandidateGradients(self.parts.learner, params, candidates, measured)
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
        outcome = gradients.combine(chosen, weights)
        if selection.update == "step":
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
            loss=outcome.loss,
            score=outcome.score,
            noisy=float(np.mean(trained_noisy)),
            pool_noisy=float(noisy.mean()),
            chosen=[int(i) for i in chosen],
            seconds=time.perf_counter() - start,
        )
        return record

    def _measure(
        self, candidates: list[Episode], params: Params
    ) -> tuple[PoolMeasurements | None, Pool]:
        """The features the scheduler declared, and nothing else."""
        features = self.scheduler.features
        spec = self.config.scheduler
        learner = self.parts.learner
        measured = None
        if features & (Feature.LOSSES | Feature.GRADIENTS):
            bf16 = spec.pool_precision == "bf16"
            # Grouped measurement runs the pool as one batch: backpropagating through it for two
            # chosen tasks would cost more than recomputing them, so its graphs are not kept.
            keep = spec.reuse_graphs and not bf16 and learner.batching == "loop"
            with torch.autocast(self.parts.device.type, torch.bfloat16, enabled=bf16):
                budget = spec.graph_memory_gb
                measured = learner.measure_pool(
                    params,
                    candidates,
                    keep,
                    gradients=bool(features & Feature.GRADIENTS),
                    graph_budget=None if budget is None else int(budget * 2**30),
                )
        pool = Pool(  # the schedulers' networks are tiny: they live on the CPU
            size=len(candidates),
            progress=self.progress,
            iteration=self.state.iteration,
            total_iterations=self.total,
            stats=measured.stats.to("cpu") if measured else None,
            embeddings=learner.embed(params, candidates).cpu()
            if features & Feature.EMBEDDINGS
            else None,
            contexts=torch.stack([learner.two_step_parameters(params, c) for c in candidates]).cpu()
            if features & Feature.CONTEXTS
            else None,
            classes=np.array([c.source for c in candidates])
            if features & Feature.CLASSES
            else None,
            noisy=np.array([c.noisy for c in candidates])
            if features & Feature.NOISE_FLAGS
            else None,
        )
        return measured, pool

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

    def _adam_step(self, params: Params, gradient: Gradient) -> None:
        """One Adam step on θ0 along ``gradient`` (parameters without one are left alone)."""
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
            f"{split} tasks" if show else None,
        )

    def fit(self, progress: bool = True) -> dict[str, Any]:
        """Trains to ``train.iterations``, then tests; returns the summary."""
        train = self.config.train
        recent: deque[tuple[float, float]] = deque(maxlen=50)
        self._clock = time.perf_counter()
        with (
            deferred_interrupt() as interrupted,
            tqdm(
                total=self.total,
                initial=self.state.iteration,
                desc="meta-training",
                disable=not progress,
                dynamic_ncols=True,
            ) as bar,
        ):
            while self.state.updates < train.iterations:
                before = self.state.updates
                record = self.train_step()
                self.state.iteration += 1
                it = self.state.iteration
                self.metrics.append("train", it, **record)
                recent.append((record["loss"], record["score"]))
                updates = self.state.updates
                done = updates == train.iterations
                if updates > before and (updates % train.val_every == 0 or done):
                    self._validate()
                if it % train.checkpoint_every == 0 or done:
                    save_checkpoint(self.run_dir / LAST, self.checkpoint_payload())
                bar.update(1)
                bar.set_postfix(
                    loss=f"{np.mean([r[0] for r in recent]):.3f}",
                    score=f"{np.mean([r[1] for r in recent]):.3f}",
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
        training_seconds = self.state.seconds + time.perf_counter() - self._clock
        start = time.perf_counter()
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


def _probability_diagnostics(probabilities: torch.Tensor, noisy: np.ndarray) -> dict[str, Any]:
    """Mean policy probability of noisy and of clean candidates, and the policy's entropy."""
    p = probabilities.detach().cpu().numpy()
    return {
        "p_noisy": float(p[noisy].mean()) if noisy.any() else None,
        "p_clean": float(p[~noisy].mean()) if (~noisy).any() else None,
        "entropy": entropy(probabilities),
    }
